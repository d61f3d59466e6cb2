"""Decoding helpers shared by the services' commands, evaluations and tests."""
from __future__ import annotations

import cv2
import numpy as np


def read_frames(cap: cv2.VideoCapture, limit: int | None = None) -> list[np.ndarray]:
    """The next `limit` frames (all that are left by default) of an opened capture, BGR; releases it.
    Callers open the capture themselves, so each says in its own words what a bad file is."""
    frames: list[np.ndarray] = []
    try:
        while limit is None or len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames
