"""Geometry and assignment helpers."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) vs b (M, 4), x,y,w,h -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return inter / np.maximum(area, 1e-9)


def assign(score: np.ndarray, min_score: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian assignment maximising `score` (N, M); pairs under min_score are not matched.
    -> (matches [(row, col)], unmatched rows, unmatched cols)."""
    n, m = score.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    rows, cols = linear_sum_assignment(-score)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if score[r, c] >= min_score]
    mr, mc = {r for r, _ in pairs}, {c for _, c in pairs}
    return pairs, [r for r in range(n) if r not in mr], [c for c in range(m) if c not in mc]
