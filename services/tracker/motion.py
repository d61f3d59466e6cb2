"""The athlete's motion model: a constant-velocity Kalman filter on the box centre."""
from __future__ import annotations

import numpy as np


class ConstantVelocity:
    """Kalman filter on a box centre: state (x, y, vx, vy) px, px / frame; measurements (x, y).

    Process noise: white acceleration of `accel` px / frame^2 (scaled with the box height by the
    caller), so the prediction's uncertainty grows with every frame without a measurement: the
    gate for re-detection widens by itself while the athlete is occluded or away.
    """

    F = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)
    H = np.eye(2, 4)
    G = np.array([[0.5, 0], [0, 0.5], [1, 0], [0, 1]], np.float64)

    def __init__(self, c: np.ndarray, pos_sigma: float, vel_sigma: float):
        self.x = np.array([c[0], c[1], 0.0, 0.0])
        self.P = np.diag([pos_sigma ** 2] * 2 + [vel_sigma ** 2] * 2)

    @property
    def centre(self) -> np.ndarray:
        return self.x[:2].copy()

    @property
    def velocity(self) -> np.ndarray:
        return self.x[2:].copy()

    def predict(self, accel: float) -> None:
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + (self.G @ self.G.T) * accel ** 2

    def _s_inv(self, meas_sigma: float) -> np.ndarray:
        """Inverse of the innovation covariance (2x2, closed form: numpy's inv costs more than the rest)."""
        a, b, d = self.P[0, 0] + meas_sigma ** 2, self.P[0, 1], self.P[1, 1] + meas_sigma ** 2
        det = a * d - b * b
        return np.array([[d, -b], [-b, a]]) / det

    def mahalanobis(self, c: np.ndarray, meas_sigma: float) -> float:
        """Distance of a measured centre from the prediction, in standard deviations."""
        e = np.asarray(c, np.float64) - self.x[:2]
        return float(np.sqrt(max(float(e @ self._s_inv(meas_sigma) @ e), 0.0)))

    def spread(self) -> float:
        """Standard deviation of the predicted position (px, larger axis)."""
        a, b, d = self.P[0, 0], self.P[0, 1], self.P[1, 1]
        return float(np.sqrt(0.5 * (a + d) + np.sqrt(0.25 * (a - d) ** 2 + b * b)))

    def update(self, c: np.ndarray, meas_sigma: float) -> None:
        k = self.P[:, :2] @ self._s_inv(meas_sigma)
        self.x = self.x + k @ (np.asarray(c, np.float64) - self.x[:2])
        self.P = (np.eye(4) - k @ self.H) @ self.P

    def reset(self, c: np.ndarray, pos_sigma: float, vel_sigma: float) -> None:
        self.__init__(c, pos_sigma, vel_sigma)
