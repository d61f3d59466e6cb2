"""The console while the embedded stack starts: one progress line per component, no library noise."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The same logging and progress set-up `coach up` / `coach analyze` use, on broker + store only.
SCRIPT = """
import sys
from pathlib import Path
from shared.observability import setup_cli_logging
from coach.stack import EmbeddedStack, StackPorts, console_progress
data = Path(sys.argv[1])
stack = EmbeddedStack(data, StackPorts.free(), workers={}, with_gateway=False)
setup_cli_logging(stack.data_dir / "logs" / "cli.log", "cli")
try:
    stack.start(progress=console_progress(sys.stderr))
finally:
    stack.stop()
"""


def test_stack_start_console_shows_progress_not_kafka_retries(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    console = out.stdout + out.stderr
    assert out.returncode == 0, console
    assert "starting object store… ready in" in console
    assert "starting broker… ready in" in console
    for noise in ("ECONNREFUSED", "KafkaConnectionError", "Connection failed", "kafka.conn", "<BrokerConnection"):
        assert noise not in console, console
    # Whatever the client library said went to the log file instead.
    assert (tmp_path / "logs" / "cli.log").exists()
