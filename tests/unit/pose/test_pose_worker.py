"""The pose worker's progress with the short first clip (issue 17), BlazePose replaced by a stub."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from shared.messages import FrameRef, TrackedClip, VideoInfo
from shared.settings import Settings
from shared.store import keys
from shared.testing import MemoryStore
from shared.worker import Context

AID = "d" * 32


class _NoPose:
    def new_session(self):
        return object()

    def end_session(self, session):
        pass

    def estimate_sequence(self, frames, boxes, session=None):
        from services.pose.blazepose import PoseSequence
        return PoseSequence.empty(len(frames))


def _stage():
    from services.pose.refine import make_refiner
    from services.pose.sessions import PoseSessions
    from services.pose.worker import PoseStage

    stage = PoseStage.__new__(PoseStage)   # the real handle(), no model
    stage.estimator, stage.pose_model = _NoPose(), "stub"
    stage.sessions = PoseSessions(stage.estimator, 2)
    stage.refiner_name, stage.refiner_params = "none", {}
    stage.refiner = make_refiner("none")
    stage.fetch, stage.lock = ThreadPoolExecutor(2), threading.Lock()
    return stage


def test_progress_before_tracking_json_counts_the_short_first_clip():
    """Before the tracker has written tracking.json the pose worker estimates the clip count from the
    video's frame count and the layout: 100 frames with an 8-frame first clip are 5 clips, so the
    first posed clip is 1/5 of the stage, not 1/4."""
    store, statuses = MemoryStore(), []
    ctx = Context("pose", Settings(first_clip_frames=8), store, producer=None, log=logging.getLogger("test"))
    ctx.status = lambda aid, state, progress, **kw: statuses.append((state, progress))
    ctx.emit = lambda *a, **k: None
    clip = TrackedClip(analysis_id=AID, sport="squat", clip_index=0, video=VideoInfo(fps=10.0, width=64, height=48, frames=100),
                       frames=[FrameRef(index=i, t_s=i / 10, frame_key=keys.frame(AID, i)) for i in range(8)])
    _stage().handle(clip, ctx)
    assert statuses == [("running", 0.2)]
    assert store.get_json(keys.clip_poses(AID, 0))["clip_index"] == 0


def test_the_worker_continues_a_clip_that_follows_and_poses_a_redelivered_one_fresh():
    """The real PoseStage over the navy walker of vtest.avi cut into the worker's clips (8, 24, 29 frames,
    frames stored as JPEG): clips 1 and 2 continue clip 0's BlazePose session and get the poses of one
    uninterrupted run; clip 1 delivered again starts fresh (the poses a restarted graph gives), and says so."""
    import os

    import cv2
    import numpy as np
    import pytest

    from services.pose.lab.eval_swaps import navy_box
    from services.pose.refine import make_refiner, refine_clip
    from services.pose.worker import PoseStage
    from shared.clips import clip_spans

    vtest = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    if not os.path.exists(vtest):
        pytest.skip("apt-get install opencv-doc")
    cap = cv2.VideoCapture(vtest)
    raw = [cap.read()[1] for _ in range(81)][20:]
    cap.release()
    store = MemoryStore()
    for i, f in enumerate(raw):
        store.put_bytes(keys.frame(AID, i), cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    frames = [cv2.imdecode(np.frombuffer(store.get_bytes(keys.frame(AID, i)), np.uint8), cv2.IMREAD_COLOR) for i in range(61)]
    boxes = [navy_box(20 + i) for i in range(61)]
    ctx = Context("pose", Settings(first_clip_frames=8), store, producer=None, log=logging.getLogger("test"))
    ctx.status = lambda *a, **k: None
    ctx.emit = lambda *a, **k: None
    video = VideoInfo(fps=10.0, width=768, height=576, frames=61)
    spans = clip_spans(61, 32, 8)

    def clip(k: int) -> TrackedClip:
        s, e = spans[k]
        return TrackedClip(analysis_id=AID, sport="squat", clip_index=k, video=video, frames=[
            FrameRef(index=i, t_s=i / 10, frame_key=keys.frame(AID, i), bbox_px=[round(float(v), 2) for v in boxes[i]],
                     track_state="tracked") for i in range(s, e)])

    def stored(k: int) -> tuple[np.ndarray, bool]:
        doc = store.get_json(keys.clip_poses(AID, k))
        kps = np.array([[p if p else [np.nan] * 3 for p in (f["keypoints"] or [None] * 33)] for f in doc["frames"]], float)
        return kps, doc["session_continued"]

    def as_stored(seq, s: int, e: int) -> np.ndarray:   # the worker's per-clip left/right swap fix, refiner none
        return refine_clip(make_refiner("none"), seq.keypoints_px[s:e], seq.present[s:e], rounded[s:e], None)[0]

    stage = PoseStage("none", pose_model="full", pose_sessions=2)
    rounded = [np.array([round(float(v), 2) for v in b]) for b in boxes]
    try:
        run = stage.estimator.estimate_sequence(frames, rounded)
        whole = np.concatenate([as_stored(run, s, e) for s, e in spans])
        for k in range(3):
            stage.handle(clip(k), ctx)
        got = [stored(k) for k in range(3)]
        assert [c for _, c in got] == [False, True, True]
        np.testing.assert_allclose(np.concatenate([kp for kp, _ in got])[..., :2], whole[..., :2], atol=0.02)
        s, e = spans[1]
        one = stage.estimator.estimate_sequence(frames[s:e], rounded[s:e])
        fresh = refine_clip(make_refiner("none"), one.keypoints_px, one.present, rounded[s:e], None)[0]
        stage.handle(clip(1), ctx)   # redelivered
        kp, continued = stored(1)
        assert not continued
        np.testing.assert_allclose(kp[..., :2], fresh[..., :2], atol=0.02)
        assert np.nanmax(np.abs(kp[0, :, :2] - whole[s, :, :2])) > 0.5   # delivery order shows, at the clip's start
    finally:
        stage.sessions.close()
        stage.estimator.close()


class _CountingPose(_NoPose):
    """Poses every boxed frame at its box's top-left corner; counts the frames it was asked to pose."""
    def __init__(self):
        self.posed = 0

    def estimate_sequence(self, frames, boxes, session=None):
        from services.pose.blazepose import PoseSequence
        seq = PoseSequence.empty(len(frames))
        for t, b in enumerate(boxes):
            if b is not None:
                self.posed += 1
                seq.keypoints_px[t] = [b[0], b[1], 0.0]
                seq.world_m[t] = 0.0
                seq.present[t] = True
        return seq


