"""End to end through the real broker, object store, models and services, on real video."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared import bus
from coach.client import wait
from shared.messages import AnalysisVerdict

pytestmark = pytest.mark.integration


def _upload(gateway, path: Path, sport: str = "squat", **form):
    with open(path, "rb") as fh:
        return gateway.post("/v1/analyses", files={"video": (path.name, fh, "video/x-msvideo")},
                            data={"sport": sport, **form})


@pytest.fixture(scope="module")
def vtest_analysis(gateway, vtest_video):
    r = _upload(gateway, vtest_video)
    assert r.status_code == 202, r.text
    aid = r.json()["id"]
    seen_states = set()
    st = wait(gateway, aid, 900, on_progress=lambda s: seen_states.add(s["status"]))
    return aid, st, seen_states


def test_vtest_every_frame_accounted_with_poses_verdicts_and_video(gateway, vtest_analysis, vtest_video, tmp_path):
    aid, st, seen = vtest_analysis
    assert st["status"] == "done", st
    assert "running" in seen or "queued" in seen
    r = gateway.get(f"/v1/analyses/{aid}/result", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip", "the multi-megabyte result document is sent compressed"
    result = r.json()
    assert result["schema"] == "coach.result/2" and result["id"] == aid
    n = int(cv2.VideoCapture(str(vtest_video)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert result["video"]["frames"] == n == 795
    athlete = result["athletes"][0]
    assert athlete["is_target"] and athlete["choice_reason"]
    assert [f["index"] for f in athlete["frames"]] == list(range(n)), "every frame, once, in order"

    visible = [f for f in athlete["frames"] if f["bbox_px"] is not None]
    posed = [f for f in visible if f["keypoints"]]
    assert len(visible) > 0.5 * n
    assert len(posed) > 0.6 * len(visible), f"pose on {len(posed)} of {len(visible)} frames with the athlete"
    for f in posed[:50]:
        x, y, w, h = f["bbox_px"]
        hip = f["keypoints"]["left_hip"]
        assert x - w <= hip[0] <= x + 2 * w and y - h <= hip[1] <= y + 2 * h, "keypoints in original-image pixels"
        assert f["keypoints_3d"] and set(f["angles_deg"]) >= {"knee_l", "knee_r", "hip_l", "hip_r", "trunk"}

    with_knee = [f for f in posed if f["angles_deg"]["knee_l"] is not None]
    assert len(with_knee) > 0.8 * len(posed), "joint angles in degrees on posed frames"
    # people walking past a camera are not squatting: a finding, not faults (#16)
    j = result["judgement"]
    assert j["finding"].startswith("no squat repetitions found") and "across the frame" in j["finding"], j
    assert result["faults"] == [] and j["frames_performing"] == 0
    assert j["synthetic"] is True, "the squat faults come from criteria on synthetic poses, and the result says so"
    # every posed frame is not performing (or, without enough joints for the pack's features, has no verdict)
    activity = [f["activity"] for f in posed]
    assert "performing" not in activity and activity.count("not_performing") > 0.8 * len(posed)
    assert not any(f["faults"] for f in posed)

    # the annotated video plays: H.264, one frame per input frame
    video = gateway.get(f"/v1/analyses/{aid}/video", follow_redirects=True)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    out = tmp_path / "annotated.mp4"
    out.write_bytes(video.content)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(out)],
                                      capture_output=True, check=True).stdout)
    # joined from per-clip segments without re-encoding (docs/suggest.md): still one browser-playable stream
    assert (probe["streams"][0]["codec_name"], probe["streams"][0]["pix_fmt"]) == ("h264", "yuv420p")
    assert abs(float(Fraction(probe["streams"][0]["avg_frame_rate"])) - result["video"]["fps"]) < 0.01
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "+faststart: plays while downloading"
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    assert set(result["timings_s"]) >= {"tracker", "pose", "judge", "suggest"}


def test_the_result_in_pages_equals_result_json(gateway, vtest_analysis):
    """#17: the summary (?frames=none) is the result less its per-frame arrays, and the /frames pages,
    read from suggest's chunks, hold exactly the frames of result.json, whatever the page size."""
    from shared.result_pages import frame_rows

    aid, _, _ = vtest_analysis
    plain = {"Accept-Encoding": "identity"}
    full = gateway.get(f"/v1/analyses/{aid}/result", headers=plain)
    summary = gateway.get(f"/v1/analyses/{aid}/result", params={"frames": "none"}, headers=plain)
    assert summary.status_code == 200 and summary.json()["schema"] == "coach.result-summary/1"
    assert len(summary.content) * 20 < len(full.content), (len(summary.content), len(full.content))
    result, head = full.json(), summary.json()
    assert {k: v for k, v in head.items() if k not in ("schema", "athletes", "biomechanics", "frame_paging", "artifacts", "faults")} == \
        {k: v for k, v in result.items() if k not in ("schema", "athletes", "biomechanics", "artifacts", "faults")}
    assert head["frame_paging"] == {"start": 0, "end": 795, "chunk_frames": 200, "chunks": 4}
    assert [a["track_id"] for a in head["athletes"]] == [a["track_id"] for a in result["athletes"]]
    assert "series" not in head["biomechanics"] and head["biomechanics"]["angles"] == result["biomechanics"]["angles"]
    frames = result["athletes"][0]["frames"]
    for size in (1000, 300):   # one page; pages that cut across the stored chunks
        pages = [gateway.get(f"/v1/analyses/{aid}/frames", params={"start": s, "count": size}).json()
                 for s in range(0, 795, size)]
        assert [r for p in pages for r in frame_rows(p)] == frames
        assert [v for p in pages for v in p["biomechanics"]["com_px"]] == result["biomechanics"]["series"]["com_px"]
        for other in result["athletes"][1:]:
            got = [(i, b) for p in pages for o in p["others"] if o["track_id"] == other["track_id"]
                   for i, b in zip(o["index"], o["bbox_px"])]
            assert got == [(f["index"], f["bbox_px"]) for f in other["frames"]]
    refused = gateway.get(f"/v1/analyses/{aid}/frames", params={"start": 0, "count": 1001})
    assert refused.status_code == 422 and "at most 1000" in refused.json()["detail"]


