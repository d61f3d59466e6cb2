"""The tracker's loop body on a real video, with an in-memory store: limits it enforces itself."""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from shared.messages import AnalysisRequested, VideoInfo
from shared.settings import Settings
from shared.testing import MemoryStore
from shared.worker import AnalysisFailed, Context

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.fixture
def mjpeg_stream(tmp_path) -> Path:
    """4 s of vtest.avi as a raw MJPEG stream: a container that declares no frame count, so the
    gateway's duration check cannot see how long it is."""
    out = tmp_path / "stream.mjpeg"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(VTEST), "-t", "4", "-f", "mjpeg", str(out)], check=True)
    return out


def test_a_stream_longer_than_the_limit_fails_with_a_reason_instead_of_running_on(mjpeg_stream, monkeypatch):
    from services.tracker import worker

    aid = "a" * 32
    settings = Settings(max_duration_s=1.0)
    store = MemoryStore()
    store.put_file("uploads/x", mjpeg_stream)
    ctx = Context("tracker", settings, store, producer=None, log=logging.getLogger("test"))
    statuses, emitted = [], []
    monkeypatch.setattr(ctx, "status", lambda *a, **k: statuses.append((a, k)))
    monkeypatch.setattr(ctx, "emit", lambda topic, m, key: emitted.append(m))
    msg = AnalysisRequested(analysis_id=aid, sport="squat", video_key="uploads/x",
                            video=VideoInfo(fps=25.0, width=768, height=576, frames=None))
    with pytest.raises(AnalysisFailed, match="longer than 1 s"):
        worker.TrackerStage().handle(msg, ctx)
    frames = [k for k in store.objects if "/frames/" in k]
    assert 0 < len(frames) <= 26, "decoding must stop at the limit (1 s at 25 fps), not at the end of the stream"


def test_tracking_json_lists_everyone_kept_with_the_choice_first():
    """tracking.json's `athletes` / `choice` from the tracker (no video needed: a stand-in tracker)."""
    import numpy as np

    from services.tracker.results import AthleteChoice
    from services.tracker.worker import people_doc

    class Stub:
        choice = AthleteChoice(7, "most active (score 0.5: ...)", [])
        policy = "most_active"
        alternatives = [{"track_id": 3, "score": np.float64(0.41)}]
        athletes = [{"track_id": 3, "frames": [0, 1], "boxes_px": [[1, 2, 3, 4], [2, 2, 3, 4]], "score": 0.41, "seconds": 0.07},
                    {"track_id": 7, "frames": [0, 1, 2], "boxes_px": [[9, 9, 5, 9]] * 3, "score": 0.5, "seconds": 0.1}]

    doc = people_doc(Stub(), Settings(), 30.0)
    assert [a["track_id"] for a in doc["athletes"]] == [7, 3]
    assert doc["choice"] == {"track_id": 7, "reason": "most active (score 0.5: ...)",
                             "alternatives": [{"track_id": 3, "score": 0.41}], "policy": "most_active"}


def test_result_lists_the_other_people_with_boxes_only():
    from services.suggest.worker import _other_people
    from shared.documents import TrackingDocument
    from shared.result import AthleteResult

    base = {"analysis_id": "a" * 32, "frames": 6, "fps": 10.0, "width": 64, "height": 48, "clip_count": 1,
            "clip_frames": 32, "seconds": 0.1}
    tracking = TrackingDocument.parse({**base, "athlete": {"track_id": 7, "reason": "r", "candidates": []}, "athletes": [
        {"track_id": 7, "frames": [0], "boxes_px": [[0, 0, 1, 1]], "score": None, "seconds": 0.1},
        {"track_id": 3, "frames": [4, 5], "boxes_px": [[1, 2, 3, 4], [2, 2, 3, 4]], "score": 0.4, "seconds": 0.2}]})
    others = _other_people(tracking, 10.0)
    assert len(others) == 1 and others[0]["track_id"] == 3 and others[0]["is_target"] is False
    a = AthleteResult.model_validate(others[0])
    assert [f.index for f in a.frames] == [4, 5] and a.frames[1].t_s == 0.5 and a.frames[0].keypoints is None
    before = TrackingDocument.parse({**base, "athlete": {"track_id": 0, "reason": "r", "candidates": []}})
    assert _other_people(before, 10.0) == []      # a tracking.json from before `athletes`


@pytest.fixture
def vtest_45(tmp_path) -> Path:
    out = tmp_path / "vtest45.avi"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(VTEST), "-frames:v", "45", "-c:v", "mjpeg",
                    "-q:v", "3", str(out)], check=True)
    return out


