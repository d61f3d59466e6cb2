"""Box helpers every part of the tracker shares (services/tracker/geometry.py), and the multi-person
tracker's IoU matrix agreeing with them."""
from __future__ import annotations

import numpy as np

from services.tracker.geometry import box_at, centre, clip_box, crop, iou_xywh
from services.tracker.mot.association import iou_matrix


def test_iou_of_overlapping_disjoint_and_identical_boxes():
    a, b = np.array([0, 0, 10, 10.0]), np.array([5, 0, 10, 10.0])
    assert iou_xywh(a, b) == 50 / 150
    assert iou_xywh(a, np.array([20, 20, 5, 5.0])) == 0.0
    assert iou_xywh(a, a) == 1.0
    m = iou_matrix(np.array([a, a]), np.array([b, a]))
    assert np.allclose(m, [[50 / 150, 1.0], [50 / 150, 1.0]])


def test_clip_box_keeps_the_part_in_the_frame_and_drops_slivers():
    assert clip_box(np.array([-5, 10, 20, 30.0]), 100, 100).tolist() == [0, 10, 15, 30]
    assert clip_box(np.array([90, 90, 20, 20.0]), 100, 100).tolist() == [90, 90, 10, 10]
    assert clip_box(np.array([98, 10, 20, 30.0]), 100, 100) is None     # 2 px left: nothing to track


def test_box_at_is_the_inverse_of_centre_and_crop_stays_in_the_frame():
    b = box_at(np.array([50.0, 40.0]), 20, 30)
    assert b.tolist() == [40, 25, 20, 30] and centre(b).tolist() == [50, 40]
    frame = np.zeros((100, 80, 3), np.uint8)
    assert crop(frame, -10, -10, 30, 200).shape == (100, 30, 3)
    assert crop(frame, 90, 10, 120, 20).shape[1] == 0                   # off the frame: empty, no error
