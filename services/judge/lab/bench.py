"""How long judging a clip takes, next to the pose step's cost.

    python -m services.judge.lab.bench [--frames 300] [--repeats 7] [--pose-ms-per-frame 20] [--json]

For every shipped pack: a synthetic clip of --frames frames at 30 fps (services/judge/synth.py,
detector-like noise and dropouts), judged the way the judge service does it (features with the
median filter and deltas, one calibrated SVM per fault, joint angles, fault segments, the
per-frame verdict document encoded as JSON); object-store I/O is left out. Median of --repeats
runs after one warm-up. Also the cost of loading a pack (what a hot reload adds) and, for
comparison, the pose step at --pose-ms-per-frame (docs/benchmarks.md: BlazePose ~20 ms/frame
on this 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _clip(sport: str, frames: int, seed: int = 0):
    from services.judge import synth

    parts, fps = [], 30.0
    i = 0
    while sum(len(p) for p in parts) < frames:
        parts.append(synth.generate(sport, np.random.default_rng([seed, i]), fps=fps, duration_s=frames / fps).keypoints)
        i += 1
    return np.concatenate(parts)[:frames], fps


def bench_pack(sport: str, frames: int, repeats: int) -> dict:
    from services.judge.packs import PACKS_ROOT, load_pack
    from services.judge.segments import fault_segments
    from shared.features import ANGLE_NAMES, joint_angles_deg

    load_pack(sport)                      # first load also imports scikit-learn's modules
    t0 = time.perf_counter()
    pack = load_pack(sport)               # what a hot reload costs, once the files are local
    load_ms = 1000 * (time.perf_counter() - t0)
    kps, fps = _clip(sport, frames)
    stages: dict[str, list[float]] = {k: [] for k in ("features", "svm", "angles", "segments", "verdict_json", "total")}
    for r in range(repeats + 1):
        t = [time.perf_counter()]
        X, ok = pack.spec.design(kps, fps)
        t.append(time.perf_counter())
        probs = np.full((len(kps), len(pack.fault_ids)), np.nan)
        Xi = np.where(np.isfinite(X), X, pack.impute)[ok]
        for j, fid in enumerate(pack.fault_ids):
            probs[ok, j] = pack.models[fid].predict_proba(Xi)[:, 1]
        t.append(time.perf_counter())
        angles = joint_angles_deg(kps)
        t.append(time.perf_counter())
        segs = fault_segments(probs, list(pack.fault_ids), pack.threshold_list())
        t.append(time.perf_counter())
        doc = {"frames": [{"index": i, "faults": None if not np.isfinite(probs[i]).all() else
                           {f: round(float(p), 4) for f, p in zip(pack.fault_ids, probs[i])},
                           "angles_deg": {a: (None if not np.isfinite(v) else round(float(v), 2))
                                          for a, v in zip(ANGLE_NAMES, angles[i])}} for i in range(len(kps))],
               "segments": segs}
        json.dumps(doc, separators=(",", ":"))
        t.append(time.perf_counter())
        if r == 0:
            continue  # warm-up
        for k, (a, b) in zip(list(stages)[:-1], zip(t[:-1], t[1:])):
            stages[k].append(1000 * (b - a))
        stages["total"].append(1000 * (t[-1] - t[0]))
    sizes = {p.name: p.stat().st_size for p in (PACKS_ROOT / sport).iterdir()}
    med = {k: round(statistics.median(v), 2) for k, v in stages.items()}
    return {"sport": sport, "frames": frames, "faults": len(pack.fault_ids), "inputs": len(pack.spec.input_names),
            "support_vectors": int(sum(m[-1].calibrated_classifiers_[0].estimator.support_vectors_.shape[0]
                                       for m in pack.models.values())),
            "ms": med, "ms_per_frame": round(med["total"] / frames, 4), "pack_load_ms": round(load_ms, 1),
            "pack_bytes": sum(sizes.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--pose-ms-per-frame", type=float, default=20.0)
    ap.add_argument("--sport", action="append")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from services.judge.packs import available_packs

    import sklearn

    rows = [bench_pack(s, args.frames, args.repeats) for s in (args.sport or available_packs())]
    pose_ms = args.pose_ms_per_frame * args.frames
    machine = {"cpu": _cpu(), "cores": os.cpu_count(), "gpu": "none", "python": platform.python_version(),
               "numpy": np.__version__, "sklearn": sklearn.__version__}
    for r in rows:
        r["pose_ms"] = pose_ms
        r["judge_vs_pose"] = round(r["ms"]["total"] / pose_ms, 4)
    if args.json:
        print(json.dumps({"machine": machine, "packs": rows}, indent=1))
        return 0
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, no GPU; numpy {machine['numpy']}, "
          f"scikit-learn {machine['sklearn']}")
    print(f"{args.frames}-frame clip, median of {args.repeats} runs (ms); pose step at {args.pose_ms_per_frame:g} "
          f"ms/frame = {pose_ms:.0f} ms")
    print(f"{'pack':<12} {'features':>9} {'svm':>8} {'angles':>7} {'segments':>9} {'verdict':>8} {'total':>8} "
          f"{'ms/frame':>9} {'vs pose':>8} {'load':>7} {'SVs':>6}")
    for r in rows:
        m = r["ms"]
        print(f"{r['sport']:<12} {m['features']:>9.1f} {m['svm']:>8.1f} {m['angles']:>7.1f} {m['segments']:>9.2f} "
              f"{m['verdict_json']:>8.1f} {m['total']:>8.1f} {r['ms_per_frame']:>9.3f} {100 * r['judge_vs_pose']:>7.2f}% "
              f"{r['pack_load_ms']:>6.1f} {r['support_vectors']:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
