"""Fixtures: the real broker and object store on free loopback ports, started once per session."""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.fixture(scope="session")
def infra():
    """Broker + object store only (no services): for tests of the platform itself."""
    from coach.stack import EmbeddedStack, StackPorts

    data = Path(tempfile.mkdtemp(prefix="coach-infra-"))
    stack = EmbeddedStack(data, StackPorts.free(), workers={}, with_gateway=False)
    stack.start()
    yield stack
    stack.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def isolated_settings(infra):
    """Settings with a fresh topic prefix, so each test has its own topics and groups."""
    from shared import bus

    s = infra.settings.with_(topic_prefix=f"t{uuid.uuid4().hex[:8]}-", work_partitions=2)
    bus.ensure_topics(s)
    return s


@pytest.fixture(scope="session")
def vtest_video() -> Path:
    if not VTEST.exists():
        pytest.fail(f"{VTEST} missing: install Debian's opencv-doc (scripts/setup.sh does)")
    return VTEST


@pytest.fixture(scope="session")
def coach_stack():
    """The whole embedded stack (broker, store, every service, gateway) on free ports."""
    from coach.stack import EmbeddedStack, StackPorts

    data = Path(tempfile.mkdtemp(prefix="coach-stack-"))
    stack = EmbeddedStack(data, StackPorts.free())
    stack.start()
    yield stack
    stack.stop()
    for p in stack.procs:   # a service that crashed during the tests would show here
        assert p.restarts == 0, f"{p.name} was restarted {p.restarts} time(s); see {p.log_path}"
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway(coach_stack):
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{coach_stack.ports.gateway}", timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def analyse_vtest_head(gateway, vtest_video, tmp_path_factory):
    """analyse_vtest_head(seconds) -> analysis id: the first seconds of vtest.avi as H.264, uploaded
    through the gateway and analysed to the end (done, else the test fails)."""
    import subprocess

    from coach.client import wait

    def analyse(seconds: float) -> str:
        clip = tmp_path_factory.mktemp("vtest-head") / f"vtest-{seconds:g}s.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vtest_video), "-t", f"{seconds:g}", "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
        with open(clip, "rb") as fh:
            r = gateway.post("/v1/analyses", files={"video": (clip.name, fh, "video/mp4")}, data={"sport": "squat"})
        assert r.status_code == 202, r.text
        aid = r.json()["id"]
        st = wait(gateway, aid, 900)
        assert st["status"] == "done", st
        return aid
    return analyse


def _read_topic(settings, topic, model, n, timeout_s=40.0, want=lambda m: True):
    """Up to n messages of `model` that satisfy `want`, read from the start of `topic` by a fresh
    consumer group (as an integrator would), waiting at most timeout_s for them."""
    from shared import bus

    def parsed(value: bytes):
        try:
            return model.from_bytes(value)
        except ValueError:   # junk an earlier test published on purpose (test_e2e's malformed messages): skip it,
            return None      # as an integrator must

    consumer = bus.make_consumer(settings, f"reader-{uuid.uuid4().hex[:6]}", [topic], "reader", max_poll_records=100)
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                got.extend(m for m in (parsed(r.value) for r in recs) if m is not None and want(m))
    finally:
        consumer.close()
    return got


@pytest.fixture
def read_topic():
    """read_topic(settings, topic, model, n, timeout_s=40, want=...) -> the messages read."""
    return _read_topic


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


def _synthetic_squat_analysis(settings, faults: dict | None = None, camera_yaw_deg: float = 10.0) -> tuple[str, int]:
    """The synthetic squat stored in the stack's store and its ClipPoses sent: judge and suggest do the rest."""
    from shared import bus
    from shared.store import ObjectStore

    aid, n_reps, message = store_synthetic_squat(ObjectStore(settings), faults, camera_yaw_deg)
    producer = bus.make_producer(settings, "test-reps")
    bus.send(producer, settings.topics.poses, message, aid).get(timeout=30)
    producer.close()
    return aid, n_reps


@pytest.fixture(scope="session")
def synthetic_squat_analysis(coach_stack):
    """synthetic_squat_analysis(faults=None, camera_yaw_deg=10) -> (analysis id, repetitions), on the session's stack."""
    return lambda faults=None, camera_yaw_deg=10.0: _synthetic_squat_analysis(coach_stack.settings, faults, camera_yaw_deg)
