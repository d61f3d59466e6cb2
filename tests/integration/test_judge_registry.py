"""Model registry on the real broker and object store: seed, train + publish, hot reload in a running judge."""
from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest

from services.judge import synth
from services.judge.datasets import sha256_file, write_csv
from services.judge.packs import PACKS_ROOT, load_pack
from services.judge.registry import ModelRegistry
from services.judge.worker import JudgeStage
from shared import bus
from coach.cli import main as coach
from shared.documents import ChosenAthlete, ClipPosesDocument, PoseFrame, TrackingDocument
from shared.messages import AnalysisVerdict, ClipPoses
from shared.store import ObjectStore, keys
from shared.worker import Worker, WorkerSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(isolated_settings, monkeypatch):
    """Own topics (isolated_settings) and an own bucket, so the registry starts empty; the CLI sees them too."""
    s = isolated_settings.with_(bucket=f"judge-{uuid.uuid4().hex[:10]}")
    ObjectStore(s).ensure_bucket()
    for k, v in s.as_env().items():
        monkeypatch.setenv(k, v)
    return s


@pytest.fixture
def judge(settings):
    """A judge worker (the service's own handler and control thread) running in this process."""
    stop = threading.Event()
    stage = JudgeStage(settings, recheck_s=3600)  # no periodic recheck: a reload can only come from the control topic
    stage.start_control(settings, stop)
    worker = Worker(WorkerSpec("judge", settings.topics.poses, ClipPoses, stage.handle), settings, stop)
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    assert stage.control_ready.wait(40), "the control consumer never got its partitions"
    yield stage, worker, t
    stop.set()
    t.join(timeout=20)
    stage.stop_control()


class Verdicts:
    def __init__(self, settings):
        self.consumer = bus.make_consumer(settings, f"reader-{uuid.uuid4().hex[:6]}", [settings.topics.verdicts],
                                          "reader", max_poll_records=50)

    def wait_for(self, aid: str, timeout_s: float = 60.0) -> AnalysisVerdict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for recs in self.consumer.poll(timeout_ms=500).values():
                for r in recs:
                    v = AnalysisVerdict.from_bytes(r.value)
                    if v.analysis_id == aid:
                        return v
        raise AssertionError(f"no verdict for {aid} within {timeout_s} s")


def _submit_poses(settings, sport: str, seed: int) -> str:
    """Store one analysis' tracking + poses as the tracker and pose services would, and announce them."""
    clip = synth.generate(sport, seed, duration_s=4.0, fps=30.0)
    aid = uuid.uuid4().hex
    store = ObjectStore(settings)
    T = len(clip.keypoints)
    store.put_json(keys.tracking(aid), TrackingDocument(
        analysis_id=aid, frames=T, fps=30.0, width=1280, height=720, clip_count=1, clip_frames=T,
        athlete=ChosenAthlete(track_id=0, reason="synthetic")))
    frames = [PoseFrame(index=t, t_s=t / 30.0,
                        keypoints=None if not np.isfinite(k).any() else np.nan_to_num(k, nan=0.0).round(2).tolist())
              for t, k in enumerate(clip.keypoints)]
    store.put_json(keys.clip_poses(aid, 0), ClipPosesDocument(analysis_id=aid, clip_index=0, pose_model="synthetic",
                                                              refiner="none", frames=frames))
    msg = ClipPoses(analysis_id=aid, sport=sport, clip_index=0, first_frame=0, frame_count=T,
                    poses_key=keys.clip_poses(aid, 0), pose_model="synthetic", refiner="none",
                    frames_with_pose=sum(f.keypoints is not None for f in frames))
    producer = bus.make_producer(settings, "test")
    bus.send(producer, settings.topics.poses, msg, aid).get(10)
    producer.close()
    return aid


