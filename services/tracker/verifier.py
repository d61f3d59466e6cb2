"""The online verifier: is this box the athlete? (HOG + colour, kernel ridge regression)."""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from .appearance import N_BINS, colour_bins
from .geometry import box_at, centre, clip_box, crop


class Verifier:
    """Online-trained binary classifier: is this box the athlete?

    The paper's verifier is an MDNet-like CNN whose last layers are updated online on the target
    vs background. No such weights ship here, so the same idea runs on hand-made features: a
    box is resized to 32x64 and described by its HOG (9 orientations, 8 px cells, 16 px blocks:
    756 values, the silhouette) and its colour histograms (upper / lower half, the 136 bins of
    `colour_bins`, square-rooted: the clothes), each L2-normalised. A linear kernel ridge
    regression (labels +1 / -1, classes balanced) is trained on positives (the athlete's box,
    slightly jittered, from the first frame and from confident frames since) and negatives
    (boxes shifted around the athlete: background and body parts; and the other people: the
    hard negatives that tell the athlete apart from a similarly dressed neighbour). Score =
    clip((w.x + 1) / 2, 0, 1). The first frame's positives are kept for good (identity anchor).
    """

    HOG = cv2.HOGDescriptor((32, 64), (16, 16), (8, 8), (8, 8), 9)
    # Positives are jittered widely (+-12-20% of the width, +-6% of the height, +-12% scale) and
    # negatives start a whole width away: the verifier must accept a tracker box that is a third
    # of a width off, or a detector box 20% too wide, and still reject the neighbour. On the
    # tuning sequences (ground-truth boxes): athlete 0.87 median, the athlete's box shifted by
    # 0.3 widths and widened like a detection 0.5, other people 0.08, background 0.01.
    POS_JITTER = ((0.0, 0.0, 1.0), (0.12, 0.0, 1.0), (-0.12, 0.0, 1.0), (0.0, 0.06, 1.0), (0.0, -0.06, 1.0),
                  (0.0, 0.0, 0.88), (0.0, 0.0, 1.12), (0.2, 0.0, 1.0), (-0.2, 0.0, 1.0))
    # (dx in widths, dy in heights, scale): background beside, above, below; the torso; too big
    NEG_SHIFTS = ((1.0, 0.0, 1.0), (-1.0, 0.0, 1.0), (1.6, 0.0, 1.0), (-1.6, 0.0, 1.0), (0.0, 0.6, 1.0),
                  (0.0, -0.6, 1.0), (0.9, 0.4, 1.0), (-0.9, -0.4, 1.0), (0.9, -0.4, 1.0), (-0.9, 0.4, 1.0),
                  (0.0, 0.0, 0.4), (0.0, 0.0, 2.2))
    _ROWS, _COLS = np.arange(64), np.arange(32)     # a window's pixels, for the search's gather
    COLOUR_WEIGHT = 2.0   # colour vs HOG (shift-tolerant identity vs silhouette): 1 -> 2 lifted shifted boxes 0.46 -> 0.52

    def __init__(self, max_pos: int = 40, max_neg: int = 240, lam: float = 1.0):
        self.anchor: list[np.ndarray] = []
        self.pos: deque[np.ndarray] = deque(maxlen=max_pos)
        self.pos_t: deque[int] = deque(maxlen=max_pos)     # when each positive was learnt (caller's clock)
        self.neg: deque[np.ndarray] = deque(maxlen=max_neg)
        self.lam = lam
        self.w: np.ndarray | None = None
        self.dirty = False
        self._k = 0

    @classmethod
    def features(cls, frame: np.ndarray, bbox: np.ndarray) -> np.ndarray | None:
        x, y, w, h = (float(v) for v in bbox)
        patch = crop(frame, x, y, x + w, y + h)
        if patch.shape[0] < 8 or patch.shape[1] < 4:
            return None
        patch = cv2.resize(patch, (32, 64), interpolation=cv2.INTER_AREA)
        hog = cls.HOG.compute(cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)).ravel()
        hog = hog / max(float(np.linalg.norm(hog)), 1e-9)
        bins = colour_bins(patch)
        col = np.concatenate([np.bincount(bins[:32].ravel(), minlength=N_BINS),
                              np.bincount(bins[32:].ravel(), minlength=N_BINS)]).astype(np.float32)
        col = np.sqrt(col)
        col *= cls.COLOUR_WEIGHT / max(float(np.linalg.norm(col)), 1e-9)
        return np.concatenate([hog, col, [1.0]]).astype(np.float32)

    @staticmethod
    def _shifted(bbox: np.ndarray, dx: float, dy: float, s: float, wid: int, hgt: int) -> np.ndarray | None:
        x, y, w, h = (float(v) for v in bbox)
        c = np.array([x + w / 2 + dx * w, y + h / 2 + dy * h])
        b = clip_box(box_at(c, w * s, h * s), wid, hgt)
        if b is None or b[2] * b[3] < 0.5 * w * s * h * s:       # mostly outside the frame
            return None
        return b

    def add(self, frame: np.ndarray, bbox: np.ndarray, positive: bool, jitter: bool = False, anchor: bool = False,
            t: int = 0) -> None:
        hgt, wid = frame.shape[:2]
        shifts = self.POS_JITTER if jitter else ((0.0, 0.0, 1.0),)
        for dx, dy, s in shifts:
            b = self._shifted(bbox, dx, dy, s, wid, hgt)
            f = None if b is None else self.features(frame, b)
            if f is None:
                continue
            if anchor:
                self.anchor.append(f)
            elif positive:
                self.pos.append(f)
                self.pos_t.append(t)
            else:
                self.neg.append(f)
            self.dirty = True

    def forget_since(self, t: int) -> int:
        """Drop the positives learnt at or after time t (not the anchor); returns how many."""
        keep = [(f, k) for f, k in zip(self.pos, self.pos_t) if k < t]
        n = len(self.pos) - len(keep)
        if n:
            self.pos.clear()
            self.pos_t.clear()
            for f, k in keep:
                self.pos.append(f)
                self.pos_t.append(k)
            self.dirty = True
        return n

    def add_scene(self, frame: np.ndarray, bbox: np.ndarray, n: int, rng: np.random.Generator) -> None:
        """Negatives of the athlete's size anywhere in the frame away from the athlete: a linear
        classifier only knows the background it was shown, and extrapolates wildly elsewhere."""
        hgt, wid = frame.shape[:2]
        w, h = float(bbox[2]), float(bbox[3])
        c0 = centre(bbox)
        for _ in range(n):
            c = np.array([rng.uniform(w / 2, max(wid - w / 2, w / 2 + 1)), rng.uniform(h / 2, max(hgt - h / 2, h / 2 + 1))])
            if abs(c[0] - c0[0]) < w and abs(c[1] - c0[1]) < 0.5 * h:
                continue
            b = clip_box(box_at(c, w, h), wid, hgt)
            f = None if b is None else self.features(frame, b)
            if f is not None:
                self.neg.append(f)
                self.dirty = True

    def add_background(self, frame: np.ndarray, bbox: np.ndarray, n: int | None = None) -> None:
        """Negatives shifted around the athlete's box: all of NEG_SHIFTS, or the next n of them."""
        hgt, wid = frame.shape[:2]
        shifts = self.NEG_SHIFTS if n is None else [self.NEG_SHIFTS[(self._k + i) % len(self.NEG_SHIFTS)] for i in range(n)]
        self._k += 0 if n is None else n
        for dx, dy, s in shifts:
            b = self._shifted(bbox, dx, dy, s, wid, hgt)
            f = None if b is None else self.features(frame, b)
            if f is not None:
                self.neg.append(f)
                self.dirty = True

    def fit(self) -> None:
        pos = self.anchor + list(self.pos)
        if not pos or not self.neg:
            return
        x = np.array(pos + list(self.neg), np.float64)
        y = np.r_[np.ones(len(pos)), -np.ones(len(self.neg))]
        c = np.r_[np.full(len(pos), len(self.neg) / len(pos)), np.ones(len(self.neg))]
        c *= len(c) / c.sum()
        k = x @ x.T
        alpha = np.linalg.solve(c[:, None] * k + self.lam * np.eye(len(y)), c * y)
        self.w = (x.T @ alpha).astype(np.float32)
        self.dirty = False

    def search(self, frame: np.ndarray, c: np.ndarray, size: np.ndarray, rx: float, ry: float) -> tuple[np.ndarray | None, float]:
        """Best-scoring box of the given size whose centre lies within +-rx, +-ry of c (the paper's
        verifier scoring candidate boxes, MDNet-style): every window on a 1/8-width x 1/16-height
        grid, HOG for all windows at once. Returns (box, score) or (None, 0)."""
        if self.w is None:
            return None, 0.0
        hgt, wid = frame.shape[:2]
        w, h = float(size[0]), float(size[1])
        sx, sy = 32.0 / w, 64.0 / h
        x0, y0 = max(int(np.floor(c[0] - w / 2 - rx)), 0), max(int(np.floor(c[1] - h / 2 - ry)), 0)
        x1, y1 = min(int(np.ceil(c[0] + w / 2 + rx)), wid), min(int(np.ceil(c[1] + h / 2 + ry)), hgt)
        tw, th = int(round((x1 - x0) * sx)), int(round((y1 - y0) * sy))
        if tw < 32 or th < 64 or tw > 2000 or th > 2000:
            return None, 0.0
        img = cv2.resize(frame[y0:y1, x0:x1], (tw, th), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        bins = colour_bins(img)
        w_hog, w_col, bias = self.w[:756], self.w[756:-1], float(self.w[-1])
        best, best_at = -np.inf, None
        for ox in (0, 4):
            for oy in (0, 4):
                sub = gray[oy:, ox:]
                if sub.shape[0] < 64 or sub.shape[1] < 32:
                    continue
                nx, ny = (sub.shape[1] - 32) // 8 + 1, (sub.shape[0] - 64) // 8 + 1
                d = self.HOG.compute(sub, winStride=(8, 8)).reshape(-1, 756)[:nx * ny]
                hog_score = (d @ w_hog) / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
                # colour for the promising third, all at once: one bincount over (window, half) bins
                ks = np.argsort(-hog_score)[:max(8, len(hog_score) // 3)]
                px, py = ox + 8 * (ks % nx), oy + 8 * (ks // nx)
                blk = bins[(py[:, None] + self._ROWS)[:, :, None], (px[:, None] + self._COLS)[:, None, :]]
                blk = blk.reshape(len(ks), 2, 32 * 32) + (np.arange(2 * len(ks)) * N_BINS).reshape(len(ks), 2, 1)
                col = np.sqrt(np.bincount(blk.ravel(), minlength=2 * len(ks) * N_BINS)
                              .reshape(len(ks), 2 * N_BINS).astype(np.float32))
                sc = (hog_score[ks].astype(np.float64) + self.COLOUR_WEIGHT * (col @ w_col).astype(np.float64)
                      / np.maximum(np.linalg.norm(col, axis=1).astype(np.float64), 1e-9) + bias)
                i = int(np.argmax(sc))            # the first of equals, as the loop it replaces
                if sc[i] > best:
                    best, best_at = float(sc[i]), (int(px[i]), int(py[i]))
        if best_at is None:
            return None, 0.0
        box = np.array([x0 + best_at[0] / sx, y0 + best_at[1] / sy, w, h], np.float32)
        return box, float(np.clip(0.5 + 0.5 * best, 0.0, 1.0))

    def score(self, frame: np.ndarray, bbox: np.ndarray) -> float:
        if self.w is None:
            return 0.5
        f = self.features(frame, bbox)
        if f is None:
            return 0.0
        return float(np.clip(0.5 + 0.5 * float(f @ self.w), 0.0, 1.0))
