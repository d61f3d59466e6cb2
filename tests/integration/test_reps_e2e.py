"""A squat analysis carries repetitions (with quality and attention) and a score, end to end from
the judge through the real broker and object store to the result document the gateway serves.

vtest.avi has no squats, and BlazePose does not detect stick figures, so the tracker and pose
stages are stood in for: the test writes what they would have stored (tracking.json, the
poses of one clip, blank frames) for a synthetic squat clip (services/judge/synth.py, 3 known
repetitions, detector-like noise) and sends the ClipPoses message the pose service would send.
From there the real judge and suggest services, Kafka and the object store do the rest.
"""
from __future__ import annotations

import uuid

import cv2
import httpx
import numpy as np
import pytest

from shared import bus
from shared.client import wait
from shared.messages import ClipPoses, VideoInfo, utc_now
from shared.skeleton import LANDMARK_NAMES
from shared.store import ObjectStore, keys

pytestmark = pytest.mark.integration

W, H = 640, 480


def _synthetic_squat_analysis(settings, faults: dict | None = None) -> tuple[str, int]:
    from services.judge.bootstrap_temporal import exercise_clip

    clip, _ = exercise_clip("squat", np.random.default_rng([97, 0]), faults=faults or {}, fps=30, duration_s=8.0,
                            px_per_m=150.0, center_px=(W / 2, H / 2), camera_yaw_deg=10.0)
    n_reps = clip.meta["reps"]
    kps = clip.keypoints
    T = len(kps)
    aid = uuid.uuid4().hex
    store = ObjectStore(settings)
    video = VideoInfo(fps=clip.fps, width=W, height=H, frames=T)
    store.put_json(keys.request(aid), {"analysis_id": aid, "sport": "squat", "submitted_at": utc_now(),
                                       "video": video.model_dump(), "video_key": f"analyses/{aid}/source.mp4"})
    blank = cv2.imencode(".jpg", np.full((H, W, 3), 90, np.uint8))[1].tobytes()
    for t in range(T):
        store.put_bytes(keys.frame(aid, t), blank, "image/jpeg")
    store.put_json(keys.tracking(aid), {"analysis_id": aid, "frames": T, "fps": clip.fps, "width": W, "height": H,
                                        "clip_count": 1, "clip_frames": T,
                                        "athlete": {"track_id": 0, "reason": "synthetic", "candidates": []}, "seconds": 0.0})
    rows = lambda k: None if not np.isfinite(k).all() else [[round(float(v), 3) for v in r] for r in k]  # noqa: E731
    store.put_json(keys.clip_poses(aid, 0), {
        "analysis_id": aid, "clip_index": 0, "pose_model": "synthetic", "refiner": "none",
        "landmarks": list(LANDMARK_NAMES), "seconds": 0.0,
        "frames": [{"index": t, "t_s": round(t / clip.fps, 4), "bbox_px": [100.0, 40.0, 440.0, 420.0],
                    "track_state": "tracked", "track_score": 1.0, "keypoints": rows(kps[t]), "keypoints_3d": None}
                   for t in range(T)]})
    for stage in ("tracker", "pose"):
        store.put_json(keys.status(aid, stage), {"stage": stage, "state": "done", "fraction": 1.0, "updated_at": utc_now()})
    producer = bus.make_producer(settings, "test-reps")
    bus.send(producer, settings.topics.poses, ClipPoses(
        analysis_id=aid, sport="squat", clip_index=0, first_frame=0, frame_count=T, poses_key=keys.clip_poses(aid, 0),
        pose_model="synthetic", refiner="none", frames_with_pose=int(np.isfinite(kps[:, 0, 0]).sum())), aid).get(timeout=30)
    producer.close()
    return aid, n_reps


def test_squat_result_has_repetitions_with_quality_and_a_score(coach_stack, gateway):
    aid, n_reps = _synthetic_squat_analysis(coach_stack.settings)
    st = wait(gateway, aid, 300)
    assert st["status"] == "done", st
    result = gateway.get(f"/v1/analyses/{aid}/result").json()
    reps = result["repetitions"]
    full = [r for r in reps if not r["partial"]]
    assert len(full) == n_reps == 3
    for i, r in enumerate(reps):
        assert r["index"] == i + 1 and 0 <= r["start_frame"] < r["end_frame"] < result["video"]["frames"]
        assert 0 <= r["quality"] <= 1
        assert len(r["attention"]) == r["end_frame"] - r["start_frame"] + 1
        assert abs(sum(r["attention"]) - 1) < 1e-3
        assert r["range_of_motion_deg"] > 40 and set(r["tempo_s"]) == {"down", "hold", "up"}
    assert np.mean([r["quality"] for r in full]) > 0.5       # correct form was generated
    score = result["score"]
    assert 0 <= score["value"] <= 100 and len(score["exemplars"]) == 10
    assert {"id", "score", "predicted_difference"} <= set(score["exemplars"][0])
    assert score["model_version"].startswith("squat-core-pairwise-")
    # the verdict document has them too
    verdict = ObjectStore(coach_stack.settings).get_json(keys.verdict(aid))
    assert verdict["repetitions"] == reps and verdict["score"]["value"] == score["value"]
    assert verdict["sequence_model_version"].startswith("squat-lstm-attn-")


def test_faults_of_a_performed_squat_are_judged_during_repetitions_with_exemplars(coach_stack, gateway):
    """Shallow squats filmed from the front: the depth fault is judged at the bottom of each
    repetition, and each fault segment comes with exemplar clips of correct form."""
    aid, _ = _synthetic_squat_analysis(coach_stack.settings, faults={"shallow_depth": 65.0})
    st = wait(gateway, aid, 300)
    assert st["status"] == "done", st
    result = gateway.get(f"/v1/analyses/{aid}/result").json()
    j = result["judgement"]
    assert j["finding"] is None and j["frames_performing"] > 0 and j["synthetic"] is True
    frames = result["athletes"][0]["frames"]
    performing = {f["index"] for f in frames if f["activity"] == "performing"}
    bottom = {f["index"] for f in frames if f["phase"] == "bottom"}
    shallow = [f for f in result["faults"] if f["type"] == "shallow_depth"]
    assert shallow, result["faults"]
    for fault in result["faults"]:
        span = set(range(fault["start_frame"], fault["end_frame"] + 1))
        assert span <= performing, "faults only while the exercise is performed"
        if fault["type"] == "shallow_depth":
            assert span <= bottom, "depth is judged at the bottom of a repetition"
        assert fault["suggestions"], f"fault {fault['type']} has no exemplar"
        for sug in fault["suggestions"]:
            assert 0 <= sug["similarity"] <= 1 and sug["end_s"] > sug["start_s"]
            clip = httpx.get(sug["url"], timeout=30)   # presigned URL to the exemplar clip
            assert clip.status_code == 200 and len(clip.content) > 1000
