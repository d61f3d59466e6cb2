"""`coach align VIDEO_A VIDEO_B`: time offset between two cameras filming one performance.

    coach align A.mp4 B.mp4 --json          -> {"offset_frames", "offset_s", "method", "confidence", ...}
    coach align A.mp4 B.mp4 --method presence [--threshold 0.75] [--stride 2]

Frame i of A shows the same moment as frame i + offset_frames of B (equal frame rates; in
general frame i * fps_B / fps_A + offset_frames), i.e. t_B = t_A + offset_s. Pure local
computation (services/tracker/align.py), no stack needed.

`coach tracker eval | evalset` (the tracker's evaluation) are in services/tracker/lab/cli.py.
"""
from __future__ import annotations

import json
import sys


def cmd_align(args) -> int:
    from services.tracker.align import align_videos

    try:
        al = align_videos(args.video_a, args.video_b, method=args.method, width=args.width,
                          threshold=args.threshold, stride=args.stride)
    except ValueError as exc:
        print(f"coach align: {exc}", file=sys.stderr)
        return 2
    doc = al.to_json()
    out = {"offset_frames": doc["offset_frames"], "offset_s": doc["offset_s"], "method": doc["method"],
           "confidence": doc["confidence"], "fps_a": doc["fps_a"], "fps_b": doc["fps_b"],
           "overlap_s": doc["overlap_s"], "second_best": doc["second_best"]}
    if doc["details"]:
        out["details"] = doc["details"]
    if args.json:
        print(json.dumps(out, indent=2))
    elif al.offset_s is None:
        print(f"no alignment found ({al.method}): the signals do not overlap or do not vary")
    else:
        print(f"B is offset by {al.offset_s:+.3f} s = {al.offset_frames:+.2f} frames of B ({al.fps_b:g} fps): "
              f"frame i of A ~ frame i*{al.fps_b:g}/{al.fps_a:g} {al.offset_frames:+.2f} of B; "
              f"method {al.method}, confidence {al.confidence:.2f}, overlap {al.overlap_s:.1f} s")
    return 0 if al.offset_s is not None else 1


def register(sub) -> None:
    al = sub.add_parser("align", help="time offset between two videos of one performance (optical-flow motion or presence)")
    al.add_argument("video_a")
    al.add_argument("video_b")
    al.add_argument("--method", choices=("motion", "presence"), default="motion",
                    help="motion: dense optical flow energy cross-correlated (default); presence: person detection score thresholded")
    al.add_argument("--json", action="store_true")
    al.add_argument("--width", type=int, default=160, help="frames are downscaled to this width for optical flow (default 160)")
    al.add_argument("--threshold", type=float, default=0.75, help="presence: detection score threshold (default 0.75)")
    al.add_argument("--stride", type=int, default=1, help="presence: run the detector on every n-th frame (default 1)")
    al.set_defaults(fn=cmd_align)
