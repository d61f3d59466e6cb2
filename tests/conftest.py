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
    from shared.stack import EmbeddedStack, StackPorts

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
    from shared.stack import EmbeddedStack, StackPorts

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


def _read_topic(settings, topic, model, n, timeout_s=40.0, want=lambda m: True):
    """Up to n messages of `model` that satisfy `want`, read from the start of `topic` by a fresh
    consumer group (as an integrator would), waiting at most timeout_s for them."""
    from shared import bus

    consumer = bus.make_consumer(settings, f"reader-{uuid.uuid4().hex[:6]}", [topic], "reader", max_poll_records=100)
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                got.extend(m for m in (model.from_bytes(r.value) for r in recs) if want(m))
    finally:
        consumer.close()
    return got


@pytest.fixture
def read_topic():
    """read_topic(settings, topic, model, n, timeout_s=40, want=...) -> the messages read."""
    return _read_topic
