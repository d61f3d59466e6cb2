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
