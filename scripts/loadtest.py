"""Load test: N concurrent analyses through a gateway, with the gateway's responsiveness measured.

    .venv/bin/python scripts/loadtest.py --concurrent 6 [--gateway URL] [--frames 120] [--pose-workers N]

Without --gateway it starts a throwaway embedded stack on free loopback ports. It cuts a short
clip of Debian's vtest.avi, submits it N times at once, polls /healthz every 100 ms while the
analyses run, and prints JSON: completed/failed counts, wall time, analyses per minute, health
latency percentiles, and the peak resident memory of every stack process. Bounded: it gives up
after --timeout seconds. Loopback only.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(gateway: str, clip: Path, n: int, timeout_s: float, pids: dict[str, int]) -> dict:
    stop = threading.Event()
    health_ms: list[float] = []
    health_errors = [0]
    peak_rss = {name: 0.0 for name in pids}

    def probe():
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    ok = c.get(f"{gateway}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                health_ms.append((time.perf_counter() - t) * 1000)
                health_errors[0] += not ok
                for name, pid in pids.items():
                    peak_rss[name] = max(peak_rss[name], rss_mb(pid))
                stop.wait(0.1)

    def one(i: int) -> tuple[str, float]:
        started = time.perf_counter()
        with httpx.Client(base_url=gateway, timeout=120) as c, open(clip, "rb") as fh:
            r = c.post("/v1/analyses", files={"video": (f"load{i}.mp4", fh, "video/mp4")}, data={"sport": "squat"})
            if r.status_code != 202:
                return f"refused {r.status_code}", time.perf_counter() - started
            aid = r.json()["id"]
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                st = c.get(f"/v1/analyses/{aid}").json()
                if st["status"] in ("done", "failed"):
                    return st["status"], time.perf_counter() - started
                time.sleep(0.5)
        return "timeout", time.perf_counter() - started

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        outcomes = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    stop.set()
    prober.join()
    q = statistics.quantiles(health_ms, n=100) if len(health_ms) >= 2 else [0.0] * 99
    return {
        "concurrent": n,
        "done": sum(o == "done" for o, _ in outcomes),
        "failed": sum(o == "failed" for o, _ in outcomes),
        "other": [o for o, _ in outcomes if o not in ("done", "failed")],
        "wall_s": round(wall, 1),
        "analyses_per_min": round(60 * n / wall, 2),
        "analysis_s": {"min": round(min(s for _, s in outcomes), 1), "max": round(max(s for _, s in outcomes), 1)},
        "health": {"samples": len(health_ms), "errors": health_errors[0], "p50_ms": round(q[49], 1),
                   "p99_ms": round(q[98], 1), "max_ms": round(max(health_ms, default=0.0), 1)},
        "peak_rss_mb": {k: round(v) for k, v in peak_rss.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--gateway", default=None)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--pose-workers", type=int, default=1, help="pose workers in the embedded stack's group")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="coach-load-"))
    clip = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", VTEST, "-frames:v", str(args.frames), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    if args.gateway:
        print(json.dumps(run(args.gateway, clip, args.concurrent, args.timeout, {})))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from coach.stack import WORKER_SERVICES, EmbeddedStack, StackPorts

    workers = {s: 1 for s in WORKER_SERVICES} | {"pose": args.pose_workers}
    stack = EmbeddedStack(tmp / "data", StackPorts.free(), workers=workers)
    stack.start()
    try:
        pids = {p.name: p.popen.pid for p in stack.procs}
        report = run(f"http://127.0.0.1:{stack.ports.gateway}", clip, args.concurrent, args.timeout, pids)
        report["pose_workers"] = args.pose_workers
        report["load_1min_after"] = round(os.getloadavg()[0], 2)
    finally:
        stack.stop()
    print(json.dumps(report))
    return 0 if report["done"] == args.concurrent else 1


if __name__ == "__main__":
    sys.exit(main())
