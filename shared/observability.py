"""Structured JSON logs, Prometheus metrics and the /metrics + /healthz endpoint of workers.

The gateway serves /metrics and /healthz from FastAPI; worker services start a small HTTP
server with `serve_health`. Metric names follow Prometheus conventions (`coach_` prefix,
`_total` counters, `_seconds` histograms) and carry a `service` label.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

# The analysis a log line belongs to, set by the worker loop around each message.
analysis_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("analysis_id", default=None)
trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

MESSAGES = Counter("coach_messages_total", "Messages handled, by outcome", ["service", "topic", "outcome"])
PROCESSING_SECONDS = Histogram(
    "coach_processing_seconds", "Seconds spent processing one message", ["service", "topic"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
ERRORS = Counter("coach_errors_total", "Processing errors, by kind", ["service", "kind"])
DEAD_LETTERS = Counter("coach_dead_letters_total", "Messages sent to the dead-letter topic", ["service", "topic"])
IN_FLIGHT = Gauge("coach_in_flight_messages", "Messages being processed now", ["service"])
FRAMES = Counter("coach_frames_total", "Video frames processed", ["service"])
CONSUMER_LAG = Gauge(
    "coach_consumer_lag_messages", "Messages behind the newest seen offset (from consumed positions)",
    ["service", "topic", "partition"],
)
# Operator-facing outcomes (docs/scaling.md): how long an analysis takes end to end, how many
# finish in which state, what the pose model costs, and whether a GPU is visible.
ANALYSIS_SECONDS = Histogram(
    "coach_analysis_seconds", "Seconds from submission (request.json submitted_at) to the result document",
    ["sport"], buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600),
)
ANALYSES_COMPLETED = Counter(
    "coach_analyses_completed_total", "Analyses finished, by final state (done by suggest; failed where it failed)",
    ["service", "status"],
)
POSE_INFERENCE_SECONDS = Histogram(
    "coach_pose_inference_seconds", "Pose model seconds per clip (inference only, no fetch/decode)", ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
POSE_SESSIONS = Counter(
    "coach_pose_sessions_total", "Clips posed, by whether BlazePose continued the previous clip's session",
    ["service", "outcome"],   # continued | fresh
)
POSE_BATCH_FRAMES = Histogram(
    "coach_pose_batch_frames", "Frames per pose inference batch (one clip)", ["service"],
    buckets=(1, 2, 4, 8, 16, 24, 32, 48, 64, 128),
)
GPU_IN_USE = Gauge("coach_gpu_in_use", "1 if this process sees a CUDA GPU (torch.cuda.is_available())", ["service"])


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        aid = getattr(record, "analysis_id", None) or analysis_id_var.get()
        if aid:
            out["analysis_id"] = aid
        tid = trace_id_var.get()
        if tid:
            out["trace_id"] = tid
        for k, v in getattr(record, "fields", {}).items():
            out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(service: str, level: str = "INFO") -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python is chatty at INFO (every rebalance step)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    return logging.getLogger(service)


# Client libraries whose retries and connection chatter belong in a log file, not on a console.
LIBRARY_LOGGERS = ("kafka", "urllib3", "minio", "botocore", "boto3", "s3transfer", "httpx", "httpcore")


class _NotLibrary(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == n or record.name.startswith(n + ".") for n in LIBRARY_LOGGERS)


def setup_cli_logging(log_file: Path, service: str = "cli") -> logging.Logger:
    """Logging for a console command: everything (library retries included) as JSON lines in
    `log_file`; on the console only this project's own warnings and errors, as plain text."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(JsonFormatter(service))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.addFilter(_NotLibrary())
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [to_file, console]
    root.setLevel(logging.INFO)
    logging.getLogger("kafka").setLevel(logging.INFO)
    return logging.getLogger(service)


def log_fields(**fields) -> dict:
    """`log.info("msg", extra=log_fields(frames=10))` adds fields to the JSON line."""
    return {"fields": fields}


class _Handler(BaseHTTPRequestHandler):
    health: Callable[[], tuple[bool, dict]] = staticmethod(lambda: (True, {}))

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path.startswith("/metrics"):
            body, ctype, code = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
        elif self.path.startswith("/healthz"):
            ok, detail = self.health()
            body = json.dumps({"ok": ok, **detail}).encode()
            ctype, code = "application/json", 200 if ok else 503
        else:
            body, ctype, code = b"not found\n", "text/plain", 404
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep access logs out of the JSON log stream
        pass


def serve_health(port: int, health: Callable[[], tuple[bool, dict]], host: str | None = None) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on a daemon thread; port 0 picks a free port (see .server_port).

    `host` defaults to COACH_METRICS_HOST (127.0.0.1 unless set; containers set 0.0.0.0 so probes
    and Prometheus can reach it).
    """
    if host is None:
        from shared.settings import Settings
        host = Settings.from_env().metrics_host
    handler = type("Handler", (_Handler,), {"health": staticmethod(health)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
