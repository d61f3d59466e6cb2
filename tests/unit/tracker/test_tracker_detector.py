"""Person detector: MediaPipe's SSD anchor layout, box decoding, weighted NMS, and real images."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from services.tracker.detector import (NUM_ANCHORS, PersonDetector, Tile, decode, iou_xyxy, ssd_anchors,
                                       tile_origins, weighted_nms)

DATA = "/usr/share/doc/opencv-doc/examples/data"
VTEST, BOX_PNG = f"{DATA}/vtest.avi", f"{DATA}/box.png"
needs_media = pytest.mark.skipif(not (os.path.exists(VTEST) and os.path.exists(BOX_PNG)),
                                 reason="apt-get install opencv-doc")

# The three people in vtest.avi's first frame (x, y, w, h px), read off the frame written to PNG.
FRAME0_PEOPLE = [(250, 218, 32, 90), (500, 157, 30, 78), (642, 238, 42, 84)]


def xywh_iou(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(iou_xyxy(np.r_[a[:2], a[:2] + a[2:]], np.r_[b[:2], b[:2] + b[2:]][None])[0])


# ------------------------------------------------------------------ synthetic: no model needed

def test_anchor_layout_matches_mediapipe_pose_detection_graph():
    a = ssd_anchors()                                   # (2254, 2) centres in [0,1]
    assert a.shape == (NUM_ANCHORS, 2)
    # stride 8: 28x28 cells x 2 anchors, cell by cell, row-major (y outer, x inner)
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[1], a[0])              # 2 anchors share a cell
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[2 * 28], [0.5 / 28, 1.5 / 28])
    # stride 16 starts after 1568 anchors; the 3 stride-32 layers share 7x7 cells, 6 anchors each
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14])
    s32 = a[1568 + 392:]
    assert len(s32) == 7 * 7 * 6
    np.testing.assert_allclose(s32[:6], np.tile([0.5 / 7, 0.5 / 7], (6, 1)))
    np.testing.assert_allclose(s32[-1], [6.5 / 7, 6.5 / 7])


def test_decode_offsets_are_relative_to_anchor_in_input_pixels():
    anchors = np.array([[0.25, 0.75]], np.float32)
    raw = np.zeros((1, 12), np.float32)
    raw[0, :4] = [22.4, -11.2, 44.8, 89.6]              # x, y, w, h (x first: reverse_output_order)
    raw[0, 4:6] = [0.0, 22.4]                           # keypoint 0 (hip centre)
    boxes, kps, scores = decode(raw, np.array([0.0]), anchors)
    xc, yc, w, h = 0.35, 0.70, 0.2, 0.4
    np.testing.assert_allclose(boxes[0], [xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], atol=1e-6)
    np.testing.assert_allclose(kps[0, 0], [0.25, 0.85], atol=1e-6)
    np.testing.assert_allclose(scores, [0.5])          # sigmoid(0)
    _, _, s = decode(raw, np.array([1e4]), anchors)     # clipped at 100 before the sigmoid: no overflow
    assert np.isfinite(s).all() and s[0] == pytest.approx(1.0)


def test_weighted_nms_averages_overlapping_boxes_and_keeps_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.3, 0.6], np.float32)
    extra = np.array([[0.0], [4.0], [7.0]], np.float32)
    out = weighted_nms(boxes, scores, 0.3, extra)
    assert len(out) == 2
    (b0, s0, e0), (b1, s1, e1) = out
    assert s0 == pytest.approx(0.9) and s1 == pytest.approx(0.6)      # best first, top score kept
    np.testing.assert_allclose(b0, [0.25, 0, 10.25, 10], atol=1e-5)   # (0.9*0 + 0.3*1) / 1.2
    np.testing.assert_allclose(e0, [1.0], atol=1e-5)                  # keypoints averaged the same way
    np.testing.assert_allclose(b1, boxes[2])


def test_tiles_cover_the_whole_frame_with_overlap():
    tiles = tile_origins(768, 576, 192, 0.5)
    covered = np.zeros((576, 768), bool)
    for x, y in tiles:
        covered[int(y):int(y) + 192, int(x):int(x) + 192] = True
    assert covered.all()
    assert (0.0, 0.0) in tiles and (576.0, 384.0) in tiles


def test_tile_distance_is_zero_inside_and_euclidean_outside():
    t = Tile(100.0, 50.0, 192.0)
    assert t.distance(np.array([150.0, 100.0])) == 0.0
    assert t.distance(np.array([100.0 + 192 + 30, 100.0])) == pytest.approx(30.0)
    assert t.distance(np.array([70.0, 10.0])) == pytest.approx(50.0)        # 30 left, 40 above


# ------------------------------------------------------------------ the real model on real media

@pytest.fixture(scope="module")
def detector() -> PersonDetector:
    return PersonDetector()


def test_body_box_follows_the_body_axis(detector):
    # hip centre at (100, 100), body-circle point 50 px towards the head
    upright = np.array([[100, 100], [100, 50], [100, 70], [100, 40]], np.float32)
    length = 100 * detector.config.body_length_ratio          # 2r, calibrated to tight person boxes
    x, y, w, h = detector.body_box(upright)
    assert (y + h / 2, h) == pytest.approx((100, length)) and x + w / 2 == pytest.approx(100)
    assert w == pytest.approx(detector.config.body_width_ratio * length)
    lying = np.array([[100, 100], [150, 100], [130, 100], [160, 100]], np.float32)   # e.g. mid-flip
    x, y, w, h = detector.body_box(lying)
    assert (x + w / 2, w) == pytest.approx((100, length)) and h < w


@needs_media
def test_finds_the_three_small_people_in_vtest_first_frame(detector):
    ok, frame = cv2.VideoCapture(VTEST).read()
    assert ok
    dets = detector.detect(frame)
    assert len(dets) == len(FRAME0_PEOPLE), [d.bbox_px.round() for d in dets]   # no ghost boxes from large tiles
    for person in FRAME0_PEOPLE:
        best = max((xywh_iou(person, d.bbox_px) for d in dets), default=0.0)
        assert best > 0.4, f"person at {person} not found: {[d.bbox_px.round() for d in dets]}"
    # nobody on the empty lawn (lower half: cloth, tripod, grass)
    assert all(d.bbox_px[1] + d.bbox_px[3] / 2 < 350 for d in dets), [d.bbox_px.round() for d in dets]
    assert all(0.0 < d.score <= 1.0 for d in dets)


@needs_media
def test_detect_runs_only_the_selected_tiles(detector):
    ok, frame = cv2.VideoCapture(VTEST).read()
    assert ok
    tiles = detector.tiles(768, 576, person_height=85.0)
    assert len(tiles) == 35 and all(t.side == 192 for t in tiles)          # 1/3 of 576, no whole-frame pass
    man = np.array(FRAME0_PEOPLE[0], float)
    centre = man[:2] + man[2:] / 2

    def near(ts):
        return [t for t in ts if t.distance(centre) == 0.0]

    n0 = detector.passes
    dets = detector.detect(frame, person_height=85.0, select=near)
    assert detector.passes - n0 == len(near(tiles)) < len(tiles)
    assert any(xywh_iou(man, d.bbox_px) > 0.4 for d in dets)
    # the other two people are in none of those tiles
    assert not any(xywh_iou(p, d.bbox_px) > 0.4 for p in FRAME0_PEOPLE[1:] for d in dets)


@needs_media
def test_local_window_detection_finds_the_person_around_a_box(detector):
    ok, frame = cv2.VideoCapture(VTEST).read()
    dets = detector.detect_in_region(frame, np.array(FRAME0_PEOPLE[0], np.float32))
    assert any(xywh_iou(FRAME0_PEOPLE[0], d.bbox_px) > 0.4 for d in dets)
    empty = detector.detect_in_region(frame, np.array([300, 420, 40, 90], np.float32))   # grass
    assert empty == []


@needs_media
def test_no_person_in_an_image_without_people(detector):
    assert detector.detect(cv2.imread(BOX_PNG)) == []
