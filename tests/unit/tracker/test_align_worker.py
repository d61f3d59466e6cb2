"""Session alignment behind a topic: the gateway asks on `alignments`, the tracker's align worker
(services/tracker/align_worker.py) computes it from the stored videos and poses and stores
sessions/<sid>/alignment.json, which the gateway only reads. An in-memory store and recording
producer stand in for S3 and Kafka; the video and the optical flow are real."""
from __future__ import annotations

import logging
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError

from services.gateway.deps import Deps
from services.gateway.routes.sessions import get_session
from services.tracker import align_worker
from shared.documents import ClipPosesDocument, PoseFrame
from shared.messages import DeadLetter, SessionAlignmentRequested, SessionCamera, utc_now
from shared.settings import Settings
from shared.store import keys
from shared.testing import MemoryStore, RecordingProducer
from shared.worker import AnalysisFailed, Context, Worker, WorkerSpec

SHIFT = 20   # camera 1 starts 20 source frames (2.0 s at 10 fps) after camera 0


class MemStore(MemoryStore):
    """shared.testing's in-memory store, noting which files were read."""

    def __init__(self):
        super().__init__()
        self.files_read: list[str] = []

    def get_file(self, key, path):
        self.files_read.append(key)
        return super().get_file(key, path)


def _cut(src: Path, out: Path, first: int, last: int, crop: str) -> Path:
    vf = f"trim=start_frame={first}:end_frame={last + 1},setpts=PTS-STARTPTS,crop={crop}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def _poses(aid: str, n: int) -> ClipPosesDocument:
    """A pose document of n frames: the athlete present and confidently posed throughout."""
    return ClipPosesDocument(analysis_id=aid, clip_index=0, pose_model="m", refiner="none", frames=[
        PoseFrame(index=t, t_s=t / 10, bbox_px=[10.0, 10.0, 50.0, 100.0], track_score=1.0,
                  keypoints=[[20.0, 30.0, 0.9]] * 33) for t in range(n)])


@pytest.fixture(scope="module")
def camera_files(tmp_path_factory, vtest_video):
    d = tmp_path_factory.mktemp("align-worker")
    return (_cut(vtest_video, d / "a.mp4", 0, 149, "480:576:0:0"),
            _cut(vtest_video, d / "b.mp4", SHIFT, SHIFT + 149, "480:576:288:0"))


def _stored_session(store: MemStore, files=None, posed=(True, True)) -> SessionAlignmentRequested:
    sid, cams = uuid.uuid4().hex, []
    for i in range(2):
        aid = uuid.uuid4().hex
        video_key = keys.source(aid, "mp4")
        store.objects[video_key] = files[i].read_bytes() if files else b"not read"
        if posed[i]:
            store.put_json(keys.clip_poses(aid, 0), _poses(aid, 150))
        cams.append(SessionCamera(analysis_id=aid, video_key=video_key))
    return SessionAlignmentRequested(session_id=sid, cameras=cams)


def _ctx(store) -> Context:
    return Context("align", Settings(), store, RecordingProducer(), logging.getLogger("test-align"))


def test_the_worker_stores_the_alignment_from_the_stored_videos_and_poses(camera_files):
    store = MemStore()
    msg = _stored_session(store, camera_files)
    align_worker.handle(msg, _ctx(store))
    doc = store.get_json(keys.session_alignment(msg.session_id))
    assert doc["session_id"] == msg.session_id and doc["method"] == "motion" and "error" not in doc
    cam0, cam1 = doc["cameras"]
    assert [cam0["analysis_id"], cam1["analysis_id"]] == [c.analysis_id for c in msg.cameras]
    assert cam0["offset_s"] == pytest.approx(0.0, abs=1e-9)
    assert cam1["offset_s"] == pytest.approx(SHIFT / 10, abs=0.1)
    assert cam1["offset_frames"] == pytest.approx(SHIFT, abs=1.0)
    assert set(doc["best_view"]["per_step"][:SHIFT]) <= {0, None}   # only camera 0 films before camera 1 starts
    status = store.get_json(keys.session_alignment_status(msg.session_id))
    assert status["stage"] == "align" and status["state"] == "done" and status["fraction"] == 1.0

    # at-least-once: a redelivered request finds the document and decodes nothing again
    reads = len(store.files_read)
    align_worker.handle(msg, _ctx(store))
    assert len(store.files_read) == reads
    assert store.get_json(keys.session_alignment(msg.session_id)) == doc


