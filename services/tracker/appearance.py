"""Colour of a person: the 136 hue-saturation / grey bins, and the plain tracker's
background-weighted colour model (`AppearanceModel`)."""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import crop

N_BINS = 136    # 16 hue x 8 saturation bins for coloured pixels + 8 value bins for grey/dark ones


def colour_bins(patch_bgr: np.ndarray) -> np.ndarray:
    """(h,w,3) BGR -> (h,w) bin index in 0..135.

    Chromatic pixels go to 16x8 hue-saturation bins; dark or grey pixels (black jackets,
    jeans in shade: their hue is noise) to 8 value bins.
    """
    hsv = cv2.cvtColor(patch_bgr, cv2.COLOR_BGR2HSV).astype(np.int32)   # H in 0..179
    hh, ss, vv = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    chroma = (ss > 50) & (vv > 50)
    return np.where(chroma, (hh * 16 // 180) * 8 + ss * 8 // 256, 128 + vv * 8 // 256)


class AppearanceModel:
    """Background-weighted colour histograms of a person, upper and lower body.

    Descriptor: the inner 60% of the box width (edges are background), 5..95% of its height,
    split in two at the hips (clothes on top vs legs) -> (2, 136) histograms. Bins that are common in the ring
    around the first box (road, grass) are down-weighted (Comaniciu's background-weighted
    histogram): without that, two people on the same road look alike. Similarity is the
    Bhattacharyya coefficient, 0 (disjoint colours) .. 1 (same), taken as the better of the
    first-frame model (identity anchor) and a slowly updated one (light / pose changes).
    """

    def __init__(self, frame: np.ndarray, bbox: np.ndarray, lr: float = 0.05):
        self.lr = lr
        self.weights = self._background_weights(frame, bbox)      # (136,)
        d = self.describe(frame, bbox)
        self.first = d if d is not None else np.full((2, N_BINS), 1.0 / N_BINS)
        self.running = self.first.copy()

    @staticmethod
    def _background_weights(frame: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        x, y, w, h = (float(v) for v in bbox)
        rx1, ry1 = max(x - w, 0.0), max(y - 0.3 * h, 0.0)           # ring: box grown 3x wide, 1.6x high
        ring = crop(frame, rx1, ry1, x + 2 * w, y + 1.3 * h)
        if ring.size == 0:
            return np.ones(N_BINS)
        bins = colour_bins(ring)
        mask = np.ones(bins.shape, bool)
        ix1, iy1 = int(round(max(x, 0) - round(rx1))), int(round(max(y, 0) - round(ry1)))
        mask[max(iy1, 0):max(iy1 + int(h), 0), max(ix1, 0):max(ix1 + int(w), 0)] = False
        if not mask.any():
            return np.ones(N_BINS)
        bg = np.bincount(bins[mask].ravel(), minlength=N_BINS) / mask.sum()
        return 1.0 / (1.0 + bg * N_BINS)          # a bin at the uniform frequency weighs 0.5

    def describe(self, frame: np.ndarray, bbox: np.ndarray) -> np.ndarray | None:
        """(2, 136) weighted, normalised histograms; None if the box is (nearly) outside the frame."""
        x, y, w, h = (float(v) for v in bbox)
        patch = crop(frame, x + 0.2 * w, y + 0.05 * h, x + 0.8 * w, y + 0.95 * h)
        if patch.shape[0] < 4 or patch.shape[1] < 2:
            return None
        bins = colour_bins(patch)
        split = min(max(bins.shape[0] // 2, 1), bins.shape[0] - 1)   # hips: half-way down the box
        out = np.zeros((2, N_BINS))
        for k, part in enumerate((bins[:split], bins[split:])):
            hist = np.bincount(part.ravel(), minlength=N_BINS) * self.weights
            out[k] = hist / max(hist.sum(), 1e-9)
        return out

    @staticmethod
    def compare(a: np.ndarray | None, b: np.ndarray | None) -> float:
        if a is None or b is None:
            return 0.0
        return float(np.sqrt(a * b).sum(axis=1).mean())

    def similarity(self, frame: np.ndarray, bbox: np.ndarray) -> float:
        d = self.describe(frame, bbox)
        return max(self.compare(d, self.first), self.compare(d, self.running))

    def update(self, frame: np.ndarray, bbox: np.ndarray) -> None:
        d = self.describe(frame, bbox)
        if d is not None:
            self.running = (1 - self.lr) * self.running + self.lr * d
