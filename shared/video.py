"""Decoding helpers shared by the services' commands, evaluations and tests."""
from __future__ import annotations

from collections.abc import Iterator

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


def iter_frames(path) -> Iterator[np.ndarray]:
    """Every frame of a video file, BGR, one at a time (nothing buffered), until the first frame that
    cannot be read: a second read of a file the caller has already checked."""
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()