def _worker(store, producer) -> Worker:
    """The real worker loop's processing path (no broker): retries, dead letters, the fail hook."""
    w = Worker.__new__(Worker)
    w.spec = WorkerSpec("align", "alignments", SessionAlignmentRequested, align_worker.handle, fail=align_worker.fail)
    w.settings = Settings().with_(max_attempts=2)
    w.stop, w.log, w.store, w.producer = threading.Event(), logging.getLogger("test-align"), store, producer
    w.exit_code, w.last_poll = None, 0.0
    w._pool = ThreadPoolExecutor(max_workers=1)
    w.consumer = SimpleNamespace(assignment=lambda: set(), pause=lambda *a: None, resume=lambda *a: None,
                                 paused=lambda: set(), poll=lambda timeout_ms=0: {})
    return w


def _record(msg):
    return SimpleNamespace(topic="alignments", partition=0, offset=3, key=msg.session_id.encode(),
                           value=msg.to_bytes(), headers=[])


def test_a_camera_without_poses_fails_the_session_with_a_reason_and_is_not_dead_lettered():
    store, producer = MemStore(), RecordingProducer()
    msg = _stored_session(store, posed=(True, False))
    with pytest.raises(AnalysisFailed, match="camera 1: analysis .* has no stored poses"):
        align_worker.handle(msg, _ctx(store))
    assert _worker(store, producer)._process_with_retries(msg, _record(msg), {}) == "analysis_failed"
    doc = store.get_json(keys.session_alignment(msg.session_id))
    assert doc["error"].startswith("alignment failed: camera 1: analysis ") and "no stored poses" in doc["error"]
    assert store.get_json(keys.session_alignment_status(msg.session_id))["state"] == "failed"
    assert producer.sent == [], "bad input is the session's failure, not a poison message"


def test_a_camera_whose_video_cannot_be_decoded_fails_the_session_naming_it():
    store = MemStore()
    msg = _stored_session(store)    # the stored "videos" are not videos
    with pytest.raises(AnalysisFailed) as err:
        align_worker.handle(msg, _ctx(store))
    assert str(err.value) == f"camera 0: {msg.cameras[0].video_key}: not a video OpenCV can open"


def test_a_request_that_keeps_failing_is_dead_lettered_and_fails_the_session(monkeypatch):
    store, producer = MemStore(), RecordingProducer()
    msg = _stored_session(store)
    for cam in msg.cameras:   # a pose document without frames: a bug upstream, not bad input
        store.put_json(keys.clip_poses(cam.analysis_id, 0), {"clip_index": 0})
    monkeypatch.setattr(align_worker, "motion_energy", lambda path: (__import__("numpy").zeros(150), 10.0))
    monkeypatch.setattr("time.sleep", lambda s: None)
    assert _worker(store, producer)._process_with_retries(msg, _record(msg), {}) == "dead_lettered"
    (topic, value, key), = producer.sent
    dl = DeadLetter.from_bytes(value)
    assert topic == "dead-letters" and dl.source_topic == "alignments" and dl.attempts == 2
    assert "MalformedDocument" in dl.error and f"{keys.clip_poses(msg.cameras[0].analysis_id, 0)} is not a valid" in dl.error
    assert SessionAlignmentRequested.from_bytes(dl.value.encode()) == msg, "the dead letter can be replayed"
    doc = store.get_json(keys.session_alignment(msg.session_id))
    assert doc["error"].startswith("alignment failed: align failed after 2 attempts: MalformedDocument")


