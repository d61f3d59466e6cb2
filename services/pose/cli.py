"""`coach reps`: class-agnostic repetition count of a video (`coach eval`, pose metrics against
ground truth, is lab code: services/pose/lab/cli.py; `coach biomech` is the suggest service's:
services/suggest/cli.py).

    coach reps VIDEO [--json]                        # BlazePose on whole frames, then shared.periodic
    coach reps --keypoints FILE.json|.npy [--fps F] [--json]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # numpy is imported where it is used: `coach --help` stays fast
    import numpy as np


def load_keypoints(path: str, fps: float | None) -> tuple[np.ndarray, float]:
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
    re_ = sub.add_parser("reps", help="count repetitions of any movement done in place (no exercise name needed)")
    re_.add_argument("video", nargs="?", default=None, help="a video file: BlazePose runs on its whole frames")
    re_.add_argument("--keypoints", default=None, metavar="FILE",
                     help="count from saved keypoints instead: .npy [T,33,3], JSON [T][33][3] / {keypoints, fps}, or result.json")
    re_.add_argument("--fps", type=float, default=None, help="frame rate (default: the video's / the file's / 30)")
    re_.add_argument("--json", action="store_true", help='print {"count", "reps": [{"start_s", "end_s"}], "period_s", "finding"}')
    re_.set_defaults(fn=cmd_reps)
