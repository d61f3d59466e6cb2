"""`coach analyze` and `coach bench`: a client of the gateway, starting the embedded stack if needed."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.settings import Settings

DEFAULT_GATEWAY = "http://127.0.0.1:8000"


class AnalysisError(RuntimeError):
    pass


@contextlib.contextmanager
def gateway_url(url: str | None, data_dir: str | None, quiet: bool = False):
    """Yield a gateway URL: the one given, one already answering on :8000, or a fresh embedded stack."""
    candidate = url or DEFAULT_GATEWAY
    if _healthy(candidate):
        yield candidate
        return
    if url:
        raise AnalysisError(f"no AI Coach gateway answers at {url}")
    from coach.stack import EmbeddedStack, StackPorts, console_progress
    from shared.observability import setup_cli_logging

    settings = Settings.from_env()
    stack = EmbeddedStack(Path(data_dir or settings.data_dir), StackPorts())
    # Library retries while the broker starts go to the log file; the console gets progress lines.
    setup_cli_logging(stack.data_dir / "logs" / "cli.log", "cli")
    if not quiet:
        print(f"starting the embedded stack in {stack.data_dir} ...", file=sys.stderr, flush=True)
    try:
        stack.start(progress=None if quiet else console_progress(sys.stderr))
        yield f"http://127.0.0.1:{stack.ports.gateway}"
    finally:
        stack.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def submit(client: httpx.Client, video: Path, sport: str | None, target_bbox: str | None = None) -> str:
    data = {k: v for k, v in {"sport": sport, "target_bbox": target_bbox}.items() if v}
    with open(video, "rb") as fh:
        r = client.post("/v1/analyses", files={"video": (video.name, fh, "application/octet-stream")}, data=data)
    if r.status_code != 202:
        raise AnalysisError(f"upload refused ({r.status_code}): {r.json().get('detail', r.text)}")
    return r.json()["id"]


def wait(client: httpx.Client, aid: str, timeout_s: float, on_progress=None) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = client.get(f"/v1/analyses/{aid}").json()
        if on_progress:
            on_progress(st)
        if st["status"] in ("done", "failed"):
            return st
        time.sleep(0.25)
    raise AnalysisError(f"analysis {aid} did not finish within {timeout_s:.0f} s")


def _bar(st: dict) -> None:
    parts = []
    for stage, frac in st["progress"].items():
        filled = int(round(frac * 10))
        parts.append(f"{stage} [{'#' * filled}{'.' * (10 - filled)}] {frac * 100:3.0f}%")
    print("\r" + "  ".join(parts) + f"  {st['status']:<8}", end="", file=sys.stderr, flush=True)


def summarize(result: dict) -> str:
    frames = result["athletes"][0]["frames"] if result["athletes"] else []
    with_pose = sum(1 for f in frames if f["keypoints"])
    lines = [f"{result['video']['frames']} frames, athlete posed in {with_pose}; sport {result['sport']}",
             f"athlete: {result['athletes'][0].get('choice_reason')}" if result["athletes"] else "no athlete"]
    j = result.get("judgement") or {}
    if j.get("synthetic"):
        lines.append("fault models: criteria-based, not trained on expert labels")
    if j.get("finding"):
        lines.append(f"finding: {j['finding']}")
    elif not result["faults"]:
        lines.append(f"no faults found in {j.get('frames_performing', 0)} frame(s) of the exercise")
    for n in j.get("not_judgeable", []):
        lines.append(f"  not judgeable: {n['type']} frames {n['start_frame']}-{n['end_frame']}: {n['reason']}")
    for f in result["faults"]:
        lines.append(f"  {f['title']}: frames {f['start_frame']}-{f['end_frame']} ({f['start_s']:.2f}-{f['end_s']:.2f} s), "
                     f"peak p={f['peak_probability']:.2f}, {len(f['suggestions'])} exemplar(s)")
    lines.append("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_s"].items()))
    return "\n".join(lines)


def analyze_cli(args) -> int:
    video = Path(args.video)
    if not video.is_file():
        print(f"coach analyze: no such file: {video}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        with gateway_url(args.gateway, args.data_dir) as url, httpx.Client(base_url=url, timeout=120) as client:
            aid = submit(client, video, args.sport, args.target_bbox)
            print(f"analysis {aid} queued at {url}", file=sys.stderr)
            st = wait(client, aid, args.timeout, _bar)
            print(file=sys.stderr)
            if st["status"] == "failed":
                print(f"analysis failed: {st['error']}", file=sys.stderr)
                return 1
            result = client.get(f"/v1/analyses/{aid}/result").json()
            out.mkdir(parents=True, exist_ok=True)
            (out / "result.json").write_text(json.dumps(result, indent=1))
            video_resp = client.get(f"/v1/analyses/{aid}/video", follow_redirects=True)
            video_resp.raise_for_status()
            (out / "annotated.mp4").write_bytes(video_resp.content)
    except AnalysisError as exc:
        print(f"coach analyze: {exc}", file=sys.stderr)
        return 1
    print(summarize(result))
    print(f"wrote {out / 'result.json'} and {out / 'annotated.mp4'}")
    return 0


def bare_model_fps(video: Path) -> dict:
    """The bare pose model's loop on the same video, in its own process (`python -m
    services.pose.lab.bench`): the operator tool runs the pose service's benchmark rather than
    importing it, and the timing is not disturbed by this process' HTTP client."""
    out = subprocess.run([sys.executable, "-m", "services.pose.lab.bench", str(video)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise AnalysisError(f"the bare-model benchmark failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)["bare"]


def bench_cli(args) -> int:
    video = Path(args.video)
    with gateway_url(args.gateway, args.data_dir, quiet=args.json) as url, httpx.Client(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        seen: dict[str, float] = {}
        first: dict = {}                    # the first provisional verdict: when, and what it covered

        def stage_done(st: dict) -> None:   # when each stage first reads finished (polled every 0.25 s)
            for stage, frac in (st.get("progress") or {}).items():
                if frac >= 1 and stage not in seen:
                    seen[stage] = time.perf_counter() - started
            if not first and st.get("status") == "running":
                r = client.get(f"/v1/analyses/{aid}/result", params={"partial": 1})
                if r.status_code == 200:
                    doc = r.json()
                    first.update(at_s=time.perf_counter() - started, clips_posed=doc["clips_posed"],
                                 posed_until_s=doc["posed_until_s"], faults=len(doc["faults"]),
                                 finding=doc.get("finding"))

        aid = submit(client, video, args.sport)
        st = wait(client, aid, 3600, on_progress=stage_done)
        pipeline_s = time.perf_counter() - started
        if st["status"] != "done":
            print(f"coach bench: analysis failed: {st['error']}", file=sys.stderr)
            return 1
        result = client.get(f"/v1/analyses/{aid}/result").json()
    frames = result["video"]["frames"]
    try:
        bare = bare_model_fps(video)
    except AnalysisError as exc:
        print(f"coach bench: {exc}", file=sys.stderr)
        return 1
    pipeline_fps = frames / pipeline_s
    report = {"frames": frames, "pipeline_fps": round(pipeline_fps, 2), "bare_model_fps": round(bare["fps"], 2),
              "ratio": round(pipeline_fps / bare["fps"], 3), "pipeline_seconds": round(pipeline_s, 2),
              "bare_model_seconds": round(bare["seconds"], 2),
              # upload start -> the first provisional verdict readable at ?partial=1 (the final one when the
              # clip is too short for a partial); final_verdict_s: -> the judge's whole-clip verdict (docs/benchmarks.md)
              "first_verdict_s": round(first["at_s"], 2) if first else (
                  round(seen["judge"], 2) if "judge" in seen else None),
              "final_verdict_s": round(seen["judge"], 2) if "judge" in seen else None,
              "first_partial": {k: (round(v, 2) if k == "at_s" else v) for k, v in first.items()} or None,
              "stages": {"processing_s": result["timings_s"],
                         "finished_at_s": {k: round(v, 2) for k, v in sorted(seen.items(), key=lambda kv: kv[1])}},
              "stage_seconds": result["timings_s"]}   # kept for scripts written against the first version
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0
