"""`coach tail`: an operator follows a topic on the real embedded broker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from shared import bus
from shared.messages import AnalysisCompleted, AnalysisVerdict, FaultSegment, VideoInfo

ROOT = Path(__file__).resolve().parents[2]


def _coach(settings, *argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COACH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "COACH_TOPIC_PREFIX": settings.topic_prefix}
    return subprocess.run([sys.executable, "-m", "coach.cli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_tail_prints_one_readable_line_per_message(isolated_settings):
    s = isolated_settings
    aid = uuid.uuid4().hex
    fault = dict(track_id=0, start_s=0.0, end_s=1.0, peak_probability=0.9)
    verdict = AnalysisVerdict(
        analysis_id=aid, sport="squat", model_version="v1", video=VideoInfo(fps=25, width=640, height=480),
        frames_judged=120, fault_types=["bent_knees", "bent_hips"], verdict_key=f"analyses/{aid}/verdict.json", synthetic=False,
        faults=[FaultSegment(type="bent_knees", start_frame=0, end_frame=10, **fault),
                FaultSegment(type="bent_knees", start_frame=40, end_frame=50, **fault),
                FaultSegment(type="bent_hips", start_frame=60, end_frame=70, **fault)])
    producer = bus.make_producer(s, "test-tail")
    bus.send(producer, s.topics.verdicts, verdict, key=aid)
    bus.send(producer, s.topics.results, AnalysisCompleted(analysis_id=aid, status="failed", error="nobody in the video"), key=aid)
    producer.send(s.topics.verdicts, value=b"not json", key=aid.encode())
    producer.flush()
    producer.close()

    out = _coach(s, "tail", "verdicts", "--from-beginning", "--max", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    assert f"verdict  {aid}  squat" in lines[0] and "faults: bent_hips×1, bent_knees×2" in lines[0]
    assert "unparseable as AnalysisVerdict" in lines[1]

    out = _coach(s, "tail", "results", "--from-beginning", "--max", "1", "--json")
    assert out.returncode == 0, out.stderr
    msg = json.loads(out.stdout)
    assert (msg["schema"], msg["analysis_id"], msg["status"]) == ("coach.analysis-completed/1", aid, "failed")

    out = _coach(s, "tail", "nonsense")
    assert out.returncode == 2 and "unknown topic" in out.stderr
