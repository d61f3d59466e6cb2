"""A squat analysis carries repetitions (with quality and attention) and a score, end to end from
the judge through the real broker and object store to the result document the gateway serves.

vtest.avi has no squats, and BlazePose does not detect stick figures, so the tracker and pose
stages are stood in for: the test writes what they would have stored (tracking.json, the
poses of one clip, blank frames) for a synthetic squat clip (services/judge/synth.py, 3 known
repetitions, detector-like noise) and sends the ClipPoses message the pose service would send.
From there the real judge and suggest services, Kafka and the object store do the rest.
"""
from __future__ import annotations

import httpx
import numpy as np
import pytest

from coach.client import wait
from shared.store import ObjectStore, keys

pytestmark = pytest.mark.integration


def test_squat_result_has_repetitions_with_quality_and_a_score(coach_stack, gateway, synthetic_squat_analysis):
    aid, n_reps = synthetic_squat_analysis()
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
    # filmed from the front: depth cannot be judged, and the result says so instead of guessing
    nj = result["judgement"]["not_judgeable"]
    assert [n["type"] for n in nj] == ["shallow_depth"] and nj[0]["view"] == "front" and "side" in nj[0]["reason"]
    assert not any(f["type"] == "shallow_depth" for f in result["faults"])
    score = result["score"]
    assert 0 <= score["value"] <= 100 and len(score["exemplars"]) == 10
    assert {"id", "score", "predicted_difference"} <= set(score["exemplars"][0])
    assert score["model_version"].startswith("squat-core-pairwise-")
    # the verdict document has them too
    verdict = ObjectStore(coach_stack.settings).get_json(keys.verdict(aid))
    assert verdict["repetitions"] == reps and verdict["score"]["value"] == score["value"]
    assert verdict["sequence_model_version"].startswith("squat-lstm-attn-")


def test_faults_of_a_performed_squat_are_judged_during_repetitions_with_exemplars(gateway, synthetic_squat_analysis):
    """Shallow squats filmed obliquely (60 deg): the depth fault is judged at the bottom of each
    repetition, and each fault segment comes with exemplar clips of correct form."""
    aid, _ = synthetic_squat_analysis(faults={"shallow_depth": 65.0}, camera_yaw_deg=60.0)
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
    # the per-repetition verdict names the fault of each repetition it occurred in
    for f in shallow:
        assert any("shallow_depth" in r["faults"] and r["start_frame"] <= f["start_frame"] <= r["end_frame"]
                   for r in result["repetitions"]), (f, result["repetitions"])
    for fault in result["faults"]:
        span = set(range(fault["start_frame"], fault["end_frame"] + 1))
        assert span <= performing, "faults only while the exercise is performed"
        if fault["type"] == "shallow_depth":   # judged at the bottom (a segment may bridge a 1-2 frame flicker)
            assert {fault["start_frame"], fault["end_frame"]} <= bottom and len(span & bottom) >= 0.8 * len(span)
        assert fault["suggestions"], f"fault {fault['type']} has no exemplar"
        for sug in fault["suggestions"]:
            assert 0 <= sug["similarity"] <= 1 and sug["end_s"] > sug["start_s"]
            clip = httpx.get(sug["url"], timeout=30)   # presigned URL to the exemplar clip
            assert clip.status_code == 200 and len(clip.content) > 1000
