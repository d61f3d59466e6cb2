"""Scaling and monitoring on the real embedded stack.

Two pose workers in one consumer group share the clips of ONE analysis (clips are keyed per
clip), each serving its own /metrics; and `coach up --with-prometheus` runs a Prometheus that
scrapes every service.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coach.client import wait
from coach.stack import EmbeddedStack, StackPorts, port_free

pytestmark = pytest.mark.integration

CLIP_FRAMES = 16          # 320 frames -> 20 clips over 8 partitions: both workers get some
FRAMES = 320


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _samples(port: int) -> list:
    text = _get(f"http://127.0.0.1:{port}/metrics").decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def _value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def _group_members(settings, group: str) -> int:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    # kafka-python cannot decode the authorized-operations bitfield the embedded broker (Tansu)
    # returns; the membership we need is decoded before that step.
    admin._process_acl_operations = lambda group: group
    try:
        info = admin.describe_groups([group])[group]
        state = info.get("group_state", info.get("state"))
        return len(info.get("members") or []) if state == "Stable" else 0
    finally:
        admin.close()


@pytest.fixture(scope="module")
def short_video(vtest_video, tmp_path_factory) -> Path:
    """The first 320 frames of vtest.avi (32 s at 10 fps): every stage, a shorter run."""
    out = tmp_path_factory.mktemp("video") / "vtest-320.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vtest_video), "-frames:v", str(FRAMES),
                    "-c:v", "mjpeg", "-q:v", "3", str(out)], check=True, timeout=120)
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    return out


class TestTwoPoseWorkersShareOneAnalysis:
    @pytest.fixture(scope="class")
    @classmethod
    def scaled_stack(cls):
        data = Path(tempfile.mkdtemp(prefix="coach-scale-"))
        stack = EmbeddedStack(data, StackPorts.free(), workers={"tracker": 1, "pose": 2, "judge": 1, "suggest": 1},
                              settings_overrides={"clip_frames": CLIP_FRAMES})
        stack.start()
        try:
            # both pose workers must own partitions before the clips are produced
            deadline = time.monotonic() + 120
            while _group_members(stack.settings, "coach-pose") < 2:
                assert time.monotonic() < deadline, "the two pose workers did not both join coach-pose"
                time.sleep(1)
            yield stack
        finally:
            stack.stop()
            for p in stack.procs:
                assert p.restarts == 0, f"{p.name} was restarted {p.restarts} time(s); see {p.log_path}"
            shutil.rmtree(data, ignore_errors=True)

    @pytest.fixture(scope="class")
    @classmethod
    def analysis(cls, scaled_stack, short_video):
        with httpx.Client(base_url=f"http://127.0.0.1:{scaled_stack.ports.gateway}", timeout=60) as gw:
            with open(short_video, "rb") as fh:
                r = gw.post("/v1/analyses", files={"video": (short_video.name, fh, "video/x-msvideo")},
                            data={"sport": "squat"})
            assert r.status_code == 202, r.text
            aid = r.json()["id"]
            started = time.monotonic()
            st = wait(gw, aid, 600)
            seconds = time.monotonic() - started
            result = gw.get(f"/v1/analyses/{aid}/result").json() if st["status"] == "done" else None
        return aid, st, result, seconds

    def test_both_pose_workers_posed_clips_of_the_one_analysis(self, scaled_stack, analysis):
        aid, st, result, seconds = analysis
        assert st["status"] == "done", st
        pose = [p for p in scaled_stack.procs if p.name.startswith("pose-")]
        assert [p.name for p in pose] == ["pose-1", "pose-2"] and len({p.metrics_port for p in pose}) == 2
        frames = {p.name: _value(_samples(p.metrics_port), "coach_frames_total", service="pose") for p in pose}
        print(f"\npose frames per worker: {frames}; analysis of {FRAMES} frames took {seconds:.1f} s")
        assert all(n > 0 for n in frames.values()), f"one pose worker got no clip: {frames}"
        assert sum(frames.values()) >= FRAMES, "every clip posed (a redelivery may add, never lose)"
        for p in pose:
            s = _samples(p.metrics_port)
            assert _value(s, "coach_pose_inference_seconds_count", service="pose") >= 1
            assert _value(s, "coach_pose_batch_frames_sum", service="pose") > 0
            assert _value(s, "coach_gpu_in_use", service="pose") == 0, "no GPU on this machine"

    def test_the_analysis_completes_with_every_frame(self, analysis):
        aid, st, result, _ = analysis
        assert st["status"] == "done", st
        frames = result["athletes"][0]["frames"]
        assert [f["index"] for f in frames] == list(range(FRAMES)), "every frame, once, in order"
        assert sum(1 for f in frames if f["keypoints"]) > 0.3 * FRAMES

    def test_suggest_reports_end_to_end_seconds_and_completion(self, scaled_stack, analysis):
        _, _, _, seconds = analysis
        s = _samples(scaled_stack.proc("suggest").metrics_port)
        assert _value(s, "coach_analyses_completed_total", service="suggest", status="done") == 1
        assert _value(s, "coach_analysis_seconds_count", sport="squat") == 1
        observed = _value(s, "coach_analysis_seconds_sum", sport="squat")
        assert 0 < observed <= seconds + 5, f"submitted_at -> result {observed:.1f} s vs {seconds:.1f} s waited"
        lag = [x for x in _samples(scaled_stack.proc("pose-1").metrics_port) if x.name == "coach_consumer_lag_messages"]
        assert lag and all(x.labels["topic"].endswith("clips") for x in lag)


def _free_offset(gateway: int) -> int:
    """A --port-offset that moves every default port of the stack (and Prometheus) onto free ones."""
    for _ in range(200):
        offset = random.randrange(1000, 12000, 100)
        ports = StackPorts(gateway=gateway).shifted(offset)
        if all(port_free(p) for p in ports.named(5)):
            return offset
    raise RuntimeError("no free port block")


def test_coach_up_with_prometheus_scrapes_every_service(tmp_path):
    gateway = StackPorts.free().gateway
    offset = _free_offset(gateway)
    ports = StackPorts(gateway=gateway).shifted(offset)
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "coach.cli", "up", "--data-dir", str(data), "--port", str(gateway),
                             "--port-offset", str(offset), "--with-prometheus"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        targets: list = []
        served: dict = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"coach up exited: {proc.stdout.read()}"
            state = json.loads((data / "stack.json").read_text()) if (data / "stack.json").exists() else {"processes": []}
            served = {p["name"]: p["metrics_port"] for p in state["processes"] if p["metrics_port"]}
            try:
                targets = json.loads(_get(f"http://127.0.0.1:{ports.prometheus}/api/v1/targets"))["data"]["activeTargets"]
            except OSError:
                targets = []
            if "prometheus" in served and len(targets) == len(served) - 1 and all(t["health"] == "up" for t in targets):
                break
            time.sleep(1)
        assert served.pop("prometheus") == ports.prometheus
        by_job = {t["labels"]["job"]: t for t in targets}
        assert {"tracker", "pose", "judge", "suggest", "gateway"} <= set(by_job), targets
        assert all(t["health"] == "up" for t in targets), [(t["labels"], t["health"], t.get("lastError")) for t in targets]
        # every process that serves /metrics is a target, on its own port
        assert {t["labels"]["instance"]: int(t["scrapeUrl"].split(":")[2].split("/")[0]) for t in targets} == served
        assert (data / "prometheus" / "prometheus.yml").exists() and (data / "prometheus" / "data").is_dir()
        # the shipped alert rules are loaded and evaluate without errors
        while True:
            groups = json.loads(_get(f"http://127.0.0.1:{ports.prometheus}/api/v1/rules"))["data"]["groups"]
            rules = {r["name"]: r for g in groups for r in g["rules"]}
            if all(r["health"] == "ok" for r in rules.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert {"CoachConsumerLagGrowing", "CoachNoProgress", "CoachErrorRateHigh", "CoachDeadLetters"} <= set(rules)
        assert all(r["health"] == "ok" for r in rules.values()), {n: r.get("lastError") for n, r in rules.items()}
        # the data is queryable: every worker's metrics reached the TSDB
        q = json.loads(_get(f"http://127.0.0.1:{ports.prometheus}/api/v1/query?query=up"))["data"]["result"]
        assert {r["metric"]["job"] for r in q} == set(by_job)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "Prometheus: http://127.0.0.1:" in out
    assert all(port_free(p) for p in (ports.prometheus, ports.gateway)), "everything stopped"
