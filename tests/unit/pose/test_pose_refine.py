"""Refiners on synthetic tracks with a known truth."""
from __future__ import annotations

import numpy as np
import pytest

from services.pose.refine import IdentityRefiner, OneEuroRefiner, Refiner, make_refiner


def noisy_track(t_len: int = 150, fps: float = 30.0, noise_px: float = 3.0, seed: int = 0):
    """33 joints moving on slow smooth paths (walking-speed scale) plus Gaussian pixel noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(t_len)[:, None] / fps  # [T, 1]
    phase = rng.uniform(0, 2 * np.pi, 33)[None]  # [1, 33]
    truth = np.stack([300 + 40 * np.sin(2 * np.pi * 0.5 * t + phase) + 60 * t,
                      200 + 25 * np.cos(2 * np.pi * 0.4 * t + phase)], axis=-1)  # [T, 33, 2]
    kp = np.concatenate([truth + rng.normal(0, noise_px, truth.shape), rng.uniform(0.5, 1, (t_len, 33, 1))], axis=-1)
    return kp.astype(np.float32), truth  # [T, 33, 3], [T, 33, 2]


def jitter(xy: np.ndarray) -> float:
    """Mean magnitude of the frame-to-frame acceleration (second difference), px."""
    return float(np.nanmean(np.abs(np.diff(xy, n=2, axis=0))))


def test_one_euro_reduces_jitter_and_error():
    kp, truth = noisy_track()
    present = np.ones(len(kp), bool)
    out = OneEuroRefiner(freq_hz=30.0).refine(kp, present, [None] * len(kp))
    assert out.shape == kp.shape and out.dtype == kp.dtype
    raw_j, ref_j = jitter(kp[..., :2]), jitter(out[..., :2])
    raw_e, ref_e = (np.abs(kp[..., :2] - truth).mean(), np.abs(out[..., :2] - truth).mean())
    print(f"\njitter raw {raw_j:.2f} px -> one_euro {ref_j:.2f} px; mean error {raw_e:.2f} -> {ref_e:.2f} px")
    assert ref_j < 0.7 * raw_j
    assert ref_e < raw_e
    np.testing.assert_array_equal(out[..., 2], kp[..., 2])  # confidence passes through


def test_one_euro_passes_nan_gaps():
    kp, _ = noisy_track()
    present = np.ones(len(kp), bool)
    present[40:45] = False
    kp[40:45] = np.nan  # absent frames
    kp[90, 7, :2] = np.nan  # one joint missing in one frame
    out = OneEuroRefiner().refine(kp, present, [None] * len(kp))
    nan_in, nan_out = np.isnan(kp), np.isnan(out)
    np.testing.assert_array_equal(nan_in, nan_out)  # NaN exactly where the input had NaN
    # the filter restarts after a gap: the first sample is taken as is, not pulled toward the past
    np.testing.assert_allclose(out[45, :, :2], kp[45, :, :2])
    np.testing.assert_allclose(out[91, 7, :2], kp[91, 7, :2])


def test_one_euro_fast_motion_has_little_lag():
    # constant 600 px/s motion: the speed term opens the cutoff, so the lag stays a few px
    t = np.arange(60, dtype=np.float64)
    kp = np.zeros((60, 33, 3), np.float32)
    kp[..., 0] = (20 * t)[:, None]
    kp[..., 1] = np.linspace(0, 100, 33)[None]  # a 100 px tall "person": size 50 px
    kp[..., 2] = 1
    out = OneEuroRefiner(freq_hz=30.0).refine(kp, np.ones(60, bool), [None] * 60)
    slow = OneEuroRefiner(freq_hz=30.0, beta=0.0).refine(kp, np.ones(60, bool), [None] * 60)
    lag, lag_slow = np.abs(out[-1, 0, 0] - kp[-1, 0, 0]), np.abs(slow[-1, 0, 0] - kp[-1, 0, 0])
    assert lag < 0.25 * lag_slow


def test_identity_and_factory():
    kp, _ = noisy_track(10)
    ident = make_refiner("none")
    assert isinstance(ident, IdentityRefiner) and isinstance(ident, Refiner) and ident.name == "none"
    assert ident.refine(kp, np.ones(10, bool), [None] * 10) is kp
    one = make_refiner("one_euro", freq_hz=25.0)
    assert isinstance(one, OneEuroRefiner) and one.freq_hz == 25.0 and isinstance(one, Refiner)
    with pytest.raises(ValueError, match="none, one_euro, strn"):
        make_refiner("kalman")
