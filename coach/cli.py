"""`coach`: the one command people use. Sub-commands are thin; the work lives in the library."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from shared.settings import Settings


def cmd_up(args) -> int:
    from coach.stack import EmbeddedStack, PortInUse, StackPorts, console_progress
    from shared.observability import setup_cli_logging

    settings = Settings.from_env()
    ports = StackPorts(gateway=args.port).shifted(args.port_offset)
    workers = {"tracker": 1, "pose": args.pose_workers, "judge": 1, "suggest": 1, "align": 1}
    stack = EmbeddedStack(Path(args.data_dir or settings.data_dir), ports, workers,
                          with_prometheus=getattr(args, "with_prometheus", False))
    # Library retries while the broker starts go to the log file; the console gets progress lines.
    setup_cli_logging(stack.data_dir / "logs" / "stack.log", "stack")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start(progress=console_progress(sys.stdout))
    except (PortInUse, RuntimeError, TimeoutError, FileNotFoundError) as exc:
        print(f"coach up: {exc}", file=sys.stderr)
        stack.stop()
        return 2
    print(f"AI Coach is up: http://127.0.0.1:{ports.gateway}  (data in {stack.data_dir}; Ctrl+C stops)", flush=True)
    print("Keyless access is accepted on loopback only.", flush=True)
    if stack.with_prometheus:
        print(f"Prometheus: http://127.0.0.1:{ports.prometheus}  (scraping every service)", flush=True)
    while not stop.wait(1.0):
        stack.supervise_once()
    print("stopping...", flush=True)
    stack.stop()
    return 0


def cmd_ps(args) -> int:
    from coach.stack import read_state

    state = read_state(Path(args.data_dir or Settings.from_env().data_dir))
    if state is None:
        print("no embedded stack has run on this data dir", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(state["processes"], indent=2))
    else:
        for p in state["processes"]:
            metrics = f"http://127.0.0.1:{p['metrics_port']}/metrics" if p.get("metrics_port") else ""
            print(f"{p['name']:<14} pid={p['pid']!s:<8} {p['state']:<8} restarts={p['restarts']}  {metrics}")
    return 0


def cmd_schemas(args) -> int:
    from shared.schema_catalog import SCHEMA_DIR, write_schemas

    for path in write_schemas(Path(args.dir) if args.dir else SCHEMA_DIR):
        print(path)
    return 0


def cmd_analyze(args) -> int:
    from coach.client import analyze_cli

    return analyze_cli(args)


def cmd_bench(args) -> int:
    from coach.client import bench_cli

    return bench_cli(args)


# Modules that add their own sub-commands: each has `register(subparsers)`. A service's
# commands live beside its code (e.g. `coach judge train` in services/judge/lab/cli.py).
COMMAND_MODULES: list[str] = ["coach.dlq", "coach.tail", "services.gateway.auth", "services.judge.lab.cli", "services.pose.lab.cli", "services.pose.cli", "services.pose.lab.strn_cli", "services.suggest.cli", "services.tracker.cli", "services.tracker.lab.cli"]
# Sub-commands whose code needs two services (the tracker and pose): the parser is the service's,
# the handler is in the top-level lab/ package, which no service imports ("module:function").
LAB_COMMANDS: dict[tuple[str, str], str] = {("pose", "run"): "lab.pose_run:cmd_run",
                                            ("pose", "bench-models"): "lab.pose_run:cmd_bench_models"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coach", description="AI Coach: video-based athletic coaching")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start the embedded stack (broker, object store, services, gateway)")
    up.add_argument("--data-dir", help="where the broker log, objects and logs live (default var/coach)")
    up.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    up.add_argument("--port-offset", type=int, default=0,
                    help="move the broker, store and metrics ports (19092, 18333, 18400-18412, 19101+) by this much")
    up.add_argument("--pose-workers", type=int, default=1, help="pose worker processes (default 1)")
    up.add_argument("--with-prometheus", action="store_true",
                    help="also run a local Prometheus (Debian's /usr/bin/prometheus) on 19090 (+ offset) scraping every service")
    up.set_defaults(fn=cmd_up)

    ps = sub.add_parser("ps", help="list the embedded stack's processes")
    ps.add_argument("--data-dir")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(fn=cmd_ps)

    sc = sub.add_parser("schemas", help="write the JSON Schemas of every topic's message model and stored document")
    sc.add_argument("--dir")
    sc.set_defaults(fn=cmd_schemas)

    an = sub.add_parser("analyze", help="analyse a video and write result.json + annotated video")
    an.add_argument("video")
    an.add_argument("--sport", default=None)
    an.add_argument("--out", default="out")
    an.add_argument("--gateway", default=None, help="URL of a running gateway (default: start the embedded stack if none answers on :8000)")
    an.add_argument("--data-dir", default=None)
    an.add_argument("--target-bbox", default=None, help="x,y,w,h of the athlete in the first frame (pixels)")
    an.add_argument("--timeout", type=float, default=1800)
    an.set_defaults(fn=cmd_analyze)

    be = sub.add_parser("bench", help="full pipeline vs bare pose model on one video")
    be.add_argument("video")
    be.add_argument("--sport", default=None)
    be.add_argument("--json", action="store_true")
    be.add_argument("--gateway", default=None)
    be.add_argument("--data-dir", default=None)
    be.set_defaults(fn=cmd_bench)

    import importlib
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    route = LAB_COMMANDS.get((args.cmd, getattr(args, f"{args.cmd}_cmd", None)))
    if route:
        import importlib

        module, fn = route.split(":")
        return getattr(importlib.import_module(module), fn)(args)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
