"""Turn per-frame fault probabilities into fault segments (what the athlete sees on the timeline)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[T] bool -> inclusive (start, end) of each run of True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # rising and falling edges alternate
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def fault_segments(probs: np.ndarray, fault_ids: Sequence[str], thresholds: Sequence[float] | float,
                   min_frames: int = 3, max_gap: int = 2) -> list[dict]:
    """probs [T, n] -> [{type, start_frame, end_frame, peak_probability}] (frames inclusive).

    A frame is flagged when its probability >= the fault's threshold (NaN = not flagged). Runs
    separated by at most max_gap unflagged frames are merged (detector flicker), then runs shorter
    than min_frames are dropped (blips). Sorted by start frame, then fault type."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(fault_ids):
        raise ValueError(f"probs must be [T, {len(fault_ids)}], got {probs.shape}")
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(fault_ids),))
    out = []
    for j, fid in enumerate(fault_ids):
        p = probs[:, j]
        flagged = np.nan_to_num(p, nan=-np.inf) >= thr[j]
        merged: list[list[int]] = []
        for s, e in _runs(flagged):
            if merged and s - merged[-1][1] - 1 <= max_gap:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        for s, e in merged:
            if e - s + 1 >= min_frames:
                out.append({"type": fid, "start_frame": s, "end_frame": e,
                            "peak_probability": float(np.nanmax(p[s:e + 1]))})
    out.sort(key=lambda d: (d["start_frame"], d["type"]))
    return out
