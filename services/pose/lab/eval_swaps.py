"""Left/right swap correction (services/pose/swaps.py) on real BlazePose tracks.

    python -m services.pose.lab.eval_swaps [--json]

Tracks: BlazePose (full) on the tracker-free whole frames of Sports2D's demo clip (1768x994,
230 frames) and on crops around the hand-labelled walker of vtest.avi's unit test (frames 20-80).
No human labels say where BlazePose itself swapped, so two figures are reported:

* natural: halves the correction relabels on the real tracks as they are (swaps BlazePose made,
  or false alarms: read them as an upper bound of both);
* injected: the real tracks with known swaps added (each posed frame, with probability 5 %, gets
  its upper, lower or both halves relabelled for 1-3 frames; seeds 5-9, SWAP_COST was chosen on
  seeds 0-4 of the same tracks): recall of the injected
  swaps, precision of what was relabelled, and the swap rate (frames x halves left swapped
  relative to the original track) before and after, counted where a swap shows: the half's left
  and right joints more than 0.25 torso lengths apart (side on, they overlap and a swap is moot).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import cv2
import numpy as np

from services.pose.blazepose import BlazePoseEstimator
from services.pose.swaps import HALVES, fix_swaps, swap_half
from shared.video import read_frames

ROOT = Path(__file__).resolve().parents[3]
SPORTS2D = ROOT / ".media" / "sports2d-demo.mp4"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
# Hand-labelled box (x, y, w, h px) of the man in the navy jacket walking right-to-left in vtest.avi,
# every 10 frames (read off frames written to PNG); linear in between. tests/unit/pose/test_pose_blazepose.py uses it too.
NAVY_KEYS = {20: (687, 270, 37, 105), 30: (630, 250, 36, 100), 40: (569, 230, 35, 100), 50: (505, 215, 37, 95),
             60: (467, 202, 34, 90), 70: (445, 190, 32, 88), 80: (444, 175, 32, 78)}


def navy_box(t: int) -> np.ndarray:
    ks = sorted(NAVY_KEYS)
    a, b = max(k for k in ks if k <= t), min(k for k in ks if k >= t)
    f = 0.0 if a == b else (t - a) / (b - a)
    return (1 - f) * np.array(NAVY_KEYS[a], float) + f * np.array(NAVY_KEYS[b], float)


def real_tracks() -> dict[str, np.ndarray]:
    tracks = {}
    with BlazePoseEstimator() as est:
        cap = cv2.VideoCapture(str(SPORTS2D))
        if not cap.isOpened():
            raise SystemExit(f"cannot open {SPORTS2D} (scripts/setup.sh installs it)")
        tracks["sports2d-demo (whole frames)"] = est.estimate_frames(read_frames(cap)).keypoints_px.astype(np.float64)
        frames = read_frames(cv2.VideoCapture(str(VTEST)), 81)[20:]
        tracks["vtest walker (crops)"] = est.estimate_sequence(frames, [navy_box(t) for t in range(20, 81)]).keypoints_px.astype(np.float64)
    return tracks


def inject(kps: np.ndarray, rng: np.random.Generator, p: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Relabel halves of random posed frames for 1-3 frames -> (kps, injected [T,2] bool)."""
    out = kps.copy()
    injected = np.zeros((len(kps), len(HALVES)), bool)
    posed = np.isfinite(kps[:, :, 0]).any(1)
    t = 1
    while t < len(kps):
        if posed[t] and rng.random() < p:
            halves = [[0], [1], [0, 1]][rng.integers(3)]
            for u in range(t, min(len(kps), t + int(rng.integers(1, 4)))):
                for h in halves:
                    out[u] = swap_half(out[u], list(HALVES.values())[h])
                    injected[u, h] = True
            t += 5
        t += 1
    return out, injected


VISIBLE = 0.25   # torso lengths between a half's left and right joints for a swap to matter


def separation(kps: np.ndarray) -> np.ndarray:
    """[T,2] mean distance between each half's left and right joints, in the track's median torso lengths."""
    from services.pose.swaps import _torso

    torso = np.nanmedian([_torso(k) for k in kps])
    out = np.zeros((len(kps), len(HALVES)))
    for h, pairs in enumerate(HALVES.values()):
        li, ri = np.array(pairs).T
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # frames without a pose
            out[:, h] = np.nan_to_num(np.nanmean(np.linalg.norm(kps[:, li, :2] - kps[:, ri, :2], axis=-1), axis=1)) / torso
    return out


def evaluate(tracks: dict[str, np.ndarray], seeds=range(5, 10)) -> dict:
    rows = []
    for name, kps in tracks.items():
        posed = np.isfinite(kps[:, :, 0]).any(1)
        visible = separation(kps) > VISIBLE      # [T,2] halves whose swap would show
        _, natural = fix_swaps(kps)
        tp = fp = fn = before = after = 0
        for seed in seeds:
            bad, injected = inject(kps, np.random.default_rng(seed))
            _, fixed = fix_swaps(bad)
            # a half is swapped relative to the original after correction when injected XOR relabelled,
            # counting only frames where the original itself was not relabelled (its natural swaps)
            clean = ~natural & visible
            before += int((injected & clean).sum())
            after += int(((injected ^ fixed) & clean).sum())
            tp += int((injected & fixed & clean).sum())
            fp += int((~injected & fixed & clean).sum())
            fn += int((injected & ~fixed & clean).sum())
        n = int(visible.sum()) * len(list(seeds))
        rows.append({"track": name, "frames_posed": int(posed.sum()),
                     "halves_where_a_swap_shows": round(float(visible[posed].mean()), 3),
                     "natural_relabelled": {"upper": int(natural[:, 0].sum()), "lower": int(natural[:, 1].sum())},
                     "injected_recall": round(tp / max(1, tp + fn), 3), "precision": round(tp / max(1, tp + fp), 3),
                     "swap_rate_before": round(before / n, 4), "swap_rate_after": round(after / n, 4)})
    return {"rows": rows, "seeds": len(list(seeds)), "injection": "5% of posed frames, upper/lower/both halves, 1-3 frames"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    rep = evaluate(real_tracks())
    if ap.parse_args(argv).json:
        print(json.dumps(rep, indent=2))
        return 0
    for r in rep["rows"]:
        print(f"{r['track']}: {r['frames_posed']} posed frames; natural relabelled {r['natural_relabelled']}; injected: "
              f"recall {r['injected_recall']}, precision {r['precision']}, swap rate {r['swap_rate_before']} -> {r['swap_rate_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
