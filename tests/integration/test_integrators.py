"""The integrator examples (examples/integrators/), run as an integrator would against the embedded
stack: each subscribes with its own consumer group, receives the verdict and the result of one real
analysis, and validates them against the published JSON Schemas (shared/schemas/)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest


pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "integrators"


@pytest.fixture(scope="module")
def analysis(analyse_vtest_head):
    """One real analysis shared by every client test: the first 4 s of OpenCV's vtest.avi."""
    return analyse_vtest_head(4)


def _received(out: subprocess.CompletedProcess) -> list[dict]:
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _check(verdict: dict, result: dict, aid: str) -> None:
    assert verdict["valid"] and verdict["schema"] == "coach.verdict/2"
    v = verdict["message"]
    assert v["analysis_id"] == aid and v["sport"] == "squat" and v["fault_types"] and v["synthetic"] is True
    assert result["valid"] and result["schema"] == "coach.analysis-completed/1"
    assert result["message"]["analysis_id"] == aid and result["message"]["status"] == "done"


def test_confluent_kafka_consumer_gets_schema_valid_verdict_and_result(coach_stack, analysis):
    s = coach_stack.settings
    got = {}
    for topic in ("verdicts", "results"):
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "python" / "consume.py"), "--bootstrap", s.kafka_bootstrap,
             "--prefix", s.topic_prefix, "--topic", topic, "--group", f"py-integrator-{uuid.uuid4().hex[:6]}",
             "--analysis-id", analysis, "--max", "1"], capture_output=True, text=True, timeout=120)
        (got[topic],) = _received(out)
    _check(got["verdicts"], got["results"], analysis)


def test_kafkajs_consumer_gets_schema_valid_verdict_and_result(coach_stack, analysis):
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node not installed (scripts/setup.sh installs Debian's nodejs and npm)")
    node_dir = EXAMPLES / "node"
    if not (node_dir / "node_modules" / "kafkajs").exists():
        subprocess.run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--silent"],
                       cwd=node_dir, check=True, timeout=300)
    s = coach_stack.settings
    got = {}
    for topic in ("verdicts", "results"):
        out = subprocess.run(
            ["node", str(node_dir / "consume.js"), "--bootstrap", s.kafka_bootstrap, "--prefix", s.topic_prefix,
             "--topic", topic, "--group", f"node-integrator-{uuid.uuid4().hex[:6]}",
             "--analysis-id", analysis, "--max", "1"], capture_output=True, text=True, timeout=120)
        (got[topic],) = _received(out)
    _check(got["verdicts"], got["results"], analysis)
