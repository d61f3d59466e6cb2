"""`coach align VIDEO_A VIDEO_B`: time offset between two cameras filming one performance.

    coach align A.mp4 B.mp4 --json          -> {"offset_frames", "offset_s", "method", "confidence", ...}
    coach align A.mp4 B.mp4 --method presence [--threshold 0.75] [--stride 2]

Frame i of A shows the same moment as frame i + offset_frames of B (equal frame rates; in
general frame i * fps_B / fps_A + offset_frames), i.e. t_B = t_A + offset_s. Pure local
computation (services/tracker/align.py), no stack needed.

`coach tracker ...`: measure the athlete tracker like a long-term tracker.

  coach tracker eval [--split test|tune|all] [--cases a,b] [--trackers plain,full,mot] [--json]
      VOT-LT precision / recall / F-score of the athlete's track, identity switches per sequence,
      on the built evaluation set (services/tracker/evalset.py, rendered on the fly), per case and
      overall, and frames per second: plain (local tracker only), full (single-target tracker:
      + verification + re-detection), mot (multi-person tracker + refinement of the athlete) and
      mot_alone (its athlete track before refinement), with MOTA / IDF1 over all people.
  coach tracker evalset --out DIR [--split ...] [--cases ...]
      write the evaluation sequences as MP4 with their ground truth drawn (eyeballing), plus
      ground_truth.json (per sequence, per frame: the target's box or null).

"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TRACKER_DOC = __doc__[__doc__.index("`coach tracker ...`"):]


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


def _cases(arg: str | None) -> tuple[str, ...] | None:
    from .evalset import CASES

    if not arg:
        return None
    cases = tuple(c.strip() for c in arg.split(",") if c.strip())
    bad = [c for c in cases if c not in CASES]
    if bad:
        raise SystemExit(f"coach tracker: unknown case(s) {', '.join(bad)}; cases: {', '.join(CASES)}")
    return cases


def cmd_eval(args) -> int:
    import cv2

    from .evaluation import evaluate
    from .tracking import TrackerConfig

    cv2.setNumThreads(args.threads)
    cases = _cases(args.cases)

    trackers = tuple(t.strip() for t in args.trackers.split(",") if t.strip())

    def progress(row: dict) -> None:
        if not args.quiet:
            scores = "  ".join(f"{m} F {row[m]['f_score']:.3f}" for m in trackers + ("mot_alone",) if m in row)
            print(f"  {row['sequence']:<16} {scores}  ({row['frames']} frames, target absent in {row['absent_frames']})",
                  file=sys.stderr, flush=True)

    started = time.perf_counter()
    out = evaluate(args.split, cases, TrackerConfig(local_tracker=args.local_tracker), progress=progress,
                   trackers=trackers)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["machine"] = {"cpus": os.cpu_count(), "load_1min_after": round(os.getloadavg()[0], 2),
                      "opencv_threads": args.threads, "local_tracker": args.local_tracker}
    if not args.per_sequence:
        out.pop("per_sequence")
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    modes = [m for m in ("plain", "full", "mot", "mot_alone") if m in out]
    print(f"split {out['split']}: {out['sequences']} sequences, {out['frames']} frames "
          f"(fps: {out['fps']}; {out['machine']['cpus']} CPUs, load {out['machine']['load_1min_after']})")
    print(f"{'':<14}" + "".join(f"{m + ' P':>12}{'R':>7}{'F':>7}" for m in modes))
    rows = [("all", [out[m] for m in modes])]
    if "hard" in out:
        rows.append(("hard cases", [out["hard"][m] for m in modes]))
    rows += [(c, [v[m] for m in modes]) for c, v in out["cases"].items()]
    for name, vals in rows:
        print(f"{name:<14}" + "".join(f"{v['precision']:>12.3f}{v['recall']:>7.3f}{v['f_score']:>7.3f}" for v in vals))
    print("identity switches per sequence: " + ", ".join(f"{m} {out[m]['id_switches_per_sequence']}" for m in modes))
    if "all_people" in out.get("mot", {}):
        print(f"all people (mot): {out['mot']['all_people']}")
    return 0


def cmd_evalset(args) -> int:
    from . import evalset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = _cases(args.cases) or evalset.CASES
    sprites = evalset.load_sprites()
    seeds = evalset.SPLITS["tune"] + evalset.SPLITS["test"] if args.split == "all" else evalset.SPLITS[args.split]
    truth = {}
    for case in cases:
        for seed in seeds:
            seq = evalset.make_sequence(case, seed, sprites)
            evalset.write_preview(seq, str(out / f"{seq.name}.mp4"))
            truth[seq.name] = {"case": case, "seed": seed, "split": seq.split, "size": list(seq.size),
                               "athlete": seq.actors[0].sprite,
                               "boxes": [None if b is None else [float(v) for v in b] for b in seq.ground_truth()]}
            print(out / f"{seq.name}.mp4")
    (out / "ground_truth.json").write_text(json.dumps(truth))
    return 0


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

    tr = sub.add_parser("tracker", help="evaluate the athlete tracker (VOT-LT precision/recall/F-score)",
                        description=TRACKER_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = tr.add_subparsers(dest="tracker_cmd", required=True)

    ev = sub.add_parser("eval", help="plain vs full tracker on the built evaluation set")
    ev.add_argument("--split", default="test", choices=("test", "tune", "all"),
                    help="test: the held-out seeds (default); tune: the seeds used for tuning")
    ev.add_argument("--cases", help="comma-separated subset of the cases (default: all)")
    ev.add_argument("--local-tracker", default="kcf", choices=("kcf", "csrt"))
    ev.add_argument("--trackers", default="plain,full,mot",
                    help="comma-separated: plain (local tracker alone), full (single-target tracker), mot "
                         "(multi-person tracker + refinement; mot_alone, without it, comes with it)")
    ev.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: the one-core figure)")
    ev.add_argument("--per-sequence", action="store_true", help="also list every sequence")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--quiet", action="store_true", help="no per-sequence progress on stderr")
    ev.set_defaults(fn=cmd_eval)

    es = sub.add_parser("evalset", help="write the evaluation sequences as MP4 with their ground truth")
    es.add_argument("--out", required=True)
    es.add_argument("--split", default="test", choices=("test", "tune", "all"))
    es.add_argument("--cases")
    es.set_defaults(fn=cmd_evalset)
