"""fault_segments on hand-made probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from services.judge.segments import fault_segments


def probs_from(*cols: list[float]) -> np.ndarray:
    return np.array(cols, dtype=np.float64).T  # [T,n]


def test_bridges_small_gaps_and_drops_blips():
    a = np.zeros(30)
    a[5:10] = 0.9
    a[12:15] = 0.8  # gap of 2 frames (10, 11) -> bridged
    a[20:22] = 0.95  # 2-frame blip -> dropped
    a[8] = 0.97
    segs = fault_segments(a[:, None], ["bent_knees"], [0.5])
    assert segs == [{"type": "bent_knees", "start_frame": 5, "end_frame": 14, "peak_probability": pytest.approx(0.97)}]


def test_gap_longer_than_max_gap_splits():
    a = np.zeros(20)
    a[0:4] = 0.9
    a[7:11] = 0.6  # gap of 3 frames
    segs = fault_segments(a[:, None], ["x"], 0.5, min_frames=3, max_gap=2)
    assert [(s["start_frame"], s["end_frame"]) for s in segs] == [(0, 3), (7, 10)]
    assert segs[1]["peak_probability"] == pytest.approx(0.6)


def test_nan_counts_as_not_flagged():
    a = np.full(12, 0.9)
    a[4:7] = np.nan  # no pose for 3 frames -> breaks the run
    segs = fault_segments(a[:, None], ["x"], 0.5)
    assert [(s["start_frame"], s["end_frame"]) for s in segs] == [(0, 3), (7, 11)]
    assert all(np.isfinite(s["peak_probability"]) for s in segs)
    assert fault_segments(np.full((10, 1), np.nan), ["x"], 0.5) == []


def test_per_fault_thresholds_and_order():
    T = 15
    hips = np.zeros(T)
    knees = np.zeros(T)
    hips[6:12] = 0.45  # above hips' threshold 0.4
    knees[2:9] = 0.45  # below knees' threshold 0.5 ...
    knees[6:9] = 0.55  # ... except here
    skis = np.zeros(T)
    skis[6:10] = 0.9
    segs = fault_segments(probs_from(hips, knees, skis), ["bent_hips", "bent_knees", "crossed_skis"], [0.4, 0.5, 0.5])
    assert [(s["type"], s["start_frame"], s["end_frame"]) for s in segs] == [
        ("bent_hips", 6, 11), ("bent_knees", 6, 8), ("crossed_skis", 6, 9)]  # same start -> by type


def test_run_at_the_end_and_exact_min_frames():
    a = np.zeros(10)
    a[7:] = 0.7  # 3 frames touching the end
    assert fault_segments(a[:, None], ["x"], 0.5) == [
        {"type": "x", "start_frame": 7, "end_frame": 9, "peak_probability": pytest.approx(0.7)}]
    assert fault_segments(a[:, None], ["x"], 0.5, min_frames=4) == []


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        fault_segments(np.zeros((5, 2)), ["only_one"], 0.5)
