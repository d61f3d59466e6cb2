"""No analysis stays running forever: a stalled stage is detected, re-driven, and finally failed."""
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

from shared.store import ObjectNotFound, ObjectStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dog_stack():
    from coach.stack import EmbeddedStack, StackPorts

    data = Path(tempfile.mkdtemp(prefix="coach-watchdog-"))
    stack = EmbeddedStack(data, StackPorts.free(), settings_overrides={
        "stall_timeout_s": 15.0, "watchdog_interval_s": 1.0, "max_redrives": 1, "clip_frames": 16})
    stack.start()
    yield stack
    stack.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory, vtest_video):
    out = tmp_path_factory.mktemp("dog") / "short.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(vtest_video), "-frames:v", "60", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def _submit(stack, video: Path) -> str:
    with open(video, "rb") as fh:
        r = httpx.post(f"http://127.0.0.1:{stack.ports.gateway}/v1/analyses",
                       files={"video": (video.name, fh, "video/mp4")}, data={"sport": "squat"}, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _status(stack, aid: str) -> dict:
    return httpx.get(f"http://127.0.0.1:{stack.ports.gateway}/v1/analyses/{aid}", timeout=30).json()


def _redrives(stack, aid: str) -> list:
    try:
        return ObjectStore(stack.settings).get_json(f"analyses/{aid}/watchdog.json")["redrives"]
    except ObjectNotFound:
        return []


def test_a_stalled_stage_is_redriven_and_the_analysis_completes(dog_stack, short_video):
    pose = dog_stack.proc("pose")
    os.kill(pose.popen.pid, signal.SIGSTOP)          # the pose worker hangs
    try:
        aid = _submit(dog_stack, short_video)
        deadline = time.monotonic() + 180
        while not _redrives(dog_stack, aid) and time.monotonic() < deadline:
            assert _status(dog_stack, aid)["status"] in ("queued", "running")
            time.sleep(0.5)
        assert _redrives(dog_stack, aid), "the watchdog never noticed the stall"
        assert _redrives(dog_stack, aid)[0]["stage"] == "pose"
    finally:
        os.kill(pose.popen.pid, signal.SIGCONT)      # ...and comes back
    deadline = time.monotonic() + 300
    while (st := _status(dog_stack, aid))["status"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert st["status"] == "done", st


def test_a_stage_that_never_recovers_fails_with_the_reason(dog_stack, short_video):
    pose = dog_stack.proc("pose")
    os.kill(pose.popen.pid, signal.SIGSTOP)
    try:
        aid = _submit(dog_stack, short_video)
        deadline = time.monotonic() + 300
        while (st := _status(dog_stack, aid))["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        os.kill(pose.popen.pid, signal.SIGCONT)
    assert st["status"] == "failed", st
    assert "stalled in pose" in st["error"] and "re-drive" in st["error"]
    assert len(_redrives(dog_stack, aid)) == 1
