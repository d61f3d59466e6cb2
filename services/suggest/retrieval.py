"""Find, in a library of correct-form exemplars, the clip spans closest to an athlete's faulty segment.

The paper (Sec. 5.2) shows "one video clip with correct poses ... with the same action of bad
frames". We make "same action" concrete with a sliding window over each exemplar's per-frame
features (shared.features.FEATURE_NAMES), NaN-aware, at three time scales (the athlete
may move faster or slower than the exemplar; the segment is resampled to each window length).

Two ways to compare a window with the segment:
  match="pose"  (default) the RMS difference of the features and of how they change over
                +-0.1 s (weighted by VEL_WEIGHT): the correct-form moment that looks most like
                the athlete's, moving the same way. similarity = exp(-(rms / POSE_SCALE)^2).
  match="shape" each feature's trajectory is z-normalised within the segment and within the
                window before the RMS difference: the same phase of the movement regardless of
                amplitude. For range-of-motion faults (shallow_depth) the athlete's pose is what
                is wrong, so "pose" would answer a shallow squat's bottom with a good squat
                half-way down; "shape" answers it with the good squat's bottom.
                similarity = exp(-(rms / SHAPE_SCALE)^2).
MATCH_FOR_FAULT says which to use per fault type.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from shared.features import FEATURE_INDEX, temporal_deltas
from shared.sports import PACK_SPECS

VEL_LAG_S = 0.1  # half-width of the central difference, seconds
VEL_WEIGHT = 2.0  # a feature changing by 0.1 within +-0.1 s counts like a 0.2 offset
POSE_SCALE = 0.3  # RMS difference (cosine units) at which similarity is exp(-1) ~ 0.37
SHAPE_SCALE = 1.0  # same, in z-score units
SHAPE_STD_FLOOR = 0.05  # a feature that barely moves in a window is not blown up into a shape
MIN_OVERLAP = 0.3  # a window needs this fraction of entries finite on both sides to be scored
MATCH_FOR_FAULT: dict[str, str] = {"shallow_depth": "shape"}  # everything else: "pose"

Match = Literal["pose", "shape"]


@dataclass
class Exemplar:
    id: str
    sport: str
    title: str
    fps: float
    features: np.ndarray  # [N,F] FEATURE_NAMES order
    keypoints: np.ndarray  # [N,33,3] pixels in the exemplar video
    video_key: str  # object key or path of the mp4


def match_for(fault_id: str | None) -> Match:
    return MATCH_FOR_FAULT.get(fault_id or "", "pose")  # type: ignore[return-value]


def motion_descriptor(features: np.ndarray, fps: float) -> np.ndarray:
    """[N,F] -> [N,2F]: features and their weighted change over +-VEL_LAG_S."""
    lag = max(1, int(round(VEL_LAG_S * fps)))
    return np.concatenate([features, VEL_WEIGHT * temporal_deltas(features, lag)], axis=1)


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """[L,F] -> [n,F] by nearest frame (keeps NaN where the source had none measured)."""
    idx = np.clip(np.round(np.linspace(0, len(x) - 1, n)).astype(int), 0, len(x) - 1)
    return x[idx]


def _znorm(x: np.ndarray) -> np.ndarray:
    """z-normalise along the last axis (time), NaN-aware, with a floor on the spread."""
    with np.errstate(all="ignore"):
        m = np.nanmean(x, axis=-1, keepdims=True)
        s = np.nanstd(x, axis=-1, keepdims=True)
    return (x - m) / np.maximum(np.nan_to_num(s), SHAPE_STD_FLOOR)


def best_window(segment: np.ndarray, features: np.ndarray, shape: bool = False,
                scales: Sequence[float] = (0.75, 1.0, 1.33)) -> tuple[float, int, int]:
    """(rms distance, start frame, window length) of the window of features [N,D] closest to segment [L,D]."""
    L, N = len(segment), len(features)
    best = (np.inf, 0, min(L, N))
    for sc in scales:
        W = int(np.clip(round(L * sc), 2, N))
        seg = _resample(segment, W).T  # [D,W]
        win = np.lib.stride_tricks.sliding_window_view(features, W, axis=0)  # [N-W+1, D, W]
        diff = (_znorm(win) - _znorm(seg)[None]) if shape else (win - seg[None])
        ok = np.isfinite(diff)
        n_ok = ok.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt((np.where(ok, diff, 0.0) ** 2).sum(axis=(1, 2)) / n_ok)
        rms[n_ok < MIN_OVERLAP * seg.size] = np.inf
        i = int(np.argmin(rms))
        if rms[i] < best[0]:
            best = (float(rms[i]), i, W)
    return best


def suggest(segment_features: np.ndarray, exemplars: list[Exemplar], k: int = 2, sport: str | None = None,
            fps: float = 30.0, match: Match = "pose") -> list[dict]:
    """segment_features [L,F] -> top-k [{exemplar_id, start_s, end_s, similarity, ...}], best first.

    fps: frame rate of the athlete's video. sport: if given, only exemplars of that sport are
    considered and only the features its judge pack uses are compared (an arm held differently
    should not decide which squat to show); otherwise all features are compared. match: "pose"
    or "shape" (see the module doc; match_for(fault_id) picks it from the fault type)."""
    seg = np.asarray(segment_features, dtype=np.float64)
    if seg.ndim != 2 or len(seg) == 0:
        raise ValueError(f"segment_features must be [L,F] with L > 0, got {seg.shape}")
    if match not in ("pose", "shape"):
        raise ValueError(f"match must be 'pose' or 'shape', got {match!r}")
    F = seg.shape[1]
    cols = (np.array([FEATURE_INDEX[n] for n in PACK_SPECS[sport].features])
            if sport in PACK_SPECS and F == len(FEATURE_INDEX) else np.arange(F))
    seg = seg[:, cols]
    described: dict[float, np.ndarray] = {}  # segment descriptor per exemplar frame rate
    ranked = []
    for ex in exemplars:
        if sport is not None and ex.sport != sport:
            continue
        feats = np.asarray(ex.features, dtype=np.float64)
        if feats.shape[1] != F:
            raise ValueError(f"exemplar {ex.id} has {feats.shape[1]} features, segment has {F}")
        if len(feats) < 2:
            continue
        feats = feats[:, cols]
        if ex.fps not in described:  # bring the segment to the exemplar's frame rate first
            resampled = _resample(seg, max(2, int(round(len(seg) * ex.fps / fps))))
            described[ex.fps] = resampled if match == "shape" else motion_descriptor(resampled, ex.fps)
        target = feats if match == "shape" else motion_descriptor(feats, ex.fps)
        rms, start, W = best_window(described[ex.fps], target, shape=match == "shape")
        if not np.isfinite(rms):
            continue
        scale = SHAPE_SCALE if match == "shape" else POSE_SCALE
        ranked.append({
            "exemplar_id": ex.id,
            "sport": ex.sport,
            "title": ex.title,
            "video_key": ex.video_key,
            "start_frame": start,
            "end_frame": start + W - 1,
            "start_s": start / ex.fps,
            "end_s": (start + W) / ex.fps,
            "similarity": float(np.exp(-((rms / scale) ** 2))),
        })
    ranked.sort(key=lambda d: (-d["similarity"], d["exemplar_id"]))
    return ranked[:k]
