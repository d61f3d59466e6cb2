"""`coach pose ...`: the STRN refiner's commands (train, evaluate, ablate, time) and pose on one file.

    coach pose train-refiner [--steps 2000] [--out services/pose/weights/strn.pt] [--T 10] [--layers 3] [--heads 2]
                             [--no-spatial | --no-temporal] [--seed 0] [--threads 2] [--minutes CAP]
    coach pose eval [--weights PATH] [--labels full|heavy] [--clip-frames N] [--json]   (--real: on hand-labelled real frames, services/pose/lab/eval_real.py)
    coach pose ablate [--steps 2000] [--labels full|heavy] [--whole-runs] [--out DIR] [--only SLUG ...]
    coach pose tune-smoother [--weights PATH]
    coach pose bench-refiner [--weights PATH] [--fps 30] [--clips 20] [--threads 1 2] [--batch-windows 1 8 64 256] [--json]
    coach pose run INPUT [--json] [--refiner strn|one_euro|none] [--boxes tracker|pose] [--max-frames N] [--pose-model M]
    coach pose bench-models [VIDEO ...] [--max-frames N] [--repeat R] [--json]

`run` and the pose worker use COACH_POSE_MODEL (lite | full | heavy; default full) unless told otherwise.

Data (BlazePose runs on vtest.avi walkers) are built on first use and cached under
$COACH_STRN_CACHE (default ~/.cache/coach/strn): see services/pose/lab/strn_data.py and docs/pose.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

W_ACC, W_VEL = 2.0, 0.0  # temporal loss weights of the shipped recipe (see strn_train.strn_loss, docs/pose.md)


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _config(args):
    from services.pose.strn import StrnConfig

    return StrnConfig(T=args.T, layers=args.layers, heads=args.heads, size=args.size,
                      spatial=not args.no_spatial, temporal=not args.no_temporal)


def _loss_kw(args) -> dict:
    return {"w_acc": args.w_acc, "w_vel": args.w_vel}


def cmd_train(args) -> int:
    from services.pose.lab.strn_train import train_and_save

    _threads(args.threads)
    out = Path(args.out or ("services/pose/weights/strn.pt" if args.labels == "full" else f"out/strn-{args.labels}.pt"))
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = train_and_save(_config(args), out, args.steps, args.minutes, args.seed,
                             Path(args.cache) if args.cache else None, log=_log, labels=args.labels, **_loss_kw(args))
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval(args) -> int:
    if args.real:  # hand-labelled real frames: services/pose/lab/eval_real.py
        from services.pose.lab.eval_real import main
        return main(["--json"] if args.json else [])
    from services.pose.lab.strn_train import evaluate

    _threads(args.threads)
    kw = {"clip_frames": args.clip_frames} if args.clip_frames else {}
    rep = evaluate(args.weights, Path(args.cache) if args.cache else None, labels=args.labels, **kw)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    pr = rep["protocol"]
    print(f"test walkers {', '.join(rep['data']['test_walkers'])}: {rep['data']['test_frames_scored']} frames scored; "
          f"labels: {pr['labels_model']}; clips of {pr['clip_frames']} frames as the worker refines them")
    print(f"{'condition':<12}{'method':<26}{'PCK@0.2':>9}{'accel':>9}{'accel px':>10}")
    keys = ("raw", "one_euro_shipped", "best_filter", "refined", "strn_only", "refined_context", "refined_whole_run")
    for cond, d in [("all", {k: rep[k] for k in keys}),
                    *rep["by_degradation"].items()]:
        for k, m in d.items():
            label = {"best_filter": f"best filter ({rep['best_filter']['name']})",
                     "refined": "refined (shipped)"}.get(k, k)
            print(f"{cond:<12}{label:<26}{100 * m['pck02']:>8.1f}%{m['accel']:>9.4f}{m['accel_px']:>10.2f}")
    print(f"refined = {rep['refined']['pipeline']}; accel refined / raw = {rep['goal']['accel_ratio_refined_to_raw']} "
          f"(pseudo-ground-truth jitter floor {rep['goal']['accel_floor']})")
    print(f"refinement: {rep['speed']['ms_per_frame']} ms/frame on {rep['speed']['device']}")
    return 0


def cmd_tune_smoother(args) -> int:
    from services.pose.strn import WEIGHTS
    from services.pose.lab.strn_train import retune_smoother

    _threads(args.threads)
    sm = retune_smoother(Path(args.weights or WEIGHTS), Path(args.cache) if args.cache else None, args.min_lr_ratio)
    print(json.dumps({k: v for k, v in sm.items() if k != "val_grid"}, indent=2))
    return 0


def cmd_ablate(args) -> int:
    from services.pose.lab.strn_train import ablate, ablation_markdown

    _threads(args.threads)
    out = Path(args.out or ("out/strn-ablations" if args.labels == "full" else f"out/strn-ablations-{args.labels}"))
    res = ablate(_config(args), args.steps, out, args.minutes, Path(args.cache) if args.cache else None,
                 seed=args.seed, log=_log, only=args.only, labels=args.labels,
                 protocol="whole" if args.whole_runs else "clips", **_loss_kw(args))
    md = ablation_markdown(res, _config(args))
    (out / "ablations.md").write_text(md)
    print(md)
    return 0


def cmd_bench(args) -> int:
    """Refinement cost per frame on clips of 32 frames (the pipeline's clip size) of real BlazePose keypoints
    (held-out walkers, laid end to end): clip by clip, and clips of several analyses batched together
    (refine_many) with several window-batch sizes; for every torch thread count asked for."""
    import time

    import numpy as np
    import torch

    from services.pose.strn import StrnRefiner
    from services.pose.lab.strn_train import load_runs

    runs = load_runs("test", Path(args.cache) if args.cache else None)
    kps = np.concatenate([r.kps for r in runs])
    pres = np.concatenate([r.present for r in runs])
    clips = [(kps[i:i + 32], pres[i:i + 32], None) for i in range(0, 32 * args.clips, 32)]
    n = sum(len(c[0]) for c in clips)
    ref = StrnRefiner(freq_hz=args.fps, weights=args.weights, device=args.device, smooth=not args.strn_only)

    def timed(fn) -> dict:
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            if ref.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return {"ms_per_frame": round(1000 * best / n, 3), "fps": round(n / best, 1)}

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        ref.refine_many(clips[:2])  # warm-up
        row = {"torch_threads": threads, "per_clip": timed(lambda: [ref.refine(*c) for c in clips])}
        for bw in args.batch_windows:
            ref.batch_windows = bw
            row[f"batched_{bw}"] = timed(lambda: ref.refine_many(clips))
        ref.batch_windows = 64
        rows.append(row)
    windows = sum(len(ref._windows(len(c[0]))) for c in clips)
    rep = {"device": str(ref.device), "gpu": torch.cuda.get_device_name(0) if ref.device.type == "cuda" else None,
           "cpu_count": __import__("os").cpu_count(), "video_fps": args.fps, "frames": n, "clips": len(clips),
           "windows": windows, "pipeline": "strn only" if args.strn_only else "strn + post-pass",
           "budget_ms_per_frame_at_30fps": 33.3,
           "config": {k: getattr(ref.cfg, k) for k in ("T", "layers", "heads", "size")}, "runs": rows}
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{rep['device']}, {n} frames in {len(clips)} clips of 32 ({windows} windows), video at {args.fps:g} fps")
    for row in rows:
        for k, v in row.items():
            if k != "torch_threads":
                label = "clip by clip" if k == "per_clip" else f"batched, {k.split('_')[1]} windows/pass"
                print(f"threads {row['torch_threads']}  {label:<28}{v['ms_per_frame']:>8.3f} ms/frame {v['fps']:>9.1f} frames/s")
    return 0


def register(sub) -> None:
    pose = sub.add_parser("pose", help="pose refinement (STRN): train-refiner, eval, ablate, bench-refiner, run; BlazePose models: bench-models")
    ps = pose.add_subparsers(dest="pose_cmd", required=True)

    def model_args(p, layers: int, heads: int, steps: int) -> None:
        p.add_argument("--T", type=int, default=10, help="frames per window (default 10)")
        p.add_argument("--layers", type=int, default=layers)
        p.add_argument("--heads", type=int, default=heads)
        p.add_argument("--steps", type=int, default=steps, help=f"training steps of 16 windows (default {steps})")
        p.add_argument("--minutes", type=float, default=60.0, help="time cap per training run: the schedule shrinks "
                       "to fit (default 60)")
        p.add_argument("--size", type=int, default=16, help="heatmap side (default 16)")
        p.add_argument("--no-spatial", action="store_true", help="temporal branch only")
        p.add_argument("--no-temporal", action="store_true", help="spatial branch only")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--w-acc", type=float, default=W_ACC, help=f"weight of the acceleration loss (default {W_ACC})")
        p.add_argument("--w-vel", type=float, default=W_VEL, help=f"weight of the velocity loss (default {W_VEL})")
        p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
        p.add_argument("--cache", default=None, help="data cache dir (default $COACH_STRN_CACHE or ~/.cache/coach/strn)")

    tr = ps.add_parser("train-refiner", help="train the STRN on BlazePose runs of real video (bounded run)")
    model_args(tr, 3, 2, 2000)
    tr.add_argument("--out", default=None, help="default: services/pose/weights/strn.pt for --labels full, "
                                                "out/strn-LABELS.pt otherwise (the shipped weights are not overwritten)")
    tr.add_argument("--labels", default="full", choices=("full", "heavy"),
                    help="pseudo ground truth to learn: BlazePose full (the base model itself) or heavy on the clean frames")
    tr.set_defaults(fn=cmd_train)

    ev = ps.add_parser("eval", help="PCK@0.2 and acceleration error on held-out walkers: raw, best filter, STRN")
    ev.add_argument("--weights", default=None, help="checkpoint (default: the shipped services/pose/weights/strn.pt)")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--real", action="store_true", help="lite/full/heavy on hand-labelled real frames (docs/pose.md)")
    ev.add_argument("--threads", type=int, default=2)
    ev.add_argument("--cache", default=None)
    ev.add_argument("--labels", default="full", choices=("full", "heavy"),
                    help="pseudo ground truth: BlazePose full (the base model itself, default) or heavy on the clean frames")
    ev.add_argument("--clip-frames", type=int, default=None,
                    help="clip length the worker's clips are cut at (default: COACH clip_frames, 32); "
                         "11 = the time span of a 32-frame clip of 30 fps video")
    ev.set_defaults(fn=cmd_eval)

    ab = ps.add_parser("ablate", help="paper tables 6-8: spatial/temporal, T, layers x heads (bounded runs)")
    model_args(ab, 1, 1, 2000)  # the base of tables 6 and 7 (bounded runs on a 2-core CPU)
    ab.add_argument("--out", default=None, help="default: out/strn-ablations (--labels full), "
                                                "out/strn-ablations-LABELS otherwise")
    ab.add_argument("--labels", default="full", choices=("full", "heavy"),
                    help="train targets and scoring labels: BlazePose full (the base model itself) or heavy on the "
                         "clean frames")
    ab.add_argument("--whole-runs", action="store_true",
                    help="the earlier protocol: whole walker runs refined at once (default: the worker's clips, "
                         "with the previous clip as context)")
    ab.add_argument("--only", nargs="*", default=None, help="run slugs to compute (e.g. T10-L3-H2-ST-s16); default all")
    ab.set_defaults(fn=cmd_ablate)

    bn = ps.add_parser("bench-refiner", help="refinement cost per frame (32-frame clips of real keypoints)")
    bn.add_argument("--weights", default=None)
    bn.add_argument("--fps", type=float, default=30.0, help="video frame rate the windows are laid out for")
    bn.add_argument("--clips", type=int, default=20)
    bn.add_argument("--device", default=None)
    bn.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (default 1 2)")
    bn.add_argument("--batch-windows", type=int, nargs="+", default=[1, 8, 64, 256],
                    help="windows per forward pass in batched mode (default 1 8 64 256)")
    bn.add_argument("--repeat", type=int, default=3, help="timed repeats (best kept)")
    bn.add_argument("--strn-only", action="store_true", help="time the network without the post-pass")
    bn.add_argument("--json", action="store_true")
    bn.add_argument("--cache", default=None)
    bn.set_defaults(fn=cmd_bench)

    ts = ps.add_parser("tune-smoother", help="tune the shipped post-pass (Savitzky-Golay after the STRN) on the "
                       "validation walkers and store it in the checkpoint")
    ts.add_argument("--weights", default=None, help="checkpoint (default: the shipped one)")
    ts.add_argument("--min-lr-ratio", type=float, default=0.9, help="settings that pull left/right pairs together "
                    "below this ratio on validation are excluded (default 0.9; 0 = no guard)")
    ts.add_argument("--threads", type=int, default=1)
    ts.add_argument("--cache", default=None)
    ts.set_defaults(fn=cmd_tune_smoother)

    rn = ps.add_parser("run", help="keypoints per frame of an image (raw) or a video (tracked athlete, refined)")
    rn.add_argument("input")
    rn.add_argument("--json", action="store_true")
    rn.add_argument("--refiner", default="one_euro", help="one_euro (default, as the pipeline) | strn | none")
    rn.add_argument("--boxes", choices=("tracker", "pose"), default="tracker",
                    help="crop boxes from the pipeline's tracker (default) or from the whole-frame pose")
    rn.add_argument("--max-frames", type=int, default=None)
    rn.add_argument("--pose-model", default=None, choices=("lite", "full", "heavy"),
                    help="BlazePose landmark model (default: COACH_POSE_MODEL, else full)")
    # handled by lab/pose_run.py (it needs the tracker): coach/cli.py LAB_COMMANDS

    bm = ps.add_parser("bench-models", help="BlazePose lite / full / heavy: ms per frame and frames with a pose, "
                       "on whole frames and on tracked-size crops")
    bm.add_argument("videos", nargs="*", help="default: vtest.avi and .media/sports2d-demo.mp4")
    bm.add_argument("--max-frames", type=int, default=None)
    bm.add_argument("--repeat", type=int, default=1, help="timed runs per model and path, best kept (default 1)")
    bm.add_argument("--boxes", choices=("tracker", "pose"), default="tracker",
                    help="crop boxes from the pipeline's tracker (default) or from full's whole-frame pose")
    bm.add_argument("--json", action="store_true")
    # handled by lab/pose_run.py (it needs the tracker): coach/cli.py LAB_COMMANDS
