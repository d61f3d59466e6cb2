"""BlazePose on real media: messi5.jpg (one large person) and vtest.avi (small walking people)."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from services.pose.blazepose import PoseSequence, crop_to_canvas, square_crop
from services.pose.lab.eval_swaps import NAVY_KEYS

FIRST, LAST = min(NAVY_KEYS), max(NAVY_KEYS)   # the navy-jacket walker's hand-labelled span (conftest.py navy_walker)

DATA = "/usr/share/doc/opencv-doc/examples/data"
VTEST, MESSI = f"{DATA}/vtest.avi", f"{DATA}/messi5.jpg"
needs_media = pytest.mark.skipif(not (os.path.exists(VTEST) and os.path.exists(MESSI)), reason="apt-get install opencv-doc")

@pytest.mark.parametrize("canvas", [120, 30])  # upscaled (x2) and downscaled (x0.5) paths
def test_crop_geometry_maps_original_pixels_to_canvas(canvas):
    img = np.zeros((100, 200, 3), np.uint8)
    img[8:12, 188:192] = 255  # a 4x4 blob centred on (190, 10) near the top-right corner
    x0, y0, side = square_crop(np.array([170.0, 0.0, 30.0, 20.0]), margin=0.5)  # box touches two borders
    assert side == pytest.approx(60.0) and (x0, y0) == pytest.approx((155.0, -20.0))
    out, (rx0, ry0, rside) = crop_to_canvas(img, x0, y0, side, canvas)
    assert out.shape == (canvas, canvas, 3)
    s = canvas / rside
    g = out[..., 0].astype(float)
    v, u = (np.indices(g.shape) + 0.5) * g / g.sum()  # intensity centroid, continuous coordinates
    assert abs(u.sum() / s + rx0 - 190) < 0.3 and abs(v.sum() / s + ry0 - 10) < 0.3
    pad = int(-ry0 * s)  # rows above the image are black padding
    assert out[: pad - 1].max() == 0 and out[:, int((200 - rx0) * s) + 1:].max() == 0


@needs_media
def test_messi_whole_frame(estimator):
    img = cv2.imread(MESSI)
    h, w = img.shape[:2]
    seq = estimator.estimate_frames([img])
    assert isinstance(seq, PoseSequence) and len(seq) == 1 and seq.present[0]
    assert seq.keypoints_px.shape == (1, 33, 3) and seq.keypoints_px.dtype == np.float32
    kp = seq.keypoints_px[0]
    vis = kp[:, 2] > 0.5
    assert vis.sum() >= 10
    assert np.all((kp[vis, 0] >= 0) & (kp[vis, 0] < w) & (kp[vis, 1] >= 0) & (kp[vis, 1] < h))
    assert np.isfinite(seq.world_m[0]).all() and np.abs(seq.world_m[0]).max() < 2.0  # metres around the hips


@needs_media
def test_crops_find_the_small_walker_where_whole_frames_do_not(estimator, navy_walker):
    frames, boxes = navy_walker
    crops = estimator.estimate_sequence(frames, boxes)
    whole = estimator.estimate_frames(frames)
    n = len(frames)
    print(f"\nvtest frames {FIRST}-{LAST}: pose on crops {crops.present.sum()}/{n}, whole frames {whole.present.sum()}/{n}")
    assert crops.present.sum() >= 0.9 * n
    assert crops.present.sum() > whole.present.sum()
    # keypoints come back in original pixels, on the person: inside the box grown by 25 %
    near = []
    for kp, box, ok in zip(crops.keypoints_px, boxes, crops.present):
        if ok:
            x, y, w, h = box
            m = 0.25 * max(w, h)
            inside = (kp[:, 0] > x - m) & (kp[:, 0] < x + w + m) & (kp[:, 1] > y - m) & (kp[:, 1] < y + h + m)
            near.append(inside.mean())
    assert np.mean(np.array(near) >= 0.9) >= 0.9
    # the absent-pose contract: NaN rows exactly where present is False
    assert np.isnan(crops.keypoints_px[~crops.present]).all() and np.isfinite(crops.keypoints_px[crops.present]).all()


@needs_media
def test_none_box_means_absent_and_state_does_not_leak(estimator, navy_walker):
    frames, boxes = navy_walker
    frames, boxes = frames[:8], list(boxes[:8])
    boxes[3] = None
    a = estimator.estimate_sequence(frames, boxes)
    assert not a.present[3] and np.isnan(a.keypoints_px[3]).all() and np.isnan(a.world_m[3]).all()
    assert a.present[[0, 1, 2, 4, 5, 6, 7]].all()
    # a different sequence in between, then the same input again: identical output (fresh state)
    estimator.estimate_frames([cv2.imread(MESSI)])
    b = estimator.estimate_sequence(frames, boxes)
    np.testing.assert_array_equal(a.present, b.present)
    np.testing.assert_allclose(a.keypoints_px, b.keypoints_px, atol=1e-3)


def test_length_mismatch_is_an_error(estimator):
    with pytest.raises(ValueError):
        estimator.estimate_sequence([np.zeros((8, 8, 3), np.uint8)], [])


def test_all_none_boxes_give_an_empty_sequence(estimator):
    seq = estimator.estimate_sequence([np.zeros((64, 64, 3), np.uint8)] * 3, [None, None, np.array([0, 0, 0, 0])])
    assert seq.keypoints_px.shape == (3, 33, 3) and not seq.present.any()


@needs_media
def test_messi_crop_agrees_with_whole_frame(estimator):
    # large person: the crop is downscaled to the canvas; both paths must land on the same pixels
    img = cv2.imread(MESSI)
    whole = estimator.estimate_frames([img]).keypoints_px[0]
    ok = whole[:, 2] > 0.5
    lo, hi = whole[ok, :2].min(axis=0), whole[ok, :2].max(axis=0)
    box = np.array([*lo, *(hi - lo)])
    crop = estimator.estimate_sequence([img], [box]).keypoints_px[0]
    err = np.linalg.norm(crop[ok, :2] - whole[ok, :2], axis=1)
    print(f"\nmessi: crop vs whole-frame keypoints, median {np.median(err):.1f} px (person {hi[1] - lo[1]:.0f} px tall)")
    assert np.median(err) < 0.05 * max(hi - lo)


# ───────────────────────── rotated athletes (flips) ─────────────────────────
@pytest.mark.parametrize("up", [(0, -1), (1, 0), (0, 1), (-1, 0), (0.3, 0.8)])
def test_turning_a_crop_by_minus_the_tilt_makes_the_body_upright(up):
    from services.pose.blazepose import tilt_deg

    m = cv2.getRotationMatrix2D((0, 0), -tilt_deg(np.array(up, float)), 1.0)
    v = m[:, :2] @ np.array(up, float)
    assert v / np.linalg.norm(v) == pytest.approx([0, -1], abs=1e-9)


def test_upright_turns_try_the_likeliest_first():
    from services.pose.blazepose import upright_turns

    assert upright_turns(None) == [180, 90, -90]
    assert upright_turns(np.array([0.0, 1.0]))[0] == 180       # last seen upside down
    assert upright_turns(np.array([1.0, 0.1]))[0] == 90         # lying toward the right


def test_a_rotating_athlete_keeps_a_pose_when_crops_are_turned_upright():
    """Real frames of an athlete turned 20 deg more every frame (services/pose/lab/eval_rotation.py):
    without alignment BlazePose loses him or fits a wrong skeleton on many frames."""
    from services.pose.lab.eval_rotation import DEFAULT_VIDEO, run

    if not DEFAULT_VIDEO.exists():
        pytest.fail(f"{DEFAULT_VIDEO} missing: scripts/setup.sh installs the Sports2D demo clip")
    rows = {r["align_rotated"]: r for r in run(steps=(20.0,))["rows"]}
    assert rows[True]["coverage"] == 1.0 and rows[True]["pck@0.2"] >= 0.85
    assert rows[True]["pck@0.2"] >= rows[False]["pck@0.2"] + 0.1
    assert rows[True]["pck@0.2_inverted"] >= 0.85, "upside down is where it matters"
