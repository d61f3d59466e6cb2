"""Fixtures: the real broker and object store on free loopback ports, started once per session."""
from __future__ import annotations

import shutil
import tempfile
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
