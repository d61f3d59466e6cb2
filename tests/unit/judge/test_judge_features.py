"""Judge features: known angles on hand-made poses, invariances, missing joints."""
from __future__ import annotations

import numpy as np
import pytest

from services.judge import synth
from shared.features import (
    ANGLE_NAMES, FEATURE_INDEX as FI, FEATURE_NAMES, PAPER_FEATURES, frame_features, joint_angles_deg,
)
from shared.skeleton import LANDMARK_INDEX as LI

AI = {n: i for i, n in enumerate(ANGLE_NAMES)}


def pose(**pts: tuple[float, float]) -> np.ndarray:
    """[1,33,3] pose: named joints at the given pixels (confidence 1), everything else NaN."""
    kps = np.full((1, 33, 3), np.nan)
    for name, (x, y) in pts.items():
        kps[0, LI[name]] = (x, y, 1.0)
    return kps


def standing(**over: tuple[float, float]) -> np.ndarray:
    """Front-facing standing figure (image y down), joints overridable."""
    pts = dict(
        left_shoulder=(120, 100), right_shoulder=(80, 100), left_hip=(110, 200), right_hip=(90, 200),
        left_knee=(110, 300), right_knee=(90, 300), left_ankle=(110, 400), right_ankle=(90, 400),
        left_heel=(110, 410), right_heel=(90, 410), left_foot_index=(110, 440), right_foot_index=(90, 440),
        left_elbow=(125, 170), right_elbow=(75, 170), left_wrist=(125, 240), right_wrist=(75, 240),
    )
    pts.update(over)
    return pose(**pts)


def test_feature_names_cover_paper_table():
    assert PAPER_FEATURES == FEATURE_NAMES[:8]
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert frame_features(standing()).shape == (1, len(FEATURE_NAMES))
    assert joint_angles_deg(standing()).shape == (1, len(ANGLE_NAMES))


def test_straight_standing_pose_values():
    f = frame_features(standing())[0]
    a = joint_angles_deg(standing())[0]
    assert f[FI["cos_knee_l"]] == pytest.approx(1.0)
    assert f[FI["cos_hip_flex_r"]] == pytest.approx(1.0, abs=0.02)
    assert f[FI["cos_thigh_split"]] == pytest.approx(-1.0)  # legs parallel
    assert f[FI["cos_skis"]] == pytest.approx(1.0)  # skis parallel
    assert f[FI["cos_trunk_vertical"]] == pytest.approx(1.0)
    assert a[AI["knee_l"]] == pytest.approx(0.0, abs=1e-6)
    assert a[AI["trunk"]] == pytest.approx(0.0, abs=1e-6)
    assert f[FI["hip_above_knee"]] == pytest.approx(1.0)  # hips one shin length above the knees


def test_right_angle_knee_and_hip():
    # knee bent 90 deg: thigh down, shin pointing forward (+x)
    kps = standing(left_knee=(110, 300), left_ankle=(210, 300))
    f, a = frame_features(kps)[0], joint_angles_deg(kps)[0]
    assert f[FI["cos_knee_l"]] == pytest.approx(0.0, abs=1e-9)
    assert a[AI["knee_l"]] == pytest.approx(90.0)
    assert a[AI["knee_r"]] == pytest.approx(0.0, abs=1e-6)
    # hip flexed 90 deg: thigh horizontal under an upright trunk
    kps = standing(right_shoulder=(90, 100), right_knee=(190, 200), right_ankle=(190, 300))
    f, a = frame_features(kps)[0], joint_angles_deg(kps)[0]
    assert f[FI["cos_hip_flex_r"]] == pytest.approx(0.0, abs=1e-9)
    assert a[AI["hip_r"]] == pytest.approx(90.0)
    assert a[AI["knee_r"]] == pytest.approx(90.0)


def test_crossed_skis_and_elbow():
    kps = standing(right_heel=(80, 420), right_foot_index=(110, 450))  # right ski turned 45 deg
    a = joint_angles_deg(kps)[0]
    assert a[AI["skis"]] == pytest.approx(45.0)
    kps = standing(left_elbow=(120, 170), left_wrist=(190, 170))  # forearm horizontal
    assert joint_angles_deg(kps)[0][AI["elbow_l"]] == pytest.approx(90.0)


