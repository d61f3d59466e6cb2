"""Fixtures: the real broker and object store on free loopback ports, started once per session."""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from synthetic_squat import store_synthetic_squat

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
