"""How big the result is whole and in pages (#17), and how soon the page shows it.

    .venv/bin/python scripts/bench_result_pages.py out/vtest/result.json [--browser] [--json]

Sizes: result.json as stored, the summary (GET .../result?frames=none, result-summary.json) and
the columnar chunks (GET .../frames, result-frames/NNNNN.json), each raw and gzipped as the
gateway sends it (GZipMiddleware, level 9). The summary and chunks are made by the same functions
suggest stores them with (shared/result_pages.py).

--browser: the real gateway app (in process, on an in-memory store holding that result as a
finished analysis) and Debian's headless Chromium: milliseconds from navigation to the summary
drawn (?frames=none) and to every frame loaded (the /frames pages), and, with --before REV, the
same page as it was at git revision REV (its app.js served in place of today's: it fetched the
whole result before drawing anything), on loopback and on an emulated 10 Mbit/s link with 40 ms
round trips. Medians of --runs runs. Not a test: figures depend on the machine (docs/benchmarks.md
names it).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import result_pages  # noqa: E402
from shared.store import encode_json  # noqa: E402


def _sizes(obj) -> tuple[int, int]:
    raw = encode_json(obj)
    return len(raw), len(gzip.compress(raw, compresslevel=9))


def sizes(result: dict) -> dict:
    chunks = [c.model_dump(by_alias=True) for c in result_pages.chunks(result)]
    full = _sizes(result)
    summary = _sizes(result_pages.summarize(result))
    each = [_sizes(c) for c in chunks]
    return {
        "frames": len(result["athletes"][0]["frames"]), "people": len(result["athletes"]),
        "result_bytes": full[0], "result_gzip_bytes": full[1],
        "summary_bytes": summary[0], "summary_gzip_bytes": summary[1],
        "chunks": len(chunks), "chunk_frames": result_pages.CHUNK_FRAMES,
        "chunk_bytes_max": max(s[0] for s in each), "chunk_gzip_bytes_max": max(s[1] for s in each),
        "chunks_bytes_total": sum(s[0] for s in each), "chunks_gzip_bytes_total": sum(s[1] for s in each),
    }


def _seed(store, result: dict) -> str:
    from shared.result import ResultSummary
    from shared.store import keys

    aid = result["id"]
    video = result["video"]
    store.put_json(keys.request(aid), {"analysis_id": aid, "sport": result["sport"], "video": video,
                                       "submitted_at": "2026-01-01T00:00:00Z"})
    for stage in ("tracker", "pose", "judge", "suggest"):
        store.put_json(keys.status(aid, stage), {"stage": stage, "state": "done", "fraction": 1.0,
                                                 "updated_at": "2026-01-01T00:01:00Z",
                                                 **({"result_revision": result.get("revision", 0)} if stage == "suggest" else {})})
    for k, chunk in enumerate(result_pages.chunks(result)):
        store.put_json(keys.result_frames(aid, k), chunk)
    store.put_json(keys.result_summary(aid), ResultSummary.model_validate(result_pages.summarize(result)))
    store.put_json(keys.result(aid), result)
    return aid


_WAIT_SUMMARY = """
const done = arguments[arguments.length - 1], t0 = performance.timeOrigin;
(function poll() {
  const n = document.querySelector('#summary');
  if (n && !n.closest('[hidden]') && n.innerText) return done(performance.now());
  setTimeout(poll, 5);
})();"""
_WAIT_FRAMES = """
const done = arguments[arguments.length - 1];
(function poll() {
  const A = window.AICoach && AICoach.state.A;
  if (A && A.frames.every((f) => f !== undefined)) return done(performance.now());
  setTimeout(poll, 5);
})();"""
ROOT = Path(__file__).resolve().parents[1]


def browser_times(result: dict, runs: int, before: str | None) -> dict:
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    import services.gateway.app as gateway_app
    from shared.settings import Settings
    from shared.testing import MemoryStore

    store = MemoryStore()
    aid = _seed(store, result)
    gateway_app.ObjectStore = lambda settings: store
    app = gateway_app.create_app(Settings())
    from starlette.responses import Response
    from starlette.routing import Route

    scripts = {"now": (ROOT / "services/gateway/static/app.js").read_text()}
    if before:
        scripts["before"] = subprocess.run(["git", "show", f"{before}:services/gateway/static/app.js"], cwd=ROOT,
                                           capture_output=True, text=True, check=True).stdout
    serving = {"js": "now"}

    async def app_js(request):   # the page's script, today's or REV's
        return Response(scripts[serving["js"]], media_type="text/javascript", headers={"Cache-Control": "no-store"})
    app.router.routes.insert(0, Route("/static/app.js", app_js))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,900",
                "--disable-background-networking"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_script_timeout(120)
    base = f"http://127.0.0.1:{port}"
    out = {}
    try:
        for link, cond in (("loopback", None), ("10 Mbit/s, 40 ms RTT", (40, 10e6 / 8))):
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
            if cond:
                driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
                    "offline": False, "latency": cond[0], "downloadThroughput": cond[1], "uploadThroughput": cond[1]})
            for js in scripts:
                serving["js"] = js
                first, frames = [], []
                for _ in range(runs):
                    driver.get(f"{base}/#/")
                    driver.get(f"{base}/#/a/{aid}")
                    driver.refresh()
                    first.append(driver.execute_async_script(_WAIT_SUMMARY))
                    frames.append(driver.execute_async_script(_WAIT_FRAMES))
                out[f"{link}, {'page now' if js == 'now' else 'page at ' + before}"] = {
                    "summary_drawn_ms": round(statistics.median(first)), "all_frames_ms": round(statistics.median(frames))}
    finally:
        driver.quit()
        server.should_exit = True
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", type=Path)
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", metavar="REV", help="also time the page as it was at this git revision")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = json.loads(args.result.read_text())
    report = sizes(result)
    if args.browser:
        report["browser"] = browser_times(result, args.runs, args.before)
    print(json.dumps(report, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
