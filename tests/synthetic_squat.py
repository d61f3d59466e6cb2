"""A synthetic squat analysis stored as tracker and pose would have stored it (tests import this module by
name: `from conftest import ...` breaks when another conftest.py, e.g. tests/unit/tracker's, was loaded first)."""
from __future__ import annotations

import uuid


def store_synthetic_squat(store, faults: dict | None = None, camera_yaw_deg: float = 10.0):
    """Store what tracker and pose would have stored for a synthetic squat clip (3 repetitions,
    detector-like noise, blank frames) in `store` (the real one or shared.testing.MemoryStore).
    Returns (analysis id, repetitions, the ClipPoses message that hands it to the judge).
    vtest.avi has no squats, and BlazePose does not detect stick figures."""
    import cv2
    import numpy as np

    from services.judge.lab.bootstrap_temporal import exercise_clip
    from shared.documents import AnalysisRequest, ChosenAthlete, ClipPosesDocument, PoseFrame, StageStatus, TrackingDocument
    from shared.messages import ClipPoses, VideoInfo, utc_now
    from shared.skeleton import LANDMARK_NAMES
    from shared.store import keys

    W, H = 640, 480
    clip, _ = exercise_clip("squat", np.random.default_rng([97, 0]), faults=faults or {}, fps=30, duration_s=8.0,
                            px_per_m=150.0, center_px=(W / 2, H / 2), camera_yaw_deg=camera_yaw_deg)
    n_reps = clip.meta["reps"]
    kps = clip.keypoints
    T = len(kps)
    aid = uuid.uuid4().hex
    video = VideoInfo(fps=clip.fps, width=W, height=H, frames=T)
    store.put_json(keys.request(aid), AnalysisRequest(analysis_id=aid, sport="squat", submitted_at=utc_now(), video=video))
    blank = cv2.imencode(".jpg", np.full((H, W, 3), 90, np.uint8))[1].tobytes()
    for t in range(T):
        store.put_bytes(keys.frame(aid, t), blank, "image/jpeg")
    store.put_json(keys.tracking(aid), TrackingDocument(
        analysis_id=aid, frames=T, fps=clip.fps, width=W, height=H, clip_count=1, clip_frames=T,
        athlete=ChosenAthlete(track_id=0, reason="synthetic"), seconds=0.0))
    rows = lambda k: None if not np.isfinite(k).all() else [[round(float(v), 3) for v in r] for r in k]  # noqa: E731
    store.put_json(keys.clip_poses(aid, 0), ClipPosesDocument(
        analysis_id=aid, clip_index=0, pose_model="synthetic", refiner="none", landmarks=list(LANDMARK_NAMES), seconds=0.0,
        frames=[PoseFrame(index=t, t_s=round(t / clip.fps, 4), bbox_px=[100.0, 40.0, 440.0, 420.0], track_state="tracked",
                          track_score=1.0, keypoints=rows(kps[t]), keypoints_3d=None) for t in range(T)]))
    for stage in ("tracker", "pose"):
        store.put_json(keys.status(aid, stage), StageStatus(stage=stage, state="done", fraction=1.0, updated_at=utc_now()))
    message = ClipPoses(
        analysis_id=aid, sport="squat", clip_index=0, first_frame=0, frame_count=T, poses_key=keys.clip_poses(aid, 0),
        pose_model="synthetic", refiner="none", frames_with_pose=int(np.isfinite(kps[:, 0, 0]).sum()))
    return aid, n_reps, message