def test_a_clip_sent_again_for_a_new_revision_with_the_same_boxes_is_not_posed_twice():
    """The tracker re-sends every clip as revision 1 when the athlete chosen over the whole clip
    differs from the provisional one it streamed: a clip whose frames and boxes did not change keeps
    its poses (restamped, no model run), a clip whose boxes changed is posed again."""
    import cv2
    import numpy as np

    from shared.documents import ClipPosesDocument

    store, emitted = MemoryStore(), []
    ctx = Context("pose", Settings(), store, producer=None, log=logging.getLogger("test"))
    ctx.status = lambda *a, **k: None
    ctx.emit = lambda topic, m, key: emitted.append(m)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    for i in range(8):
        store.put_bytes(keys.frame(AID, i), jpeg.tobytes(), "image/jpeg")

    def clip(revision, boxes, track_id=0):
        return TrackedClip(analysis_id=AID, sport="squat", clip_index=0, track_id=track_id, revision=revision,
                           video=VideoInfo(fps=10.0, width=64, height=48, frames=8),
                           frames=[FrameRef(index=i, t_s=i / 10, frame_key=keys.frame(AID, i), bbox_px=b,
                                            track_score=0.9 if b else 0.0, track_state="tracked" if b else "lost")
                                   for i, b in enumerate(boxes)])

    stage = _stage()
    stage.estimator = pose = _CountingPose()
    boxes = [[4.0 + i, 5.0, 20.0, 30.0] for i in range(7)] + [None]
    stage.handle(clip(0, boxes), ctx)
    assert pose.posed == 7
    stage.handle(clip(1, boxes, track_id=3), ctx)           # same boxes, the final athlete's revision
    doc = ClipPosesDocument.read(store, keys.clip_poses(AID, 0))
    assert pose.posed == 7, "not posed again"
    assert (doc.revision, doc.track_id) == (1, 3) and doc.frames[0].keypoints[0][:2] == [4.0, 5.0]
    assert emitted[-1].revision == 1 and emitted[-1].frames_with_pose == 7
    moved = [[40.0, 5.0, 20.0, 30.0]] + boxes[1:]
    stage.handle(clip(2, moved), ctx)                        # a changed box: posed again, all of it
    doc = ClipPosesDocument.read(store, keys.clip_poses(AID, 0))
    assert pose.posed == 14 and doc.revision == 2 and doc.frames[0].keypoints[0][:2] == [40.0, 5.0]
