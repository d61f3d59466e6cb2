"""Left/right swaps of the single-frame model are undone over time (services/pose/swaps.py)."""
from __future__ import annotations

import numpy as np

from services.pose.swaps import HALVES, fix_swaps, relabel_like, swap_half
from shared.skeleton import LANDMARK_INDEX as LI


def _track(yaw_deg: float = 40.0) -> np.ndarray:
    from services.judge.lab.bootstrap_temporal import exercise_clip

    clip, _ = exercise_clip("squat", np.random.default_rng([5, 0]), faults={}, fps=30, duration_s=6.0,
                            px_per_m=150.0, center_px=(320.0, 240.0), camera_yaw_deg=yaw_deg)
    return np.nan_to_num(clip.keypoints, nan=0.0)   # a complete track: every frame posed


def test_a_clean_track_is_left_alone():
    kps = _track()
    fixed, swapped = fix_swaps(kps)
    assert not swapped.any() and np.array_equal(fixed, kps)


def test_swaps_of_one_to_three_frames_are_undone_per_body_half():
    kps = _track()
    bad = kps.copy()
    upper, lower = HALVES["upper"], HALVES["lower"]
    for t in (20, 21, 22):
        bad[t] = swap_half(bad[t], lower)        # the legs, three frames
    bad[60] = swap_half(swap_half(bad[60], upper), lower)   # the whole body, one frame
    bad[100] = swap_half(bad[100], upper)        # the arms, one frame
    fixed, swapped = fix_swaps(bad)
    assert np.allclose(fixed, kps), "every injected swap undone, nothing else touched"
    assert swapped[[20, 21, 22], 1].all() and swapped[60].all() and swapped[100, 0]
    assert swapped.sum() == 6
    # the 3D landmarks follow the same relabelling
    world = relabel_like(bad, swapped)
    assert np.allclose(world, kps)
    k = LI["left_knee"]
    assert np.allclose(fixed[21, k], kps[21, k]) and not np.allclose(bad[21, k], kps[21, k])


def test_frames_without_a_pose_do_not_break_the_track():
    kps = _track()
    bad = kps.copy()
    bad[30:33] = np.nan                           # the athlete hidden for three frames
    bad[34] = swap_half(bad[34], HALVES["lower"])
    fixed, swapped = fix_swaps(bad)
    assert swapped[34, 1] and swapped.sum() == 1 and np.isnan(fixed[31]).all()