def test_the_short_first_clip_leaves_once_the_athlete_is_chosen_and_later_cuts_are_unchanged(vtest_45, monkeypatch):
    """COACH_FIRST_CLIP_FRAMES=8: clip 0 (frames 0-7) is published as soon as the tracker has chosen
    the (provisional) athlete (its 15-frame selection window), not after 33 decoded frames; then
    frames 8-31 and 32-44, the cut at 32 where it always was; tracking.json records the layout and
    the clip count. Where the athlete chosen over the whole clip differs from the streamed one, every
    clip goes out again as revision 1 with the same layout, and revision 0 never gets its last clip."""
    import cv2

    from services.tracker import worker
    from shared.store import keys

    aid = "f" * 32
    store = MemoryStore()
    store.put_file("uploads/x", vtest_45)
    ctx = Context("tracker", Settings(first_clip_frames=8), store, producer=None, log=logging.getLogger("test"))
    emitted, captures = [], []
    real = cv2.VideoCapture

    class CountingCapture:   # how many frames the worker's own decode had read when each clip went out
        def __init__(self, path):
            self.cap, self.reads = real(path), 0
            captures.append(self)

        def read(self):
            self.reads += 1
            return self.cap.read()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(worker.cv2, "VideoCapture", CountingCapture)
    monkeypatch.setattr(ctx, "status", lambda *a, **k: None)
    monkeypatch.setattr(ctx, "emit", lambda topic, m, key: emitted.append((key, m, captures[0].reads)))
    for k in range(3):   # as if pose had posed the provisional clips already
        store.put_json(keys.clip_poses(aid, k), {"stand-in": k})
    worker.TrackerStage().handle(AnalysisRequested(analysis_id=aid, sport="squat", video_key="uploads/x",
                                    video=VideoInfo(fps=10.0, width=768, height=576, frames=45)), ctx)

    tracking = store.get_json(keys.tracking(aid))
    final = [(key, m) for key, m, _ in emitted if m.revision == tracking["revision"]]
    streamed = [(m, reads) for _, m, reads in emitted if m.revision == 0]
    assert [(m.frames[0].index, m.frames[-1].index) for m, _ in streamed][:2] == [(0, 7), (8, 31)]
    assert streamed[0][1] <= 16, f"clip 0 waited for {streamed[0][1]} decoded frames (selection window: 15)"
    assert streamed[1][1] == 33, "clip 1 goes out once frame 32 is known, as the 32-frame clip 0 used to"
    assert [(m.frames[0].index, m.frames[-1].index) for _, m in final] == [(0, 7), (8, 31), (32, 44)]
    assert [key for key, _ in final] == [f"{aid}:{k}" for k in range(3)]
    assert [m.is_last for _, m in final] == [False, False, True]
    assert sum(m.is_last for _, m, _ in emitted) == 1, "only the final revision is ever complete"
    assert tracking["clip_count"] == 3 and tracking["clip_frames"] == 32 and tracking["first_clip_frames"] == 8
    stored = [k for k in store.objects if "/frames/" in k]
    assert all(f.frame_key in stored for _, m, _ in emitted for f in m.frames), "clips reference stored frames only"
    streamed_boxes = {f.index: f.bbox_px for m, _ in streamed for f in m.frames}
    for k, (_, m) in enumerate(final):   # the provisional poses of a clip whose boxes changed are gone, the rest kept
        same = all(streamed_boxes.get(f.index, "held back") == f.bbox_px for f in m.frames)
        assert (keys.clip_poses(aid, k) in store.objects) == (same or tracking["revision"] == 0), k
    if tracking["revision"] == 1:   # the final athlete's boxes are what tracking.json lists for them
        boxes = dict(zip(tracking["athletes"][0]["frames"], tracking["athletes"][0]["boxes_px"]))
        sent = {f.index: f.bbox_px for _, m in final for f in m.frames if f.bbox_px}
        assert sorted(sent) == sorted(boxes) and all(max(abs(a - b) for a, b in zip(sent[k], boxes[k])) <= 0.1 for k in sent)


def test_the_stage_loads_its_detector_at_start_up_and_lends_it_to_every_analysis(vtest_45, monkeypatch):
    """The detector is built when the worker starts (not on the way to the first clip), owned by the
    stage (no module global), and each analysis counts its own detector passes."""
    from services.tracker import detector as det_module
    from services.tracker import worker

    built = []

    class CountingDetector(det_module.PersonDetector):
        def __init__(self, *a, **k):
            built.append(self)
            super().__init__(*a, **k)

    monkeypatch.setattr(det_module, "PersonDetector", CountingDetector)
    stage = worker.TrackerStage()
    assert len(built) == 2, "the detectors (one per tracking thread) are loaded before the first analysis comes"
    store = MemoryStore()
    store.put_file("uploads/x", vtest_45)
    passes = []
    for aid in ("b" * 32, "c" * 32):
        ctx = Context("tracker", Settings(), store, producer=None, log=logging.getLogger("test"))
        monkeypatch.setattr(ctx, "status", lambda *a, **k: None)
        monkeypatch.setattr(ctx, "emit", lambda *a, **k: None)
        stage.handle(AnalysisRequested(analysis_id=aid, sport="squat", video_key="uploads/x",
                                       video=VideoInfo(fps=10.0, width=768, height=576, frames=45)), ctx)
        passes.append(stage.detector.passes)
    assert len(built) == 2 and {id(stage.detector), id(stage.everyone_detector)} == set(map(id, built)), \
        "the same detectors for the worker's lifetime"
    assert passes[0] > 0 and passes[1] == passes[0], "each analysis counts its own passes (the same video: the same count)"
    assert not hasattr(worker, "_detector") and not hasattr(worker, "person_detector")
