"""The evaluation set's `exerciser` case: a real person warming up (cut out of the Sports2D demo
clip by BlazePose's segmentation, lab/exerciser.py) among walkers; its ground truth is exact and
its sequences deterministic, and it stays out of the default six cases."""
from __future__ import annotations

import os

import numpy as np
import pytest

from lab import exerciser

DATA = "/usr/share/doc/opencv-doc/examples/data"
needs_media = pytest.mark.skipif(not (os.path.exists(f"{DATA}/vtest.avi") and exerciser.CLIP.exists()),
                                 reason="apt-get install opencv-doc; scripts/setup.sh (Sports2D demo clip)")


@pytest.fixture(scope="module")
def lib(sprites):
    """The walkers plus the exerciser (built into the fixture's fresh cache by the first sequence)."""
    from services.tracker.lab import evalset

    evalset.make_sequence("exerciser", 0, sprites)
    assert exerciser.NAME in sprites
    return sprites


@needs_media
def test_the_exerciser_is_a_real_warm_up_anchored_on_the_ground_he_stands_on(lib):
    s = lib[exerciser.NAME]
    assert len(s) == len(exerciser.FRAMES) >= 40                # 4.7 s at 10 fps, every frame cut out
    ratios, airborne = [], 0
    for p, m in zip(s.patches, s.masks):
        assert p.shape[:2] == m.shape and m.dtype == bool
        assert np.flatnonzero(m.any(axis=1))[0] <= 1               # cut at his head
        assert 0.6 * s.height <= m.shape[0] <= 1.2 * s.height
        ratios.append(m.shape[1] / m.shape[0])
        airborne += not m[-1].any()                              # feet above the box top: a hop
    # jumping jacks: arms and legs spread (wide) and together (narrow); he hops
    assert max(ratios) > 0.8 and min(ratios) < 0.45
    assert airborne >= 3
    # whole masks, not background-subtraction holes: one component, mostly filled
    import cv2
    for m in s.masks[::6]:
        assert cv2.connectedComponents(m.astype(np.uint8))[0] == 2


@needs_media
@pytest.mark.parametrize("seed", [0, 2, 203])
def test_exerciser_ground_truth_is_the_bounds_of_his_visible_pixels(lib, seed):
    """The box is exactly the bounds of the pixels he changes (render with and without him); walkers
    pass in front of him, so some frames show him partly or mostly hidden."""
    from services.tracker.lab import evalset

    seq = evalset.make_sequence("exerciser", seed, lib)
    assert seq.actors[0].sprite == exerciser.NAME
    partial = 0
    for t in range(seq.n_frames):
        frame, boxes, shares = seq.render(t)
        gt = boxes[0]
        if gt is None:
            assert shares[0] < evalset.ABSENT_BELOW
            continue
        partial += shares[0] < 1.0
        if t % 3:
            continue
        without, _, _ = seq.render(t, hide=(0,))
        ys, xs = np.nonzero(np.any(frame != without, axis=2))
        np.testing.assert_array_equal(gt, [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    assert partial >= 3                                          # the walkers in front do cover him


@needs_media
def test_exerciser_sequences_are_deterministic_and_keep_the_split_scheme(lib):
    from lab import walkers
    from services.tracker.lab import evalset

    a, b = (evalset.make_sequence("exerciser", 101, lib) for _ in range(2))
    assert [x.sprite for x in a.actors] == [x.sprite for x in b.actors]
    for t in (0, 37, 99):
        fa, ba, _ = a.render(t)
        fb, bb, _ = b.render(t)
        assert np.array_equal(fa, fb)
        assert all((x is None and y is None) or np.array_equal(x, y) for x, y in zip(ba, bb))
    heights = {}
    for split, seeds in evalset.SPLITS.items():
        for seed in seeds:
            seq = evalset.make_sequence("exerciser", seed, lib)
            walkers_ = [x.sprite for x in seq.actors[1:]]
            assert 3 <= len(walkers_) <= 6 and len(set(walkers_)) == len(walkers_)
            if split == "disjoint":      # nobody and no scene of the tuning part
                assert set(walkers_) <= set(walkers.TEST_ATHLETES + evalset.UNSEEN_DISTRACTORS)
                assert seq.scene in evalset.DISJOINT_SCENES
            else:
                assert set(walkers_) <= set(walkers.DISTRACTORS) and seq.scene == "vtest"
            # he moves little: under half his height over the clip
            assert np.ptp(seq.actors[0].foot[:, 0]) < 0.5 * seq.actors[0].height[0]
            heights[seed] = float(seq.actors[0].height[0])
    # vtest scale and larger (seeds 2-3, 102-103, 202-203 are zoomed in)
    assert max(heights[s] for s in (0, 1, 100, 101, 200, 201)) < 110
    assert min(heights[s] for s in (2, 3, 102, 103, 202, 203)) > 150


def test_exerciser_is_asked_for_by_name_and_leaves_the_default_set_alone():
    from services.tracker.lab import evalset
    from services.tracker.lab.cli import _cases

    assert "exerciser" not in evalset.CASES and "exerciser" in evalset.ALL_CASES
    assert _cases("exerciser,crowd") == ("exerciser", "crowd")
    with pytest.raises(SystemExit):
        _cases("jumping")


@needs_media
def test_most_active_chooses_the_exerciser_among_walkers(lib):
    """Issue #15: a person warming up nearly in place while walkers cross the view. The detector's
    box on him hardly moves and misses him when he turns sideways; the multi-person tracker keeps
    him through the misses and `most_active` sees his limbs move (the moving pixels' bounds), so
    he is the athlete (before: a walker's longer track, "in 100% of frames")."""
    from services.tracker.detector import PersonDetector
    from services.tracker.geometry import iou_xywh
    from services.tracker.lab import evalset
    from services.tracker.mot import MotAthleteTracker

    seq = evalset.make_sequence("exerciser", 0, lib)
    tracker = MotAthleteTracker(detector=PersonDetector(), fps=10.0, policy="most_active", refine=False)
    gts = []
    for t in range(seq.n_frames):
        frame, boxes = seq.render(t)[:2]
        tracker.push(frame)
        gts.append(boxes[0])
    fts = tracker.finish()
    on = [iou_xywh(ft.bbox_px, g) >= 0.5 for ft, g in zip(fts, gts) if ft.bbox_px is not None and g is not None]
    assert len(on) >= 50 and np.mean(on) > 0.5, tracker.choice.reason
    assert "limbs" in tracker.choice.reason
