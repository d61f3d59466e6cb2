"""Left/right swaps: a single-frame pose model that labels the left leg "right" for a frame or two.

Every single-frame model does it on side views and turns (the body's two sides look alike from the
side), and a coach then sees the "left knee" angle jump to the other leg's. Over time a swap is
plain: the frame's left joints sit where the previous frame's right joints were, and vice versa.

    fixed, swapped = fix_swaps(kps)      # kps [T,33,3] x_px, y_px, confidence; NaN rows = no pose
                                         # swapped [T,2] bool: (upper body, lower body) relabelled

Per body half (upper: face, shoulders, arms; lower: hips, legs, feet, which BlazePose swaps
independently) the labelling of the whole track is chosen at once (Viterbi over two states per
posed frame, as labelled / relabelled): the cost is the motion between consecutive posed frames
under each pair of labellings (mean joint travel in torso lengths) plus SWAP_COST for every
relabelled frame, so a swap is undone only where it makes the motion much smoother, and a swap
lasting several frames is undone as one (a frame-by-frame greedy rule cascades after one miss).
What this cannot see: a pose labelled the wrong way round from its first frame on (consistent over
time); fixing that needs the body's facing, not time.
"""
from __future__ import annotations

import numpy as np

from shared.skeleton import LANDMARK_NAMES

SWAP_COST = 0.1          # torso lengths of extra motion a relabelled frame must save (chosen on injection seeds 0-4)
MAX_GAP = 5              # frames without a pose across which the previous pose still counts
_PAIRS = [(i, LANDMARK_NAMES.index("right_" + n[5:])) for i, n in enumerate(LANDMARK_NAMES) if n.startswith("left_")]
_LOWER = {"hip", "knee", "ankle", "heel", "foot_index"}
HALVES = {  # body half -> [(left index, right index)]
    "upper": [(l, r) for l, r in _PAIRS if LANDMARK_NAMES[l][5:] not in _LOWER],
    "lower": [(l, r) for l, r in _PAIRS if LANDMARK_NAMES[l][5:] in _LOWER],
}
_I = {n: i for i, n in enumerate(LANDMARK_NAMES)}


def _torso(k: np.ndarray) -> float:
    sh = (k[_I["left_shoulder"], :2] + k[_I["right_shoulder"], :2]) / 2
    hp = (k[_I["left_hip"], :2] + k[_I["right_hip"], :2]) / 2
    return float(np.linalg.norm(sh - hp))


def swap_half(k: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """[33,3] -> the same pose with the pairs' left and right rows exchanged."""
    out = k.copy()
    for li, ri in pairs:
        out[[li, ri]] = k[[ri, li]]
    return out


def _motion(a: np.ndarray, b: np.ndarray, torso: float) -> float:
    """Mean distance between matching joints of two [J,2] sets (NaN-aware), in torso lengths."""
    d = np.linalg.norm(a - b, axis=1)
    d = d[np.isfinite(d)]
    return float(d.mean()) / torso if len(d) else 0.0


def fix_swaps(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """kps [T,33,3] -> (kps with swapped halves relabelled [T,33,3], swapped [T,2] bool (upper, lower))."""
    kps = np.array(kps, dtype=np.float64, copy=True)
    T = len(kps)
    swapped = np.zeros((T, len(HALVES)), dtype=bool)
    posed = [t for t in range(T) if np.isfinite(kps[t, :, :2]).all(axis=1).sum() >= 8]
    if len(posed) < 2:
        return kps, swapped
    torsos = np.array([_torso(kps[t]) for t in posed])
    torso = float(np.nanmedian(torsos)) if np.isfinite(torsos).any() else np.nan
    if not (np.isfinite(torso) and torso > 0):
        return kps, swapped
    for h, pairs in enumerate(HALVES.values()):
        li, ri = np.array(pairs).T
        views = [(kps[t][li, :2], kps[t][ri, :2]) for t in posed]      # (left [J,2], right [J,2]) per posed frame
        # as labelled (state 0) and relabelled (state 1): the half's joints in left-then-right order
        seq = [[np.vstack([l, r]), np.vstack([r, l])] for l, r in views]
        cost = np.array([0.0, SWAP_COST])                              # best total cost ending in each state
        back = np.zeros((len(posed), 2), dtype=int)
        for n in range(1, len(posed)):
            step = np.zeros((2, 2))                                    # [previous state, state]
            if posed[n] - posed[n - 1] <= MAX_GAP:
                for a in (0, 1):
                    for b in (0, 1):
                        step[a, b] = _motion(seq[n - 1][a], seq[n][b], torso)
            total = cost[:, None] + step + np.array([0.0, SWAP_COST])[None, :]
            back[n] = total.argmin(axis=0)
            cost = total.min(axis=0)
        state = int(cost.argmin())
        for n in range(len(posed) - 1, -1, -1):
            if state:
                kps[posed[n]] = swap_half(kps[posed[n]], pairs)
                swapped[posed[n], h] = True
            state = back[n, state]
    return kps, swapped


def relabel_like(points: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """Apply fix_swaps' relabelling [T,2] to another [T,33,C] array of the same frames (3D landmarks)."""
    out = np.array(points, copy=True)
    for t, h in zip(*np.nonzero(swapped)):
        out[t] = swap_half(out[t], list(HALVES.values())[h])
    return out
