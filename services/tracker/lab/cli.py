"""`coach tracker ...`: measure the athlete tracker like a long-term tracker.

  coach tracker eval [--split test|tune|disjoint|all] [--cases a,b] [--trackers plain,full,mot] [--json]
      VOT-LT precision / recall / F-score of the athlete's track, identity switches per sequence,
      on the built evaluation set (services/tracker/lab/evalset.py, rendered on the fly), per case and
      overall, and frames per second: plain (local tracker only), full (single-target tracker:
      + verification + re-detection), mot (multi-person tracker + refinement of the athlete) and
      mot_alone (its athlete track before refinement), with MOTA / IDF1 over all people.
  coach tracker eval --choice [--split test|tune|disjoint] [--policies most_active,largest,first_seen] [--json]
      the athlete CHOICE: every sequence starts with no box, as the worker runs it without a
      target_bbox; per tracker (stream = the worker's default, COACH_TRACKER=mot, most_active;
      legacy = COACH_TRACKER=legacy; mot/<policy> = the multi-person tracker with that
      COACH_ATHLETE_POLICY, not streaming): choice accuracy, time-to-lock, F-score, how often the choice was close
      (services/tracker/lab/choice_eval.py). --split disjoint: people and scenes never in the tuning part.
  --cases exerciser (either command): the case not in the default six, a real person warming up
      (jumping jacks, arm and leg swings; the Sports2D clip, lab/exerciser.py) among 3-6 walkers.
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

TRACKER_DOC = __doc__


def _cases(arg: str | None) -> tuple[str, ...] | None:
    from .evalset import ALL_CASES

    if not arg:
        return None
    cases = tuple(c.strip() for c in arg.split(",") if c.strip())
    bad = [c for c in cases if c not in ALL_CASES]
    if bad:
        raise SystemExit(f"coach tracker: unknown case(s) {', '.join(bad)}; cases: {', '.join(ALL_CASES)}")
    return cases


def cmd_choice(args) -> int:
    import cv2

    from .choice_eval import POLICIES, evaluate_choice

    cv2.setNumThreads(args.threads)
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        raise SystemExit(f"coach tracker: unknown policy {', '.join(bad)}; policies: {', '.join(POLICIES)}")
    trackers = tuple(t.strip() for t in args.trackers.split(",") if t.strip())

    def progress(row: dict) -> None:
        if not args.quiet:
            picks = "  ".join(f"{m} {'ok' if r['correct'] else 'WRONG'} F {r['f_score']:.3f}"
                              for m, r in row.items() if isinstance(r, dict) and "correct" in r)
            print(f"  {row['sequence']:<16} {picks}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    # --trackers: "stream" the worker's default, "full" (or "legacy") the single-target tracker, "mot" the policies, "box" the
    # trackers started from the ground-truth box (reference)
    if args.from_tracks:
        from .choice_eval import score_saved
        out = score_saved(args.from_tracks.split(","), policies)
    else:
        out = evaluate_choice(args.split, _cases(args.cases), policies if "mot" in trackers else (),
                              legacy="legacy" in trackers or "full" in trackers, progress=progress,
                              save_dir=args.save_tracks, from_box="box" in trackers, stream="stream" in trackers,
                              seeds=tuple(int(x) for x in args.seeds.split(",")) if args.seeds else None)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["machine"] = {"cpus": os.cpu_count(), "load_1min_after": round(os.getloadavg()[0], 2),
                      "opencv_threads": args.threads}
    if not args.per_sequence:
        out.pop("per_sequence")
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(choice_table(out))
    return 0


def choice_table(out: dict) -> str:
    """The `coach tracker eval --choice` document as a table (what a person reads)."""
    modes = [m for m in out if m.startswith(("legacy", "mot/"))]
    lines = [f"split {out['split']}: {out['sequences']} sequences, {out['frames']} frames; the athlete chosen "
             f"from detection (no box); athlete = {out['athlete']}",
             f"{'':<18}{'accuracy':>9}{'picked':>8}{'delivered':>10}{'reachable':>10}{'close':>7}{'close+wrong':>12}{'locked':>8}"
             f"{'lock s (median)':>16}{'F':>7}{'switches':>9}"]

    def cell(v, fmt):
        return "-" if v is None else format(v, fmt)
    for m in modes:
        r = out[m]
        lines.append(f"{m:<18}{r['accuracy']:>9.3f}{cell(r.get('picked'), '.3f'):>8}{cell(r.get('delivered_accuracy'), '.3f'):>10}{cell(r.get('reachable'), '.3f'):>10}{cell(r.get('close'), '.3f'):>7}"
                     f"{cell(r.get('close_and_wrong'), 'd'):>12}{r['locked']:>8.3f}{cell(r['lock_s_median'], '.1f'):>16}"
                     f"{r['f_score']:>7.3f}{r['id_switches_per_sequence']:>9.2f}")
    if out.get("on_truth"):
        lines.append("policy on the ground-truth tracks (is the athlete distinguishable?): " +
                     ", ".join(f"{p} {v:.3f}" for p, v in out["on_truth"].items()))
    for c, v in out.get("cases", {}).items():
        lines.append(f"  {c:<14}" + "  ".join(f"{m} {v[m]['accuracy']:.2f}" for m in modes) +
                     "  | on truth: " + ", ".join(f"{p} {a:.2f}" for p, a in v.get("on_truth", {}).items()))
    return "\n".join(lines)


def cmd_eval(args) -> int:
    import cv2

    if args.choice:
        return cmd_choice(args)

    from ..config import TrackerConfig
    from .evaluation import evaluate

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
    tr = sub.add_parser("tracker", help="evaluate the athlete tracker (VOT-LT precision/recall/F-score)",
                        description=TRACKER_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = tr.add_subparsers(dest="tracker_cmd", required=True)

    ev = sub.add_parser("eval", help="plain vs full tracker on the built evaluation set")
    ev.add_argument("--split", default="test", choices=("test", "tune", "disjoint", "all"),
                    help="test: the held-out seeds (default); tune: the seeds used for tuning; disjoint: people "
                         "and scenes never in a tuning sequence (all = tune + test)")
    ev.add_argument("--cases", help="comma-separated cases (default: the six of the set; exerciser, an athlete "
                                    "warming up among walkers, only when named)")
    ev.add_argument("--local-tracker", default="kcf", choices=("kcf", "csrt"))
    ev.add_argument("--trackers", default="plain,full,mot",
                    help="comma-separated: plain (local tracker alone), full (single-target tracker), mot "
                         "(multi-person tracker + refinement; mot_alone, without it, comes with it); with --choice: "
                         "stream = the worker's default (COACH_TRACKER=mot, most_active), full (or legacy) = "
                         "COACH_TRACKER=legacy, mot = each policy's (not streaming), box = both trackers "
                         "from the ground-truth box (reference)")
    ev.add_argument("--choice", action="store_true",
                    help="evaluate the athlete choice: no box, the worker's choice (legacy and mot per policy)")
    ev.add_argument("--policies", default="most_active,largest,first_seen",
                    help="--choice: the COACH_ATHLETE_POLICY values for mot (default all three)")
    ev.add_argument("--save-tracks", metavar="DIR",
                    help="--choice: also write every sequence's boxes (pickle) to DIR, to score them offline")
    ev.add_argument("--seeds", help="--choice: comma-separated subset of the split's seeds (default: all)")
    ev.add_argument("--from-tracks", metavar="DIR",
                    help="--choice: score the boxes --save-tracks runs wrote again (no tracking); DIR[,DIR...] merged per sequence")
    ev.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1: the one-core figure)")
    ev.add_argument("--per-sequence", action="store_true", help="also list every sequence")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--quiet", action="store_true", help="no per-sequence progress on stderr")
    ev.set_defaults(fn=cmd_eval)

    es = sub.add_parser("evalset", help="write the evaluation sequences as MP4 with their ground truth")
    es.add_argument("--out", required=True)
    es.add_argument("--split", default="test", choices=("test", "tune", "disjoint", "all"))
    es.add_argument("--cases")
    es.set_defaults(fn=cmd_evalset)
