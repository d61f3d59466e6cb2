"""Evaluation of the class-agnostic repetition counter (shared/periodic.py) on real data.

    python -m services.judge.lab.eval_reps [--json] [--no-videos] [--csv FILE]

1. Real landmarks, Exercise-Correction squat_stage_train.csv (real MediaPipe frames of squat
   videos, labelled up / down). The rows are cut into continuous stretches where any landmark jumps
   more than `MAX_STEP` torso lengths between consecutive rows (a squat at 30 fps moves a joint
   ~0.05 torso lengths per frame; a cut between videos or an edited-out part moves it much more).
   Truth per stretch = the number of complete 'down' runs (up -> down ... down -> up) inside it.
2. Semi-synthetic clips built from those real landmarks: a real standing ('up') stretch supplies
   the pose and its real frame-to-frame jitter, the mean offset to the adjacent real 'down' run
   supplies the squat's direction in pose space, and a synthetic timing (N cycles, period varying
   1.2-3.5 s from repetition to repetition, pauses at the top, 0-3 gaps of 0.1-0.5 s without a
   pose) drives it; 3 random seeds. Truth = N.
3. Real videos (BlazePose on whole frames through `coach reps VIDEO --json`, run as its own
   process so that this judge-side module does not import the pose service):
   vtest.avi (pedestrians: 0 expected) and sports2d-demo.mp4 (warm-up, then a flip).

Metrics: counting MAE = mean |pred - true| / true (over clips with true > 0), off-by-one accuracy
(OBOA) = share of clips with |pred - true| <= 1, and the absolute error where true = 0.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from services.judge.datasets import REPO_ROOT, exercise_correction_dir
from shared.periodic import count_repetitions
from shared.skeleton import LANDMARK_INDEX, NUM_LANDMARKS

SQUAT_CSV = exercise_correction_dir() / "squat_stage_train.csv"
VIDEOS = {"vtest.avi": Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi"),
          "sports2d-demo.mp4": REPO_ROOT / ".media" / "sports2d-demo.mp4"}   # scripts/setup.sh installs it
FPS = 30.0        # the CSV has no frame rate; its videos are phone clips
FRAME_PX = 1000.0  # normalised x, y -> pixels of a square frame (the counter is scale-invariant)
MAX_STEP = 0.3     # torso lengths a landmark may move between consecutive rows of one stretch
MIN_ROWS = 30      # stretches shorter than 1 s are not clips


def load_landmark_csv(path: Path = SQUAT_CSV) -> tuple[np.ndarray, np.ndarray]:
    """Exercise-Correction CSV -> (kps [N,33,3] x_px, y_px, visibility, NaN for the absent landmarks; labels [N] str)."""
    with path.open() as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    vals = np.array([[float(v) for v in r[1:]] for r in body])  # [N, 4 * L]
    kps = np.full((len(body), NUM_LANDMARKS, 3), np.nan)
    for j, col in enumerate(head[1:]):
        if col.endswith("_x"):
            i = LANDMARK_INDEX[col[:-2]]
            kps[:, i, 0], kps[:, i, 1], kps[:, i, 2] = FRAME_PX * vals[:, j], FRAME_PX * vals[:, j + 1], vals[:, j + 3]
    return kps, np.array([r[0] for r in body])


def _root_torso(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i = LANDMARK_INDEX
    root = (kps[:, i["left_hip"], :2] + kps[:, i["right_hip"], :2]) / 2  # [N,2]
    sh = (kps[:, i["left_shoulder"], :2] + kps[:, i["right_shoulder"], :2]) / 2
    return root, np.linalg.norm(sh - root, axis=1)  # [N,2], [N]


def continuous_stretches(kps: np.ndarray, max_step: float = MAX_STEP) -> list[tuple[int, int]]:
    """[a, b) row ranges with no landmark moving more than max_step torso lengths between rows."""
    _, torso = _root_torso(kps)
    step = np.nanmax(np.linalg.norm(np.diff(kps[..., :2], axis=0), axis=2), axis=1) / torso[1:]  # [N-1]
    cuts = np.r_[0, np.nonzero(step > max_step)[0] + 1, len(kps)]
    return [(int(a), int(b)) for a, b in zip(cuts, cuts[1:])]


def label_truth(labels: np.ndarray) -> int:
    """Complete 'down' runs (entered from 'up' and left to 'up') in one stretch's labels."""
    runs = [lab for k, lab in enumerate(labels) if k == 0 or labels[k - 1] != lab]  # run labels in order
    return sum(1 for k in range(1, len(runs) - 1) if runs[k] == "down" and runs[k - 1] == runs[k + 1] == "up")


