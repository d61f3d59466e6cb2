"""`coach biomech`: the biomechanics section of a result.json recomputed offline (plots, CSV).

    coach biomech RESULT.json --out DIR [--athlete-height-m H] [--json]

What it computes: services/suggest/biomech.py and docs/biomechanics.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_biomech(args) -> int:
    from services.suggest.biomech_report import write_local

    try:
        doc = json.loads(Path(args.result).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"coach biomech: {exc}", file=sys.stderr)
        return 2
    summary = write_local(doc, Path(args.out), args.athlete_height_m)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    sc = summary["scale"]
    print(f"{summary['frames']} frames at {summary['fps']:g} fps; scale {sc['px_per_m']} px/m ({sc['source']}), "
          f"skeleton stature {sc['skeleton_stature_m']} m")
    print(f"peak COM speed: {summary['peak_com_speed_m_s']} m/s; jumps: {len(summary['jumps'])}")
    for j in summary["jumps"]:
        print(f"  {j['takeoff_s']:.2f}-{j['landing_s']:.2f} s: flight {j['flight_time_s']:.3f} s, height {j['height_m']} m "
              f"(COM rise {j['com_rise_m']} m)")
    cv = {k: v for k, v in summary["bone_length_cv"].items() if v is not None}
    if cv:
        print("3D bone length CV: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in cv.items()))
    for f in summary["files"]:
        print(f)
    return 0


def register(sub) -> None:
    bi = sub.add_parser("biomech", help="biomechanics of a result.json: angles, velocities, COM, jumps, plots, CSV")
    bi.add_argument("result")
    bi.add_argument("--out", default="out/biomech")
    bi.add_argument("--athlete-height-m", type=float, default=None, help="athlete's height: sets the metric scale")
    bi.add_argument("--json", action="store_true")
    bi.set_defaults(fn=cmd_biomech)
