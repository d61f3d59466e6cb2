"""Speed of the tracker on a video: `python -m services.tracker.lab.bench VIDEO [--frames N] [--tracker stream|legacy|mot|mot-alone] [--verify-skip N]`.

Prints JSON: frames, fps_detect_first (whole-image detections per second on the first
frame: tiles included), fps_track (frames per second through the tracker, first-frame
detection and the selection window included), s_per_frame, detector_passes (model passes in
all: the budget) and, for legacy, fps_track_steady (after the selection). stream (the worker's
default, `COACH_TRACKER=mot`): the provisional single-target tracker + the multi-person tracker in
its thread (+ the second read where the chosen athlete is not the provisional one); mot: the
multi-person tracker + the single-target refinement of the athlete (a second read of the
frames, included), not streaming; mot-alone: without the refinement.

CPU time (`time.process_time()`, this process only: wall time means little on a machine
shared with other jobs): `cpu_ms_per_frame` through the tracker, and `cpu_ms_per_frame_parts`,
the same split by part (exclusive: a part's time excludes the parts it calls; `rest` is the
tracker's own Python: Kalman, gating, bookkeeping), measured by wrapping each part's entry
points for the run (`--no-parts` turns it off: the wrappers cost ~1 us a call). With `stream`
the parts are each thread's CPU time (`time.thread_time`), summed over both threads.
Pin it to one core with `taskset -c 0` to measure the one-core figure.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import threading
import time

import cv2

from ..athlete import AthleteTracker
from ..config import TrackerConfig
from ..detector import PersonDetector

# part -> (module, class, methods): the entry points of each part of the single-target tracker.
PARTS = {
    "detector_whole_image": ("detector", "PersonDetector", ("detect",)),
    "detector_window": ("detector", "PersonDetector", ("detect_in_region",)),
    "local_tracker": ("local_tracker", "LocalTracker", ("init", "update")),
    "verifier_features": ("verifier", "Verifier", ("features",)),
    "verifier_fit": ("verifier", "Verifier", ("fit",)),
    "verifier_search": ("verifier", "Verifier", ("search",)),
    "background": ("background", "ForegroundModel", ("apply", "share")),
    "other_people": ("people", "TemplateTracker", ("__init__", "update")),
    "appearance": ("appearance", "AppearanceModel", ("__init__", "similarity", "update")),
}


class PartClock:
    """Exclusive CPU time per part: nested calls of other parts are charged to them."""

    def __init__(self, clock=time.process_time):
        self.cpu = collections.Counter()
        self.calls = collections.Counter()
        self.clock = clock                    # time.thread_time where several threads track
        self._local = threading.local()       # per thread: [[part, start, time spent in nested parts]]
        self._lock = threading.Lock()

    def wrap(self, part: str, fn):
        @functools.wraps(fn)
        def timed(*a, **k):
            stack = self._local.__dict__.setdefault("stack", [])
            entry = [part, self.clock(), 0.0]
            stack.append(entry)
            try:
                return fn(*a, **k)
            finally:
                stack.pop()
                spent = self.clock() - entry[1]
                with self._lock:
                    self.cpu[part] += spent - entry[2]
                    self.calls[part] += 1
                if stack:
                    stack[-1][2] += spent
        return timed

    @contextlib.contextmanager
    def installed(self):
        import importlib

        saved = []
        for part, (mod, cls, methods) in PARTS.items():
            klass = getattr(importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.{mod}"), cls)
            for m in methods:
                orig = klass.__dict__[m]
                saved.append((klass, m, orig))
                inner = orig.__func__ if isinstance(orig, (staticmethod, classmethod)) else orig
                w = self.wrap(part, inner)
                setattr(klass, m, type(orig)(w) if isinstance(orig, (staticmethod, classmethod)) else w)
        try:
            yield self
        finally:
            for klass, m, orig in saved:
                setattr(klass, m, orig)

    def per_frame_ms(self, total_cpu: float, frames: int) -> dict:
        out = {p: round(1000 * self.cpu[p] / frames, 2) for p in PARTS}
        out["rest"] = round(1000 * (total_cpu - sum(self.cpu.values())) / frames, 2)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=300, help="at most this many frames")
    ap.add_argument("--local-tracker", default=TrackerConfig.local_tracker, choices=("kcf", "csrt"))
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (the detector uses 1)")
    ap.add_argument("--tracker", default="stream", choices=("stream", "legacy", "mot", "mot-alone"),
                    help="stream: what the worker runs by default (COACH_TRACKER=mot); legacy: COACH_TRACKER=legacy")
    ap.add_argument("--no-parts", action="store_true", help="no per-part CPU times (no wrappers)")
    ap.add_argument("--verify-skip", type=int, default=TrackerConfig.verify_skip_max,
                    help="TrackerConfig.verify_skip_max (periodic verifications skipped in a row while KCF and the verifier agree)")
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

    cfg = TrackerConfig(local_tracker=args.local_tracker, verify_skip_max=args.verify_skip)
    fps = cv2.VideoCapture(args.video).get(cv2.CAP_PROP_FPS) or 25.0
    detectors = [detector]          # + the multi-person thread's, with `stream`
    if args.tracker == "legacy":
        tracker = AthleteTracker(cfg, detector=detector)
    elif args.tracker == "stream":
        from ..mot import StreamingAthleteTracker
        everyone = PersonDetector()
        everyone.detect(frames[0])
        detectors.append(everyone)
        tracker = StreamingAthleteTracker(lambda: iter(frames), detector, everyone, fps=fps, legacy_config=cfg)
    else:
        from ..mot import MotAthleteTracker
        tracker = MotAthleteTracker(detector=detector, fps=fps, reread=lambda: iter(frames),
                                    refine=args.tracker == "mot", legacy_config=cfg)
    clock = PartClock(time.thread_time if args.tracker == "stream" else time.process_time)
    passes0 = sum(d.passes for d in detectors)
    out, t_first = [], None
    with contextlib.nullcontext() if args.no_parts else clock.installed():
        t0, c0 = time.perf_counter(), time.process_time()
        for f in frames:
            out += tracker.push(f)
            if t_first is None and tracker.choice is not None:
                t_first, n_first = time.perf_counter(), len(out)
        out += tracker.finish()
        t1, c1 = time.perf_counter(), time.process_time()
    steady = (len(out) - n_first) / (t1 - t_first) if t_first is not None and len(out) > n_first else None
    print(json.dumps({
        "frames": len(frames),
        "frame_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "tracker": args.tracker,
        "local_tracker": args.local_tracker,
        "fps_detect_first": round(fps_detect, 2),
        "fps_track": round(len(frames) / (t1 - t0), 1),
        "s_per_frame": round((t1 - t0) / len(frames), 4),
        "cpu_ms_per_frame": round(1000 * (c1 - c0) / len(frames), 2),
        "fps_cpu": round(len(frames) / (c1 - c0), 1),
        "cpu_ms_per_frame_parts": None if args.no_parts else clock.per_frame_ms(c1 - c0, len(frames)),
        "calls": None if args.no_parts else dict(clock.calls),
        "detector_passes": sum(d.passes for d in detectors) - passes0,
        "fps_track_steady": None if steady is None or args.tracker != "legacy" else round(steady, 1),
        "states": dict(collections.Counter(ft.state for ft in out)),
        "choice": tracker.choice.reason if tracker.choice else None,
        **({"kept_provisional": tracker.kept_provisional} if args.tracker == "stream" else {}),
    }))


if __name__ == "__main__":
    main()
