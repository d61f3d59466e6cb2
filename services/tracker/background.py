"""What moves in a static camera's view (background subtraction, camera-motion check)."""
from __future__ import annotations

import cv2
import numpy as np


class ForegroundModel:
    """What moves in a static camera's view: OpenCV's MOG2 background subtractor on a grey copy
    of the frame scaled to `width` px (~0.8 ms a frame at 192 px).

    share(box) is the foreground fraction of the box's inner part (the middle 60% of its width,
    5-95% of its height, like `AppearanceModel`): ~0.4-0.8 on a walking person on vtest.avi, under
    0.15 on the lamp post / sign, a standing person decays towards 0 over ~history / 10 frames.
    It is None (no opinion) during the first `warmup` frames, whenever more than `max_global` of
    the frame is foreground (a light change), and for good once the camera has moved: the
    whole-frame shift between consecutive frames (phase correlation on the same small copy,
    ~0.3 ms) exceeded `max_shift` px on `moves_allowed` frames. A pan over a smooth or blurred
    scene leaves most of the frame "background" while every box in it is wrong; vtest.avi's fixed
    camera shifts 0.59 px at most, the evaluation set's pans 1-12 px a frame.
    """

    def __init__(self, width: int = 192, history: int = 300, var_threshold: float = 16.0,
                 warmup: int = 5, max_global: float = 0.3, max_shift: float = 1.0, moves_allowed: int = 2):
        self.width, self.warmup, self.max_global = width, warmup, max_global
        self.max_shift, self.moves_allowed = max_shift, moves_allowed
        self.moves = 0                  # frames on which the camera moved
        self._prev: np.ndarray | None = None
        self._mog = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold,
                                                       detectShadows=False)
        self.mask: np.ndarray | None = None
        self.scale = 1.0
        self.global_share = 1.0
        self.n = 0

    def apply(self, frame: np.ndarray) -> None:
        hgt, wid = frame.shape[:2]
        self.scale = min(1.0, self.width / float(wid))
        # grey first, then the resize: a third of the pixels to average (the same image to 1 grey level)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if self.scale < 1.0:
            gray = cv2.resize(gray, (max(1, int(round(wid * self.scale))), max(1, int(round(hgt * self.scale)))),
                              interpolation=cv2.INTER_AREA)
        if self.static:
            g = gray.astype(np.float32)
            if self._prev is not None and self._prev.shape == g.shape:
                (dx, dy), _ = cv2.phaseCorrelate(self._prev, g)
                self.moves += int(dx * dx + dy * dy > self.max_shift ** 2)
            self._prev = g
        if not self.static:             # a moving camera: nothing more to learn
            self.mask, self._prev = None, None
            return
        self.mask = self._mog.apply(gray) > 0
        self.global_share = float(self.mask.mean())
        self.n += 1

    @property
    def static(self) -> bool:
        """The camera has not moved (so far)."""
        return self.moves <= self.moves_allowed

    @property
    def reliable(self) -> bool:
        return self.mask is not None and self.n > self.warmup and self.global_share <= self.max_global

    def share(self, bbox: np.ndarray | None) -> float | None:
        if bbox is None or not self.reliable:
            return None
        x, y, w, h = (float(v) * self.scale for v in bbox)
        hgt, wid = self.mask.shape
        x1, x2 = max(int(round(x + 0.2 * w)), 0), min(int(round(x + 0.8 * w)), wid)
        y1, y2 = max(int(round(y + 0.05 * h)), 0), min(int(round(y + 0.95 * h)), hgt)
        if x2 <= x1 or y2 <= y1:
            return None
        return float(self.mask[y1:y2, x1:x2].mean())

    def blobs(self, min_area_px: float) -> list[np.ndarray] | None:
        """Boxes (x, y, w, h, frame px) of the moving regions of at least `min_area_px` frame
        pixels (fragments of one person closer than ~2 px at the model's scale joined); None
        when the model has no opinion (see `share`)."""
        if not self.reliable:
            return None
        m = cv2.dilate(self.mask.astype(np.uint8), np.ones((3, 3), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        s = 1.0 / self.scale
        min_area = min_area_px * self.scale * self.scale
        return [stats[i, :4].astype(np.float32) * s for i in range(1, n) if stats[i, 4] >= min_area]
