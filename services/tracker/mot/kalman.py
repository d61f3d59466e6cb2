"""Constant-velocity Kalman filter on a whole box (centre, width, height), as in SORT / ByteTrack
(BoT-SORT's x,y,w,h variant: the width is free, so a body that turns sideways or upside down,
whose box gets wide, is not forced back to a walker's aspect)."""
from __future__ import annotations

import numpy as np


class BoxKalman:
    """State x = (cx, cy, w, h, vcx, vcy, vw, vh) px and px / frame; measurement z = (cx, cy, w, h).

    Noise is proportional to the box height (a 300 px athlete moves more pixels than a 30 px
    walker). `vel_std` is higher than ByteTrack's 1/160: a flip or a sprint accelerates hard,
    and a filter too sure of its velocity loses the body in a second."""

    def __init__(self, box: np.ndarray, pos_std: float = 1 / 20, vel_std: float = 1 / 40):
        x, y, w, h = (float(v) for v in box)
        self.pos_std, self.vel_std = pos_std, vel_std
        self.x = np.array([x + w / 2, y + h / 2, w, h, 0, 0, 0, 0], np.float64)          # (8,)
        s = np.array([2 * pos_std * h] * 4 + [10 * vel_std * h] * 4)
        self.P = np.diag(s ** 2)                                                          # (8, 8)
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    @property
    def box(self) -> np.ndarray:
        """(4,) x, y, w, h of the current state."""
        cx, cy, w, h = self.x[:4]
        w, h = max(w, 2.0), max(h, 2.0)
        return np.array([cx - w / 2, cy - h / 2, w, h], np.float32)

    @property
    def speed(self) -> float:
        """Centre speed in box heights per frame."""
        return float(np.hypot(self.x[4], self.x[5]) / max(self.x[3], 1.0))

    def predict(self) -> None:
        h = max(self.x[3], 1.0)
        q = np.array([self.pos_std * h] * 4 + [self.vel_std * h] * 4) ** 2
        self.x = self.F @ self.x
        self.x[6] *= 0.5                      # size velocity decays: boxes do not grow for ever
        self.x[7] *= 0.5
        self.P = self.F @ self.P @ self.F.T + np.diag(q)

    def update(self, box: np.ndarray, noise: float = 1.0) -> None:
        """Fold in a measured box; `noise` scales the measurement std (a local tracker's box is less sure)."""
        x, y, w, h = (float(v) for v in box)
        z = np.array([x + w / 2, y + h / 2, w, h])
        r = (noise * self.pos_std * max(self.x[3], h, 1.0)) ** 2
        S = self.H @ self.P @ self.H.T + np.eye(4) * r
        K = self.P @ self.H.T @ np.linalg.inv(S)                                            # (8, 4)
        self.x = self.x + K @ (z - self.H @ self.x)
        self.P = (np.eye(8) - K @ self.H) @ self.P
