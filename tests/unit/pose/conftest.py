"""Fixtures of the pose tests on real media: one BlazePose (full) per module, and the man in the navy
jacket of vtest.avi over his hand-labelled span (services/pose/lab/eval_swaps.py's box)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.pose.blazepose import BlazePoseEstimator
from services.pose.lab.eval_swaps import NAVY_KEYS, navy_box

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
NAVY_FIRST, NAVY_LAST = min(NAVY_KEYS), max(NAVY_KEYS)   # frames 20-80


@pytest.fixture(scope="module")
def estimator():
    est = BlazePoseEstimator()
    yield est
    est.close()


@pytest.fixture(scope="module")
def navy_walker() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames 20-80 of vtest.avi (61 frames, 768x576) and the navy-jacket walker's box on each."""
    cap = cv2.VideoCapture(VTEST)
    frames = [cap.read()[1] for _ in range(NAVY_LAST + 1)][NAVY_FIRST:]
    cap.release()
    return frames, [navy_box(t) for t in range(NAVY_FIRST, NAVY_LAST + 1)]