def test_integrators_receive_the_verdict_on_the_verdicts_topic(coach_stack, vtest_analysis):
    aid, _, _ = vtest_analysis
    s = coach_stack.settings
    consumer = bus.make_consumer(s, f"integrator-{uuid.uuid4().hex[:6]}", [s.topics.verdicts], "integrator", 100)
    verdicts, quiet_polls = [], 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (verdicts and quiet_polls >= 4):   # read to the topic's end
        batch = consumer.poll(timeout_ms=500)
        quiet_polls = 0 if batch else quiet_polls + 1
        for recs in batch.values():
            for r in recs:
                v = AnalysisVerdict.from_bytes(r.value)
                if v.analysis_id == aid:
                    verdicts.append(v)
    consumer.close()
    # one final verdict for one analysis: the judge does not publish it again when its last clips'
    # messages all find the analysis complete
    assert len(verdicts) == 1, [v.produced_at for v in verdicts]
    found = verdicts[0]
    assert found.video.frames == 795 and found.fault_types and found.synthetic
    assert found.frames_judged == 0 and not found.faults and found.finding.startswith("no squat repetitions found")


# -- bad input ----------------------------------------------------------------------------

def test_not_a_video_is_refused_before_queueing(gateway, tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video\n" * 100)
    r = _upload(gateway, bogus)
    assert r.status_code == 422 and "not a video" in r.json()["detail"]


def test_empty_file_is_refused(gateway, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    r = _upload(gateway, empty)
    assert r.status_code == 422 and "empty" in r.json()["detail"]


def test_truncated_mp4_is_refused(gateway, vtest_video, tmp_path):
    full = tmp_path / "full.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(vtest_video), "-frames:v", "60", "-c:v", "libx264", str(full)], check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])   # the index (moov) is at the end: gone
    r = _upload(gateway, cut)
    assert r.status_code == 422, r.text


def test_unknown_sport_and_bad_box_are_refused(gateway, vtest_video):
    r = _upload(gateway, vtest_video, sport="curling")
    assert r.status_code == 422 and "squat" in r.json()["detail"]
    r = _upload(gateway, vtest_video, target_bbox="10,10,5000,20")
    assert r.status_code == 422 and "target_bbox" in r.json()["detail"]


def test_video_with_nobody_fails_with_a_reason(gateway, tmp_path):
    still = cv2.imread("/usr/share/doc/opencv-doc/examples/data/box.png")
    path = tmp_path / "nobody.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (still.shape[1], still.shape[0]))
    for i in range(40):
        w.write(np.roll(still, i, axis=1))
    w.release()
    r = _upload(gateway, path)
    assert r.status_code == 202, r.text
    st = wait(gateway, r.json()["id"], 300)
    assert st["status"] == "failed" and "nobody" in st["error"].lower()
    assert gateway.get(f"/v1/analyses/{r.json()['id']}/result").status_code == 409


def test_unknown_analysis_is_404(gateway):
    assert gateway.get("/v1/analyses/" + "0" * 32).status_code == 404
    assert gateway.get("/v1/analyses/..%2f..%2fetc").status_code == 404


def test_sports_health_metrics_and_docs(gateway):
    sports = {s["name"]: s for s in gateway.get("/v1/sports").json()["sports"]}
    assert {"ski_aerials", "squat"} <= set(sports)
    assert {f["id"] for f in sports["ski_aerials"]["faults"]} == {"bent_hips", "crossed_skis", "bent_knees"}
    assert gateway.get("/healthz").json()["ok"] is True
    metrics = gateway.get("/metrics").text
    assert "coach_analyses_submitted_total" in metrics and "coach_uploads_rejected_total" in metrics
    assert gateway.get("/docs").status_code == 200


def test_server_sent_events_report_progress_until_the_end(gateway, vtest_analysis):
    aid, _, _ = vtest_analysis
    events = []
    with gateway.stream("GET", f"/v1/analyses/{aid}/events", timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if line.startswith("data: ") and events[-1] == "end":
                assert json.loads(line.removeprefix("data: "))["status"] == "done"
                break
    assert events[0] == "progress" and events[-1] == "end"


def test_every_worker_serves_metrics_and_health(coach_stack, vtest_analysis):
    import httpx

    for proc in coach_stack.procs:
        if proc.name.split("-")[0] not in ("tracker", "pose", "judge", "suggest"):
            continue
        base = f"http://127.0.0.1:{proc.metrics_port}"
        health = httpx.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["service"] == proc.name.split("-")[0]
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        service = proc.name.split("-")[0]
        assert re.search(rf'coach_messages_total{{outcome="ok",service="{service}",topic="[^"]+"}} [1-9]', metrics), proc.name
        assert "coach_processing_seconds_bucket" in metrics
        if service == "pose":
            # each clip posed either continued its analysis's BlazePose session or started fresh (docs/pose.md)
            sessions = {re.search(r'outcome="(\w+)"', labels).group(1): v
                        for labels, v in re.findall(r'coach_pose_sessions_total{([^}]*)} ([0-9.e+]+)', metrics)}
            assert float(sessions.get("fresh", 0)) >= 1, "an analysis's first clip starts a fresh session"
            print(f"pose sessions on this stack: {sessions}")


def test_coach_analyze_writes_result_and_video(coach_stack, tmp_path, vtest_video):
    """The CLI a person runs, against the running gateway, on a short cut of a real video."""
    cut = tmp_path / "short.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(vtest_video), "-frames:v", "80", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(cut)], check=True)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "coach.cli", "analyze", str(cut), "--sport", "squat", "--out", str(out),
                          "--gateway", f"http://127.0.0.1:{coach_stack.ports.gateway}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "80 frames" in run.stdout and "wrote" in run.stdout
    result = json.loads((out / "result.json").read_text())
    assert len(result["athletes"][0]["frames"]) == 80
    assert int(cv2.VideoCapture(str(out / "annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 80


def test_malformed_messages_on_every_topic_are_dead_lettered_without_harm(coach_stack, gateway):
    """Junk bytes and wrong-schema JSON on each work topic: a dead letter per message, no crash."""
    from shared.messages import DeadLetter

    s = coach_stack.settings
    producer = bus.make_producer(s, "fuzzer")
    topics = {s.topics.analyses: "tracker", s.topics.clips: "pose", s.topics.poses: "judge", s.topics.verdicts: "suggest",
              s.topics.athlete_selections: "tracker",
              s.topics.alignments: "align"}
    marker = uuid.uuid4().hex[:8]
    payloads = [b"\x00\xff garbage", b'{"schema": "coach.analysis-requested/9"}', b"[]", b'{"analysis_id": "../../etc"}']
    for topic in topics:
        for i, value in enumerate(payloads):
            producer.send(topic, value=value, key=f"{marker}-{topic}-{i}".encode())
    producer.flush(30)
    consumer = bus.make_consumer(s, f"dlq-check-{marker}", [s.topics.dead_letters], "dlq-check", 500)
    letters: dict[str, DeadLetter] = {}
    deadline = time.monotonic() + 120
    while len(letters) < len(topics) * len(payloads) and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            for r in recs:
                d = DeadLetter.from_bytes(r.value)
                if d.key and d.key.startswith(marker):
                    letters[d.key] = d
    consumer.close()
    assert len(letters) == len(topics) * len(payloads), sorted(letters)
    for key, d in letters.items():
        assert d.service == topics[d.source_topic] and "malformed" in d.error
    # the services are still serving: a normal request still works end to end
    assert gateway.get("/healthz").status_code == 200
    for p in coach_stack.procs:
        assert p.alive() and p.restarts == 0, p.name
