"""A handler that hangs inside a live worker: deadline, dead letter, failed status, exit, replay.

Real broker and object store (the `infra` fixture); the worker is a real process running
`run_service`, because what matters is that it *exits* although the hung thread cannot be
stopped (a normal interpreter exit would join that thread forever).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from shared import bus
from shared.messages import AnalysisCompleted, DeadLetter
from shared.store import ObjectStore
from shared.worker import EXIT_HANDLER_STUCK

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 2

# A tiny service reading AnalysisCompleted from `poses` and echoing it to `verdicts`; a message
# with error="hang" sleeps for an hour unless an operator marked it fixed in the store.
SERVICE = textwrap.dedent("""
    import time
    from shared.messages import AnalysisCompleted
    from shared.settings import Settings
    from shared.worker import WorkerSpec, run_service

    s = Settings.from_env()

    def handle(msg, ctx):
        ctx.status(msg.analysis_id, "running", 0.5)
        if msg.error == "hang" and not ctx.store.exists(f"test/fixed/{msg.analysis_id}"):
            time.sleep(3600)
        ctx.emit(s.topics.verdicts, msg, msg.analysis_id)
        ctx.status(msg.analysis_id, "done", 1.0)

    run_service(WorkerSpec("stuck", s.topics.poses, AnalysisCompleted, handle), s)
""")


def _start(settings, tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "stuck_service.py"
    script.write_text(SERVICE)
    env = {**os.environ, **settings.as_env(), "COACH_HANDLER_DEADLINE_S": str(DEADLINE_S), "PYTHONPATH": str(ROOT)}
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return proc, log


def test_a_hung_handler_is_dead_lettered_failed_committed_and_its_process_exits(isolated_settings, tmp_path, read_topic):
    s = isolated_settings
    stuck, after = uuid.uuid4().hex, uuid.uuid4().hex
    producer = bus.make_producer(s, "test")
    # same key -> same partition, in this order: the message behind the hung one must not be lost
    for aid, error in ((stuck, "hang"), (after, None)):
        bus.send(producer, s.topics.poses, AnalysisCompleted(analysis_id=aid, status="done", error=error), "k").get(10)
    producer.flush(10)

    proc, log = _start(s, tmp_path, "first")
    try:
        rc = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the worker did not exit after its handler hung:\n{log.read_text()[-3000:]}")
    assert rc == EXIT_HANDLER_STUCK, log.read_text()[-3000:]
    text = log.read_text()
    assert "exceeded its deadline" in text and stuck in text, "logged with the analysis id"

    # the message is in the dead-letter topic with the reason, and replayable
    letters = read_topic(s, s.topics.dead_letters, DeadLetter, 1)
    assert len(letters) == 1
    dl = letters[0]
    assert dl.service == "stuck" and dl.source_topic == s.topics.poses and dl.key == "k" and dl.attempts == 1
    assert f"handler exceeded deadline of {DEADLINE_S} s" in dl.error
    assert AnalysisCompleted.from_bytes(dl.value.encode()).analysis_id == stuck
    # the analysis is failed in the stage it was stuck in, with the reason, and integrators are told
    status = ObjectStore(s).get_json(f"analyses/{stuck}/status/stuck.json")
    assert status["state"] == "failed" and f"deadline of {DEADLINE_S} s" in status["error"]
    done = read_topic(s, s.topics.results, AnalysisCompleted, 1, want=lambda m: m.analysis_id == stuck)
    assert done and done[0].status == "failed" and "deadline" in done[0].error

    # A fresh process (what the supervisor starts) goes on with the next message, not the hung
    # one (committed); after the operator fixes the cause, `coach dlq replay` re-drives it.
    from coach.dlq import read_dead_letters, replay

    proc, log = _start(s, tmp_path, "second")
    try:
        out = read_topic(s, s.topics.verdicts, AnalysisCompleted, 1, timeout_s=60)
        assert [m.analysis_id for m in out] == [after], log.read_text()[-3000:]
        ObjectStore(s).put_json(f"test/fixed/{stuck}", {"by": "operator"})
        listed = [(pos, d) for pos, d in read_dead_letters(s) if d.key == "k"]
        assert len(listed) == 1
        assert replay(s, listed) == 1
        out = read_topic(s, s.topics.verdicts, AnalysisCompleted, 2, timeout_s=60)
        assert sorted(m.analysis_id for m in out) == sorted([after, stuck]), "nothing lost, nothing twice"
        assert ObjectStore(s).get_json(f"analyses/{stuck}/status/stuck.json")["state"] == "done"
        assert proc.poll() is None, "the healthy worker keeps running"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
