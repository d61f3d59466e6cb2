"""Speed of the tracker on a video: `python -m services.tracker.lab.bench VIDEO [--frames N] [--tracker legacy|mot|mot-alone]`.

Prints JSON: frames, fps_detect_first (whole-image detections per second on the first
frame: tiles included), fps_track (frames per second through the tracker, first-frame
detection and the selection window included), s_per_frame, detector_passes (model passes in
all: the budget) and, for legacy, fps_track_steady (after the selection). mot: the
multi-person tracker + the single-target refinement of the athlete (a second read of the
frames, included); mot-alone: without it.
Pin it to one core with `taskset -c 0` to measure the one-core figure.
"""
from __future__ import annotations

import argparse
import collections
import json
import time

import cv2

from ..athlete import AthleteTracker
from ..config import TrackerConfig
from ..detector import PersonDetector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=300, help="at most this many frames")
    ap.add_argument("--local-tracker", default=TrackerConfig.local_tracker, choices=("kcf", "csrt"))
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (the detector uses 1)")
    ap.add_argument("--tracker", default="legacy", choices=("legacy", "mot", "mot-alone"))
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)

    cap = cv2.VideoCapture(args.video)
    frames = []
    while len(frames) < args.frames:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    if not frames:
        raise SystemExit(f"cannot read frames from {args.video}")

    detector = PersonDetector()
    detector.detect(frames[0])                      # warm-up (interpreter allocation, caches)
    t = time.perf_counter()
    reps = 3
    for _ in range(reps):
        detector.detect(frames[0])
    fps_detect = reps / (time.perf_counter() - t)

    cfg = TrackerConfig(local_tracker=args.local_tracker)
    fps = cv2.VideoCapture(args.video).get(cv2.CAP_PROP_FPS) or 25.0
    if args.tracker == "legacy":
        tracker = AthleteTracker(cfg, detector=detector)
    else:
        from ..mot import MotAthleteTracker
        tracker = MotAthleteTracker(detector=detector, fps=fps, reread=lambda: iter(frames),
                                    refine=args.tracker == "mot", legacy_config=cfg)
    passes0 = detector.passes
    out, t_first = [], None
    t0 = time.perf_counter()
    for f in frames:
        out += tracker.push(f)
        if t_first is None and tracker.choice is not None:
            t_first, n_first = time.perf_counter(), len(out)
    out += tracker.finish()
    t1 = time.perf_counter()
    steady = (len(out) - n_first) / (t1 - t_first) if t_first is not None and len(out) > n_first else None
    print(json.dumps({
        "frames": len(frames),
        "frame_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "tracker": args.tracker,
        "local_tracker": args.local_tracker,
        "fps_detect_first": round(fps_detect, 2),
        "fps_track": round(len(frames) / (t1 - t0), 1),
        "s_per_frame": round((t1 - t0) / len(frames), 4),
        "detector_passes": detector.passes - passes0,
        "fps_track_steady": None if steady is None or args.tracker != "legacy" else round(steady, 1),
        "states": dict(collections.Counter(ft.state for ft in out)),
        "choice": tracker.choice.reason if tracker.choice else None,
    }))


if __name__ == "__main__":
    main()