# ------------------------------------------------------------------------------ the gateway's side
def _finished_session(store: MemStore) -> str:
    """A stored session whose two analyses are done."""
    sid, cams = uuid.uuid4().hex, []
    for i in range(2):
        aid = uuid.uuid4().hex
        store.put_json(keys.request(aid), {"analysis_id": aid, "sport": "squat", "submitted_at": utc_now(),
                                           "video": {"fps": 10.0, "width": 480, "height": 576, "frames": 150}})
        for stage in ("tracker", "pose", "judge", "suggest"):
            store.put_json(keys.status(aid, stage), {"stage": stage, "state": "done", "fraction": 1.0,
                                                     "updated_at": utc_now()})
        cams.append({"index": i, "analysis_id": aid, "filename": f"cam{i}.mp4", "video_key": keys.source(aid, "mp4"),
                     "video": {"fps": 10.0, "width": 480, "height": 576, "frames": 150}})
    store.put_json(keys.session(sid), {"schema": "coach.session/1", "id": sid, "sport": "squat",
                                       "created_at": utc_now(), "owner": None, "athlete_height_m": None,
                                       "cameras": cams})
    return sid


def _age_request(store: MemStore, sid: str) -> None:
    """Make the recorded requests look long unanswered."""
    rec = store.get_json(keys.session_alignment_request(sid))
    store.put_json(keys.session_alignment_request(sid), {"requests": [{"at": "2020-01-01T00:00:00+00:00"}
                                                                      for _ in rec["requests"]]})


def test_the_gateway_asks_once_re_drives_a_stalled_request_then_fails_the_session():
    store, producer = MemStore(), RecordingProducer()
    deps = Deps(Settings().with_(max_redrives=1), store, _producer=producer)
    sid = _finished_session(store)

    first = get_session(sid, deps)
    assert first["status"] == "aligning" and first["alignment"] is None and first["error"] is None
    (topic, value, key), = producer.sent
    msg = SessionAlignmentRequested.from_bytes(value)
    assert topic == "alignments" and key == sid.encode() and msg.session_id == sid
    session = store.get_json(keys.session(sid))
    assert [(c.analysis_id, c.video_key) for c in msg.cameras] == [(c["analysis_id"], c["video_key"])
                                                                   for c in session["cameras"]]
    assert get_session(sid, deps)["status"] == "aligning"
    assert len(producer.sent) == 1, "polling the session does not ask again"

    _age_request(store, sid)          # no answer for longer than COACH_STALL_TIMEOUT_S
    assert get_session(sid, deps)["status"] == "aligning"
    assert len(producer.sent) == 2, "a stalled request is published again"

    _age_request(store, sid)          # still nothing after max_redrives: the session fails, with why
    st = get_session(sid, deps)
    assert st["status"] == "failed" and st["alignment"] is None
    assert st["error"].startswith("alignment failed: stalled in the alignments queue: no progress for ")
    assert "after 1 re-drive(s)" in st["error"] and len(producer.sent) == 2


def test_the_gateway_reports_the_workers_document_done_or_failed():
    store = MemStore()
    deps = Deps(Settings(), store, _producer=RecordingProducer())
    sid = _finished_session(store)
    store.put_json(keys.session_alignment(sid), {"schema": "coach.session-alignment/1", "session_id": sid,
                                                 "error": "alignment failed: camera 1: not a video OpenCV can open"})
    st = get_session(sid, deps)
    assert (st["status"], st["error"], st["alignment"]) == ("failed", "alignment failed: camera 1: not a video OpenCV can open", None)
    done = {"schema": "coach.session-alignment/1", "session_id": sid, "method": "motion", "cameras": []}
    store.put_json(keys.session_alignment(sid), done)
    st = get_session(sid, deps)
    assert (st["status"], st["error"], st["alignment"]) == ("done", None, done)


def test_a_request_the_broker_did_not_take_is_asked_again_on_the_next_poll():
    store = MemStore()
    deps = Deps(Settings(), store, _producer=RecordingProducer(fail_with=KafkaTimeoutError("broker away")))
    sid = _finished_session(store)
    assert get_session(sid, deps)["status"] == "aligning"
    assert not store.exists(keys.session_alignment_request(sid)), "nothing recorded for an unacknowledged request"
    deps._producer = RecordingProducer()
    assert get_session(sid, deps)["status"] == "aligning"
    assert len(deps._producer.sent) == 1 and store.exists(keys.session_alignment_request(sid))
