"""Appearance of a person: colour histograms of the whole box and of its two halves.

The 136 hue-saturation / grey bins of `appearance.colour_bins` (clothes), square-rooted and
normalised, so the Bhattacharyya coefficient of two descriptors is their dot product. Upper /
lower halves tell a red shirt over jeans from the reverse; a body upside down (a flip) has
them swapped, so halves are compared both ways and the better kept. Bins common in the whole
scene (road, lawn) weigh less (background-weighted histogram): two people on the same road
otherwise look alike."""
from __future__ import annotations

import cv2
import numpy as np

from ..appearance import N_BINS, colour_bins
from ..geometry import crop


def scene_weights(frame: np.ndarray) -> np.ndarray:
    """(136,) weights from the colour distribution of the whole frame (every 4th pixel)."""
    bins = colour_bins(frame[::4, ::4])
    bg = np.bincount(bins.ravel(), minlength=N_BINS) / bins.size
    return 1.0 / (1.0 + bg * N_BINS)          # a bin at the uniform frequency weighs 0.5


def describe(frame: np.ndarray, box: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """(3, 136) sqrt-normalised histograms (whole, upper half, lower half) of the box's inner part
    (middle 60% of the width, 5..95% of the height: the edges are background); None off-frame."""
    x, y, w, h = (float(v) for v in box)
    patch = crop(frame, x + 0.2 * w, y + 0.05 * h, x + 0.8 * w, y + 0.95 * h)
    if patch.shape[0] < 6 or patch.shape[1] < 3:
        return None
    if patch.shape[0] > 64:                   # colours do not need every pixel of a big athlete
        step = patch.shape[0] // 64 + 1
        patch = patch[::step, ::step]
    bins = colour_bins(patch)
    split = bins.shape[0] // 2
    out = np.zeros((3, N_BINS), np.float32)
    for k, part in enumerate((bins, bins[:split], bins[split:])):
        hist = np.bincount(part.ravel(), minlength=N_BINS) * weights
        out[k] = np.sqrt(hist / max(hist.sum(), 1e-9))
    return out


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """0 (disjoint colours) .. 1 (same): half the whole-box coefficient, half the halves', the
    halves compared upright and swapped (upside down), the better of the two."""
    if a is None or b is None:
        return 0.0
    whole = float(a[0] @ b[0])
    upright = 0.5 * float(a[1] @ b[1] + a[2] @ b[2])
    flipped = 0.5 * float(a[1] @ b[2] + a[2] @ b[1])
    return 0.5 * whole + 0.5 * max(upright, flipped)


class Gallery:
    """A track's appearance: a running mean (light, pose) plus a few snapshots kept for good
    (re-identification after the person was away: compared with the best of them)."""

    def __init__(self, desc: np.ndarray, size: int = 8, lr: float = 0.1):
        self.mean = desc.copy()
        self.snaps: list[np.ndarray] = [desc.copy()]
        self.size, self.lr, self._n = size, lr, 0

    def add(self, desc: np.ndarray | None) -> None:
        if desc is None:
            return
        self.mean = (1 - self.lr) * self.mean + self.lr * desc
        self._n += 1
        if self._n % 10 == 0:                 # a snapshot every 10 updates, oldest dropped (first kept)
            self.snaps.append(desc.copy())
            if len(self.snaps) > self.size:
                del self.snaps[1]

    def similarity(self, desc: np.ndarray | None) -> float:
        if desc is None:
            return 0.0
        return max([similarity(self.mean, desc)] + [similarity(s, desc) for s in self.snaps])

    def compare(self, other: "Gallery") -> float:
        """Similarity of two tracks (offline stitching)."""
        return max(similarity(a, b) for a in [self.mean] + self.snaps for b in [other.mean] + other.snaps)


def search(frame: np.ndarray, desc: np.ndarray, weights: np.ndarray, c: np.ndarray, w: float, h: float,
           radius: float) -> np.ndarray | None:
    """Where a box of w x h around centre c (within `radius` px) holds the most of the track's
    colours: Swain & Ballard's ratio-histogram back-projection, summed over the box's inner part
    with a box filter. Colours survive motion blur, which the face-driven detector and the
    correlation filter do not. -> the best box (x, y, w, h) or None. desc: the track's (3, 136)."""
    if w < 1.0 or h < 1.0:                                 # a Kalman box that collapsed (w or h <= 0): nothing to find
        return None
    s = min(1.0, 40.0 / max(h, 1.0))                       # work with the person ~40 px tall
    x1, y1 = c[0] - radius - w / 2, c[1] - radius - h / 2
    patch = crop(frame, x1, y1, c[0] + radius + w / 2, c[1] + radius + h / 2)
    x1, y1 = max(x1, 0.0), max(y1, 0.0)
    if patch.shape[0] < h * 0.5 or patch.shape[1] < w * 0.5:
        return None
    if s < 1.0:
        patch = cv2.resize(patch, (max(1, int(patch.shape[1] * s)), max(1, int(patch.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
    bins = colour_bins(patch)
    p_t = desc[0].astype(np.float64) ** 2                   # the track's weighted colour distribution
    p_w = np.bincount(bins.ravel(), minlength=N_BINS) * weights
    p_t, p_w = p_t / max(p_t.sum(), 1e-9), p_w / max(p_w.sum(), 1e-9)
    ratio = np.minimum(p_t / np.maximum(p_w, 1e-9), 1.0).astype(np.float32)
    bp = ratio[bins]                                        # (h, w) 0..1: how much each pixel is "them"
    kw, kh = max(1, int(round(0.6 * w * s))), max(1, int(round(0.9 * h * s)))
    if bp.shape[0] < kh or bp.shape[1] < kw:
        return None
    sums = cv2.boxFilter(bp, -1, (kw, kh), normalize=True, borderType=cv2.BORDER_CONSTANT)
    # only centres where the whole box fits
    my, mx = kh // 2, kw // 2
    valid = sums[my:sums.shape[0] - (kh - 1 - my), mx:sums.shape[1] - (kw - 1 - mx)]
    if valid.size == 0:
        return None
    iy, ix = np.unravel_index(int(np.argmax(valid)), valid.shape)
    cx, cy = x1 + (ix + mx + 0.5) / s, y1 + (iy + my + 0.5) / s
    return np.array([cx - w / 2, cy - h / 2, w, h], np.float32)
