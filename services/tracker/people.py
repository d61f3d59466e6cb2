"""The other people around the athlete: a cheap template tracker each, under a stable id."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .geometry import crop


class TemplateTracker:
    """Cheap tracker for the people around the athlete: normalised cross-correlation of a small
    grey template (about 16 px wide) in a window around the constant-velocity prediction."""

    def __init__(self, gray: np.ndarray, bbox: np.ndarray):
        self.box = np.asarray(bbox, np.float32).copy()
        self.vel = np.zeros(2, np.float32)
        self.s = min(1.0, 16.0 / max(float(bbox[2]), 1.0))
        self.tmpl = self._patch(gray, self.box)

    def _patch(self, gray: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        x, y, w, h = (float(v) for v in b)
        p = crop(gray, x, y, x + w, y + h)
        if p.shape[0] < 4 or p.shape[1] < 4:
            return None
        return cv2.resize(p, (max(4, int(round(w * self.s))), max(4, int(round(h * self.s)))), interpolation=cv2.INTER_AREA)

    def update(self, gray: np.ndarray) -> float:
        """Move the box to the best match; returns the match score (-1..1), the box is kept if < 0.5."""
        if self.tmpl is None:
            return 0.0
        x, y, w, h = (float(v) for v in self.box)
        x, y = x + self.vel[0], y + self.vel[1]
        mx, my = 0.6 * w + 2, 0.2 * h + 2
        win = crop(gray, x - mx, y - my, x + w + mx, y + h + my)
        x0, y0 = max(round(x - mx), 0), max(round(y - my), 0)
        th, tw = self.tmpl.shape
        if win.size == 0:
            return 0.0
        win = cv2.resize(win, (max(1, int(round(win.shape[1] * self.s))), max(1, int(round(win.shape[0] * self.s)))),
                         interpolation=cv2.INTER_AREA)
        if win.shape[0] < th or win.shape[1] < tw:
            return 0.0
        res = cv2.matchTemplate(win, self.tmpl, cv2.TM_CCOEFF_NORMED)
        _, best, _, loc = cv2.minMaxLoc(res)
        if best < 0.5:
            return float(best)
        nb = np.array([x0 + loc[0] / self.s, y0 + loc[1] / self.s, w, h], np.float32)
        self.vel = 0.5 * self.vel + 0.5 * (nb[:2] - self.box[:2])
        self.box = nb
        if best > 0.75:
            p = self._patch(gray, nb)
            if p is not None and p.shape == self.tmpl.shape:
                self.tmpl = cv2.addWeighted(self.tmpl, 0.9, p, 0.1, 0)
        return float(best)

    def reset(self, gray: np.ndarray, bbox: np.ndarray) -> None:
        old = self.box.copy()
        self.__init__(gray, bbox)
        self.vel = (self.box[:2] - old[:2]) * 0.0


@dataclass
class Person:
    track_id: int                   # internal, stable for the tracker's life (ordering, duplicates)
    tracker: TemplateTracker
    last_seen: int                  # frame count of the last good match or detection
    score: float = 1.0
    last_confirmed: int = -1        # frame count of the last detection on this person (-1: at creation)
    centres: list = field(default_factory=list)   # box centres (x, y) px since that detection, the last few
    ghost: bool = False             # following background since its person walked on (not reported)
    out_id: int = -1                # the id the results carry (-1: track_id); a new one after a ghost

    def __post_init__(self) -> None:
        if self.last_confirmed < 0:
            self.last_confirmed = self.last_seen
        if self.out_id < 0:
            self.out_id = self.track_id

    def confirm(self, n: int) -> None:
        self.last_confirmed, self.centres = n, []

    def still_since_confirmed(self, frames: int, frac: float) -> bool:
        """Unconfirmed for `frames` frames, and the box has not moved by `frac` of its height in them."""
        if len(self.centres) < frames:
            return False
        c = np.asarray(self.centres[-frames:], np.float32)
        return float(np.ptp(c[:, 0]) + np.ptp(c[:, 1])) < frac * float(self.box[3])

    @property
    def box(self) -> np.ndarray:
        return self.tracker.box
