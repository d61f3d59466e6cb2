"""Boxes (x, y, w, h, pixels): overlap, centre, clipping to the frame, crops."""
from __future__ import annotations

import numpy as np


def iou_xywh(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return float(inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9))


def centre(b: np.ndarray) -> np.ndarray:
    return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2], dtype=np.float64)


def clip_box(b: np.ndarray, wid: int, hgt: int) -> np.ndarray | None:
    """Clip x,y,w,h to the frame; None if almost nothing is left."""
    x1, y1 = max(float(b[0]), 0.0), max(float(b[1]), 0.0)
    x2, y2 = min(float(b[0] + b[2]), float(wid)), min(float(b[1] + b[3]), float(hgt))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


def box_at(c: np.ndarray, w: float, h: float) -> np.ndarray:
    return np.array([c[0] - w / 2, c[1] - h / 2, w, h], np.float32)


def crop(frame: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    hgt, wid = frame.shape[:2]
    x1, y1 = int(round(max(x1, 0))), int(round(max(y1, 0)))
    x2, y2 = int(round(min(x2, wid))), int(round(min(y2, hgt)))
    return frame[y1:max(y2, y1), x1:max(x2, x1)]
