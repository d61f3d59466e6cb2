"""`coach eval`, `coach reps`: pose metrics against ground truth, class-agnostic repetition count of a
video (`coach biomech` is the suggest service's: services/suggest/cli.py).

    coach eval --pred FILE --gt FILE [--json] [--heatmap PNG] [--dim 2|3] [--root-align] [--min-confidence C]
    coach reps VIDEO [--json]                        # BlazePose on whole frames, then shared.periodic
    coach reps --keypoints FILE.json|.npy [--fps F] [--json]

File formats (our result.json, JSON or NPZ of [T, J, 2|3] arrays with joint names) and the
metric definitions: services/pose/metrics.py and docs/biomechanics.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_eval(args) -> int:
    from services.pose.metrics import PoseFileError, error_heatmap, evaluate, load_poses

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


def load_keypoints(path: str, fps: float | None) -> tuple["np.ndarray", float]:
    """Saved keypoints -> (kps [T,33,3] x_px, y_px, visibility with NaN rows, fps). Formats: .npy [T,33,3];
    JSON: a [T][33][3] list (null = no pose), {"keypoints": that, "fps": F}, or a result.json (its target athlete)."""
    import numpy as np

    from shared.skeleton import LANDMARK_NAMES

    if path.endswith(".npy"):
        kps = np.load(path).astype(np.float64)
        doc_fps = None
    else:
        doc = json.loads(Path(path).read_text())
        doc_fps = None
        if isinstance(doc, dict) and "athletes" in doc:  # coach.result/1
            doc_fps = doc["video"]["fps"]
            ath = next((a for a in doc["athletes"] if a.get("is_target")), doc["athletes"][0] if doc["athletes"] else None)
            frames = ath["frames"] if ath else []
            T = max((f["index"] for f in frames), default=-1) + 1
            kps = np.full((T, len(LANDMARK_NAMES), 3), np.nan)
            for f in frames:
                if f.get("keypoints"):
                    kps[f["index"]] = [f["keypoints"].get(n, [np.nan] * 3) for n in LANDMARK_NAMES]
        else:
            if isinstance(doc, dict):
                doc_fps, doc = doc.get("fps"), doc["keypoints"]
            kps = np.array([[[np.nan] * 3] * len(LANDMARK_NAMES) if row is None else row for row in doc], dtype=np.float64)
    if kps.ndim != 3 or kps.shape[1:] != (len(LANDMARK_NAMES), 3):
        raise ValueError(f"expected keypoints [T,{len(LANDMARK_NAMES)},3], got {list(kps.shape)}")
    return kps, float(fps or doc_fps or 30.0)


def cmd_reps(args) -> int:
    import numpy as np

    from shared.periodic import count_repetitions

    if bool(args.video) == bool(args.keypoints):
        print("coach reps: give a VIDEO or --keypoints FILE (one of them)", file=sys.stderr)
        return 2
    if args.keypoints:
        try:
            kps, fps = load_keypoints(args.keypoints, args.fps)
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            print(f"coach reps: {args.keypoints}: {exc}", file=sys.stderr)
            return 2
    else:
        import cv2

        from services.pose.blazepose import BlazePoseEstimator
        from shared.video import read_frames

        cap = cv2.VideoCapture(args.video)
        frames = read_frames(cap) if cap.isOpened() else []
        if not frames:
            cap.release()
            print(f"coach reps: {args.video}: not a readable video", file=sys.stderr)
            return 2
        fps = args.fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
        with BlazePoseEstimator() as est:
            kps = est.estimate_frames(frames).keypoints_px.astype(np.float64)  # [T,33,3]
    rc = count_repetitions(kps, fps)
    if args.json:
        print(json.dumps(rc.to_json(fps), indent=2))
        return 0
    print(f"{rc.count} repetitions in {len(kps)} frames at {fps:g} fps: {rc.finding}")
    for i, (s, e) in enumerate(rc.reps, 1):
        print(f"  {i}: {s / fps:.2f}-{e / fps:.2f} s (frames {s}-{e})")
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

    re_ = sub.add_parser("reps", help="count repetitions of any movement done in place (no exercise name needed)")
    re_.add_argument("video", nargs="?", default=None, help="a video file: BlazePose runs on its whole frames")
    re_.add_argument("--keypoints", default=None, metavar="FILE",
                     help="count from saved keypoints instead: .npy [T,33,3], JSON [T][33][3] / {keypoints, fps}, or result.json")
    re_.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's / the file's / 30)")
    re_.add_argument("--json", action="store_true", help='print {"count", "reps": [{"start_s", "end_s"}], "period_s", "finding"}')
    re_.set_defaults(fn=cmd_reps)