def _runs(labels: np.ndarray) -> list[tuple[int, int, str]]:
    cuts = np.r_[0, np.nonzero(labels[1:] != labels[:-1])[0] + 1, len(labels)]
    return [(int(a), int(b), str(labels[a])) for a, b in zip(cuts, cuts[1:])]


def semi_synthetic_clips(kps: np.ndarray, labels: np.ndarray, seed: int = 0, depth_scale: float = 1.0) -> list[tuple[np.ndarray, int]]:
    """One clip per 'down' run with an adjacent 'up' run of the same person -> [(kps [T,33,3], true count)].
    depth_scale < 1 stops that fraction of the way to the real bottom pose (shallower squats)."""
    rng = np.random.default_rng(seed)
    root, torso = _root_torso(kps)
    runs, clips = _runs(labels), []
    for k, (a, b, lab) in enumerate(runs):
        if lab != "down":
            continue
        ups = [runs[m] for m in (k - 1, k + 1) if 0 <= m < len(runs) and runs[m][2] == "up"]
        # the same person: the adjacent up run's hips within one torso length horizontally
        ups = [u for u in ups if abs(np.median(root[u[0]:u[1], 0]) - np.median(root[a:b, 0])) < np.median(torso[u[0]:u[1]])]
        if not ups:
            continue
        ua, ub, _ = ups[0]
        # the longest continuous stretch of the up run: real standing pose with its real jitter, [S,33,3]
        sa, sb = max(continuous_stretches(kps[ua:ub]), key=lambda r: r[1] - r[0])
        stand = kps[ua + sa:ua + sb]
        delta = np.median(kps[a:b, :, :2], axis=0) - np.median(stand[:, :, :2], axis=0)  # [33,2] squat direction
        n = int(rng.integers(2, 11))
        depth = [np.zeros(int(rng.uniform(0.5, 1.5) * FPS))]  # [T] 0 = standing, 1 = bottom
        for _ in range(n):
            period = rng.uniform(1.2, 3.5)
            t = np.arange(int(period * FPS)) / FPS
            depth += [(1 - np.cos(2 * np.pi * t / period)) / 2, np.zeros(int(rng.uniform(0.0, 1.0) * FPS))]
        depth = np.concatenate(depth + [np.zeros(int(0.5 * FPS))])
        # replay the real standing frames in chunks of 0.5-2 s, turning at random and at the ends (no
        # jump, and no period of its own that a counter could find), [T,33,3]
        idx, i, step = [], int(rng.integers(len(stand))), 1
        while len(idx) < len(depth):
            for _ in range(int(rng.uniform(0.5, 2.0) * FPS)):
                if not 0 <= i + step < len(stand):
                    step = -step
                i = min(max(i + step, 0), len(stand) - 1)
                idx.append(i)
            step = -step if rng.random() < 0.5 else step
        clip = stand[np.array(idx[:len(depth)])].copy()
        clip[:, :, :2] += depth_scale * depth[:, None, None] * delta
        for _ in range(int(rng.integers(0, 4))):  # 0-3 stretches of 0.1-0.5 s without a pose
            g = int(rng.integers(len(clip)))
            clip[g:g + int(rng.uniform(0.1, 0.5) * FPS)] = np.nan
        clips.append((clip, n))
    return clips


def _metrics(pred: list[int], true: list[int]) -> dict:
    p, t = np.array(pred), np.array(true)
    pos = t > 0
    return {"clips": len(t),
            "mae": None if not pos.any() else round(float(np.mean(np.abs(p[pos] - t[pos]) / t[pos])), 4),
            "oboa": round(float(np.mean(np.abs(p - t) <= 1)), 4) if len(t) else None,
            "exact": round(float(np.mean(p == t)), 4) if len(t) else None,
            "abs_error_where_true_0": None if pos.all() else round(float(np.mean(np.abs(p[~pos]))), 4)}