def test_body_line_sign_sagging_vs_piked():
    # horizontal plank seen from the side, head to the right; image y grows downward
    line = dict(left_shoulder=(400, 200), right_shoulder=(400, 200), left_ankle=(100, 200), right_ankle=(100, 200))
    sag = pose(left_hip=(250, 240), right_hip=(250, 240), **line)
    pike = pose(left_hip=(250, 160), right_hip=(250, 160), **line)
    f_sag, f_pike = frame_features(sag)[0], frame_features(pike)[0]
    assert f_sag[FI["body_line_offset"]] > 0.1 and f_pike[FI["body_line_offset"]] < -0.1
    b_sag, b_pike = joint_angles_deg(sag)[0][AI["body_line"]], joint_angles_deg(pike)[0][AI["body_line"]]
    expected = 2 * np.degrees(np.arctan(40 / 150))
    assert b_sag == pytest.approx(-expected) and b_pike == pytest.approx(expected)


def test_knees_caving_ratio():
    normal = frame_features(standing())[0][FI["knee_width_ratio"]]
    caved = frame_features(standing(left_knee=(103, 300), right_knee=(97, 300)))[0][FI["knee_width_ratio"]]
    assert normal == pytest.approx(1.0) and caved == pytest.approx(0.3)


def test_invariant_to_translation_and_scale():
    clip = synth.generate("ski_aerials", 3)  # noisy, with dropped joints and frames
    kps = clip.keypoints.astype(np.float64)
    moved = kps.copy()
    moved[..., :2] = kps[..., :2] * 2.7 + np.array([-350.0, 1234.0])
    f0, f1 = frame_features(kps), frame_features(moved)
    assert np.isnan(f0).any()  # the clip really has missing data
    np.testing.assert_array_equal(np.isnan(f0), np.isnan(f1))
    np.testing.assert_allclose(f0, f1, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(joint_angles_deg(kps), joint_angles_deg(moved), atol=1e-6, equal_nan=True)


def test_paper_features_invariant_to_in_plane_rotation():
    kps = synth.generate("ski_aerials", 4, clean=True).keypoints.astype(np.float64)
    r = np.radians(130)
    R = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    rot = kps.copy()
    rot[..., :2] = kps[..., :2] @ R.T
    idx = [FI[n] for n in PAPER_FEATURES]
    np.testing.assert_allclose(frame_features(kps)[:, idx], frame_features(rot)[:, idx], atol=1e-9)


def test_missing_and_low_confidence_joints_give_nan():
    kps = np.repeat(standing(), 3, axis=0)  # [3,33,3]
    kps[0, LI["left_knee"], 2] = 0.1  # below min_confidence
    kps[1] = np.nan  # no pose in this frame
    f, a = frame_features(kps), joint_angles_deg(kps)
    assert np.isnan(f[0, FI["cos_knee_l"]]) and np.isnan(f[0, FI["cos_hip_flex_l"]])
    assert np.isfinite(f[0, FI["cos_knee_r"]]) and np.isfinite(f[0, FI["cos_skis"]])
    assert np.isnan(a[0, AI["knee_l"]]) and np.isfinite(a[0, AI["knee_r"]])
    assert np.isnan(f[1]).all() and np.isnan(a[1]).all()
    assert np.isfinite(f[2, :8]).all()
    # a lower threshold accepts the weak knee
    assert np.isfinite(frame_features(kps, min_confidence=0.05)[0, FI["cos_knee_l"]])


def test_knee_width_undefined_in_side_view():
    kps = standing(left_ankle=(100, 400), right_ankle=(100.5, 400))  # ankles overlap
    assert np.isnan(frame_features(kps)[0, FI["knee_width_ratio"]])


def test_rejects_wrong_shape():
    with pytest.raises(ValueError):
        frame_features(np.zeros((5, 17, 3)))
