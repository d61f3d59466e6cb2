"""Fault injection: a worker killed with SIGKILL mid-analysis loses nothing.

Each test runs a real analysis on the embedded stack, kills one service's process while that
stage is busy with it, lets the stack's supervisor restart it, and checks the analysis still
completes with every frame exactly once.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

FRAMES = 240


@pytest.fixture(scope="module")
def fault_stack():
    from coach.stack import EmbeddedStack, StackPorts

    data = Path(tempfile.mkdtemp(prefix="coach-faults-"))
    stack = EmbeddedStack(data, StackPorts.free(), settings_overrides={"clip_frames": 16})
    stack.start()
    yield stack
    stack.stop()
    if not os.environ.get("COACH_KEEP_TEST_DATA"):
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory, vtest_video):
    out = tmp_path_factory.mktemp("faults") / "short.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(vtest_video), "-frames:v", str(FRAMES), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def _run_with_kill(stack, video: Path, victim: str, when) -> dict:
    """Submit, SIGKILL `victim` once `when(status)` holds, supervise until the analysis ends."""
    base = f"http://127.0.0.1:{stack.ports.gateway}"
    with open(video, "rb") as fh:
        r = httpx.post(f"{base}/v1/analyses", files={"video": (video.name, fh, "video/mp4")}, data={"sport": "squat"}, timeout=60)
    assert r.status_code == 202, r.text
    aid = r.json()["id"]
    proc = stack.proc(victim)
    restarts_before = proc.restarts
    killed = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        st = httpx.get(f"{base}/v1/analyses/{aid}", timeout=30).json()
        if not killed and when(st):
            os.kill(proc.popen.pid, signal.SIGKILL)
            killed = True
        stack.supervise_once()
        if st["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert killed, f"{victim} was never busy with the analysis"
    assert proc.restarts == restarts_before + 1, "the supervisor restarts a killed service"
    assert st["status"] == "done", st
    return httpx.get(f"{base}/v1/analyses/{aid}/result", timeout=30).json()


def _check_complete(result: dict) -> None:
    frames = result["athletes"][0]["frames"]
    assert [f["index"] for f in frames] == list(range(FRAMES)), "every frame exactly once, in order"
    assert sum(1 for f in frames if f["keypoints"]) > FRAMES // 2


BUSY = {  # the moment each stage is (about to be) busy with the analysis
    "tracker": lambda p: 0 < p["tracker"] < 1,
    "pose": lambda p: 0 < p["pose"] < 1,
    "judge": lambda p: p["pose"] >= 0.5 and p["judge"] < 1,   # consuming the analysis's clips
    "suggest": lambda p: p["judge"] >= 1 and p["suggest"] < 1,
}


@pytest.mark.parametrize("victim", list(BUSY))
def test_sigkill_mid_analysis_loses_nothing(fault_stack, short_video, victim):
    result = _run_with_kill(fault_stack, short_video, victim,
                            lambda st: st["status"] == "running" and BUSY[victim](st["progress"]))
    _check_complete(result)


def _run_with_outage(stack, video: Path, victim: str, when, down_s: float) -> dict:
    """Submit; once `when(progress)` holds, stop infrastructure process `victim` for down_s, start it again."""
    base = f"http://127.0.0.1:{stack.ports.gateway}"
    with open(video, "rb") as fh:
        r = httpx.post(f"{base}/v1/analyses", files={"video": (video.name, fh, "video/mp4")}, data={"sport": "squat"}, timeout=60)
    assert r.status_code == 202, r.text
    aid = r.json()["id"]
    proc = stack.proc(victim)
    restarts_before = {p.name: p.restarts for p in stack.procs}
    outage_done = False
    deadline = time.monotonic() + 900
    st = {}
    while time.monotonic() < deadline:
        resp = httpx.get(f"{base}/v1/analyses/{aid}", timeout=60)
        if resp.status_code == 200:
            st = resp.json()
            if not outage_done and st["status"] == "running" and when(st["progress"]):
                proc.stop()                      # SIGTERM, as an orchestrator would
                time.sleep(down_s)
                proc.start()
                outage_done = True
            if st["status"] in ("done", "failed"):
                break
        else:
            assert resp.status_code == 503, resp.text   # the gateway says the store is down, in words
        stack.supervise_once()   # as `coach up` does every second
        time.sleep(0.3)
    assert outage_done, f"{victim} outage never happened"
    assert st.get("status") == "done", st
    # services ride out the outage; the supervisor may restart a wedged broker (stack.py)
    crashed = [p.name for p in stack.procs if p.restarts != restarts_before[p.name]
               and p.name not in ("broker", "object-store")]
    assert not crashed, f"workers crashed during the {victim} outage: {crashed}"
    return httpx.get(f"{base}/v1/analyses/{aid}/result", timeout=60).json()


def test_broker_restart_mid_analysis_loses_nothing(fault_stack, short_video):
    result = _run_with_outage(fault_stack, short_video, "broker", BUSY["pose"], down_s=3)
    _check_complete(result)


def test_object_store_outage_mid_analysis_loses_nothing(fault_stack, short_video):
    result = _run_with_outage(fault_stack, short_video, "object-store", BUSY["pose"], down_s=10)
    _check_complete(result)