def evaluate_csv(path: Path = SQUAT_CSV, seeds: int = 3) -> dict:
    kps, labels = load_landmark_csv(path)
    t0 = time.perf_counter()
    stretches = [(a, b) for a, b in continuous_stretches(kps) if b - a >= MIN_ROWS]
    real_true = [label_truth(labels[a:b]) for a, b in stretches]
    real_pred = [count_repetitions(kps[a:b], FPS).count for a, b in stretches]
    mixed = sum(1 for a, b in continuous_stretches(kps) if len(set(labels[a:b])) > 1)
    clips = [c for seed in range(seeds) for c in semi_synthetic_clips(kps, labels, seed)]
    semi_pred = [count_repetitions(c, FPS).count for c, _ in clips]
    semi_true = [n for _, n in clips]
    return {
        "csv": str(path), "rows": len(kps), "fps_assumed": FPS,
        "real_stretches": {"rule": f"cut where a landmark moves > {MAX_STEP} torso lengths between rows; >= {MIN_ROWS} rows kept",
                           "all_stretches": len(continuous_stretches(kps)),
                           "stretches_with_both_labels": mixed,
                           "kept": len(stretches), "rows_kept": int(sum(b - a for a, b in stretches)),
                           "true_counts": dict(zip(*map(lambda x: x.tolist(), np.unique(real_true, return_counts=True)))),
                           "pred_counts": dict(zip(*map(lambda x: x.tolist(), np.unique(real_pred, return_counts=True)))),
                           **_metrics(real_pred, real_true)},
        "semi_synthetic": {"seeds": seeds, "clips": len(clips), "true_total": int(sum(semi_true)), **_metrics(semi_pred, semi_true),
                           "errors": [{"true": t, "pred": p} for p, t in zip(semi_pred, semi_true) if p != t]},
        "semi_synthetic_shallower": {str(sc): _metrics(*zip(*[(count_repetitions(c, FPS).count, n) for seed in range(seeds)
                                                              for c, n in semi_synthetic_clips(kps, labels, seed, sc)]))
                                     for sc in (0.5, 0.25)},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def evaluate_videos() -> dict:
    out = {}
    for name, path in VIDEOS.items():
        if not path.exists():
            out[name] = {"error": "missing"}
            continue
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "coach.cli", "reps", str(path), "--json"],
                           capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3])
        out[name] = json.loads(p.stdout) if p.returncode == 0 else {"error": p.stderr.strip()[-500:]}
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def doc_block(rep: dict) -> str:
    """The figures as the markdown table between <!-- periodic:start --> and <!-- periodic:end --> in docs/judge.md."""
    c = rep["squat_csv"]
    r, s = c["real_stretches"], c["semi_synthetic"]

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    lines = ["| data | real? | clips | truth | MAE | OBOA | exact |", "|---|---|---|---|---|---|---|",
             f"| squat CSV, continuous stretches >= 1 s ({r['rows_kept']} rows) | real landmarks | {r['kept']} | 0 each (labels) | "
             f"- (truth 0; mean abs. error {f(r['abs_error_where_true_0'])}) | {f(r['oboa'])} | {f(r['exact'])} |",
             f"| squat CSV poses, synthetic timing, full depth | semi-synthetic | {s['clips']} | {s['true_total']} reps | "
             f"{f(s['mae'])} | {f(s['oboa'])} | {f(s['exact'])} |"]
    for sc, m in c["semi_synthetic_shallower"].items():
        lines.append(f"| same, {sc} x depth | semi-synthetic | {m['clips']} | as above | {f(m['mae'])} | {f(m['oboa'])} | {f(m['exact'])} |")
    if rep.get("videos"):
        lines += ["", "| real video (BlazePose, whole frames) | count | repetitions | finding | wall time incl. decoding |",
                  "|---|---|---|---|---|"]
    for name, v in rep.get("videos", {}).items():
        reps = ", ".join(f"{x['start_s']:.1f}-{x['end_s']:.1f} s" for x in v.get("reps", [])) or "-"
        lines.append(f"| {name} | {v.get('count')} | {reps} | {v.get('finding', v.get('error'))} | {v.get('seconds')} s |")
    lines.append(f"\nCSV part: {c['seconds']} s. Regenerate: `python -m services.judge.lab.eval_reps --doc docs/judge.md`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.judge.lab.eval_reps", description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=SQUAT_CSV)
    ap.add_argument("--no-videos", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--doc", type=Path, default=None, help="rewrite the figures block of this markdown file (docs/judge.md)")
    args = ap.parse_args(argv)
    rep = {"squat_csv": evaluate_csv(args.csv)}
    if not args.no_videos:
        rep["videos"] = evaluate_videos()
    if args.doc:
        text = args.doc.read_text()
        a, b = text.index("<!-- periodic:start -->"), text.index("<!-- periodic:end -->")
        args.doc.write_text(text[:a] + "<!-- periodic:start -->\n" + doc_block(rep) + "\n" + text[b:])
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    r, s = rep["squat_csv"]["real_stretches"], rep["squat_csv"]["semi_synthetic"]
    print(f"real CSV stretches: {r['kept']} kept of {r['all_stretches']} ({r['stretches_with_both_labels']} hold both labels); "
          f"true {r['true_counts']} pred {r['pred_counts']}; OBOA {r['oboa']}")
    print(f"semi-synthetic (real poses, synthetic timing): {s['clips']} clips, MAE {s['mae']}, OBOA {s['oboa']}, exact {s['exact']}")
    for sc, m in rep["squat_csv"]["semi_synthetic_shallower"].items():
        print(f"  depth x{sc}: MAE {m['mae']}, OBOA {m['oboa']}, exact {m['exact']}")
    for name, v in rep.get("videos", {}).items():
        print(f"{name}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