def test_publish_hot_reloads_a_running_judge(settings, judge, tmp_path, capsys):
    stage, worker, thread = judge
    verdicts = Verdicts(settings)
    shipped = load_pack("plank").model_version

    # 1. before any publish: the registry was seeded with the shipped packs, and verdicts name that version
    aid1 = _submit_poses(settings, "plank", 1)
    v1 = verdicts.wait_for(aid1)
    assert v1.model_version == shipped
    reg = ModelRegistry(ObjectStore(settings))
    assert reg.current_version("plank") == shipped
    assert set(reg.sports()) >= {"plank", "pushup", "ski_aerials", "squat"}
    # the shipped plank is trained on human labels: its report names the data by fingerprint
    shipped_report = json.loads((PACKS_ROOT / "plank" / "report.json").read_text())
    assert reg.report("plank", shipped)["data"]["fingerprint"] == shipped_report["data"]["fingerprint"]
    assert reg.report("squat", reg.current_version("squat"))["data"]["fingerprint"] is None  # synthetic: said so

    # 2. a coach's labels: train on a CSV (same code path as the CLI) ...
    seqs = []
    for i in range(10):
        c = synth.generate("plank", np.random.default_rng([5, i]), duration_s=5.0)
        seqs.append((f"athlete{i}", c.keypoints, c.labels, c.fps))
    data = write_csv(tmp_path / "coach_labels.csv", seqs, synth.FAULTS["plank"])
    assert coach(["judge", "train", "--sport", "plank", "--data", str(data), "--out", str(tmp_path / "m"),
                  "--quiet", "--label-source", "coach A (test)"]) == 0
    new = json.loads((tmp_path / "m" / "report.json").read_text())["model_version"]
    assert new != shipped

    # ... a junk control message must not stop the control thread ...
    producer = bus.make_producer(settings, "test")
    producer.send(settings.topics.control, b"{junk", key=b"plank").get(10)
    producer.close()

    # 3. ... and publish while the judge runs
    capsys.readouterr()
    assert coach(["judge", "publish", "--model", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert new in out and "ModelPublished sent" in out
    deadline = time.monotonic() + 30
    while not any(r["version"] == new for r in stage.reloads) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [(r["sport"], r["version"], r["reason"]) for r in stage.reloads] == [("plank", new, "control")]

    # 4. the next verdict carries the new version; the worker was never restarted
    aid2 = _submit_poses(settings, "plank", 2)
    v2 = verdicts.wait_for(aid2)
    assert v2.model_version == new
    assert ObjectStore(settings).get_json(keys.verdict(aid2))["model_version"] == new
    deadline = time.monotonic() + 10
    while worker.processed < 2 and time.monotonic() < deadline:   # counted just after the verdict is acknowledged
        time.sleep(0.1)
    assert thread.is_alive() and worker.processed == 2

    # 5. the registry keeps both versions, the report and the training-data fingerprint
    assert set(reg.versions("plank")) == {shipped, new}
    cur = reg.current("plank")
    assert cur["version"] == new and cur["previous"] == shipped
    report = reg.report("plank", new)
    assert report["data"]["files"][0]["sha256"] == sha256_file(data)
    assert report["labels"] == "coach A (test)" and report["evaluation"]["split"] == "by-sequence"

    # 6. `coach judge list` and the gateway's sports follow the registry
    capsys.readouterr()
    assert coach(["judge", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows if r["sport"] == "plank" and r["current"]] == [new]
    from fastapi.testclient import TestClient

    from services.gateway.app import create_app

    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as http:   # loopback: keyless allowed
        sports = {s["name"]: s for s in http.get("/v1/sports").json()["sports"]}
    assert sports["plank"]["model_version"] == new
    assert sports["squat"]["model_version"] == load_pack("squat").model_version

    # 7. roll back: publish the shipped version again by name
    assert coach(["judge", "publish", "--model", shipped, "--sport", "plank"]) == 0
    deadline = time.monotonic() + 30
    while stage.versions().get("plank") != shipped and time.monotonic() < deadline:
        time.sleep(0.2)
    aid3 = _submit_poses(settings, "plank", 3)
    assert verdicts.wait_for(aid3).model_version == shipped
    verdicts.consumer.close()
