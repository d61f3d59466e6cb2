"""`coach eval`: pose metrics against ground truth (`coach reps` is runtime: services/pose/cli.py).

    coach eval --pred FILE --gt FILE [--json] [--heatmap PNG] [--dim 2|3] [--root-align] [--min-confidence C]

File formats (our result.json, JSON or NPZ of [T, J, 2|3] arrays with joint names) and the
metric definitions: services/pose/lab/metrics.py and docs/biomechanics.md.
"""
from __future__ import annotations

import json
import sys


def cmd_eval(args) -> int:
    from services.pose.lab.metrics import PoseFileError, error_heatmap, evaluate, load_poses

    try:
        gt = load_poses(args.gt, args.dim, 0.0)
        pred = load_poses(args.pred, args.dim or gt.dim, args.min_confidence)
        ev = evaluate(pred, gt, root=args.root_align)
    except PoseFileError as exc:
        print(f"coach eval: {exc}", file=sys.stderr)
        return 2
    rep = ev.report
    if args.heatmap:
        error_heatmap(ev, args.heatmap)
        rep["heatmap"] = str(args.heatmap)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    unit = rep["unit"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    print(f"{rep['frames']['gt']} ground-truth frames ({rep['frames']['matched']} predicted), {len(rep['joints'])} joints, "
          f"{rep['dim']}D{' root-aligned' if rep['root_aligned'] else ''}")
    print(f"labelled {rep['counts']['gt_labelled']}, evaluated {rep['counts']['evaluated']}, "
          f"not predicted {rep['counts']['pred_missing']}, unlabelled (excluded) {rep['counts']['gt_missing']}")
    m = rep["mpjpe"]["mean"]
    print(f"MPJPE {'-' if m is None else f'{m:.3f}'} {unit}   PCKh@0.5 {pct(rep['pckh@0.5']['mean'])}   "
          f"PCK@0.2 {pct(rep['pck@0.2']['mean'])}" + (f"   PCK@150mm {pct(rep['pck@150mm']['mean'])}" if "pck@150mm" in rep else ""))
    print(f"{'joint':<18}{'MPJPE':>10}{'PCKh@0.5':>10}{'PCK@0.2':>10}")
    for n in rep["joints"]:
        v = rep["mpjpe"]["per_joint"][n]
        print(f"{n:<18}{'-' if v is None else f'{v:.3f}':>10}{pct(rep['pckh@0.5']['per_joint'][n]):>10}"
              f"{pct(rep['pck@0.2']['per_joint'][n]):>10}")
    if args.heatmap:
        print(f"heatmap: {args.heatmap}")
    return 0


def register(sub) -> None:
    ev = sub.add_parser("eval", help="pose metrics against ground truth: MPJPE, PCKh@0.5, PCK@0.2, error heatmap")
    ev.add_argument("--pred", required=True, help="predictions: result.json, or JSON / NPZ of [T,J,2|3] arrays with names")
    ev.add_argument("--gt", required=True, help="ground truth, same formats")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--heatmap", default=None, metavar="PNG", help="write the per-frame x per-joint error image here")
    ev.add_argument("--dim", type=int, choices=(2, 3), default=None,
                    help="2D keypoints or 3D keypoints_3d from a result.json (default: the ground truth's)")
    ev.add_argument("--root-align", action="store_true", help="subtract the hip midpoint per frame on both sides (3D)")
    ev.add_argument("--min-confidence", type=float, default=0.0,
                    help="prediction joints below this confidence count as not predicted (default 0)")
    ev.set_defaults(fn=cmd_eval)
