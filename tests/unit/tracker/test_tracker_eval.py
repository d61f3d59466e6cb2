"""Long-term tracking evaluation: the VOT-LT measures on hand-computed cases, the built evaluation
set's ground truth, and the full tracker (verification + re-detection) against the plain one."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from services.tracker.lab.evaluation import (
    Track,
    plain_config,
    pr_curve,
    run_tracker,
    thresholds_from,
    vot_lt,
)

DATA = "/usr/share/doc/opencv-doc/examples/data"
needs_media = pytest.mark.skipif(not os.path.exists(f"{DATA}/vtest.avi"), reason="apt-get install opencv-doc")

B = np.array([0, 0, 10, 10], float)          # the target
HALF = np.array([0, 0, 10, 5], float)        # IoU 0.5 with B
ELSEWHERE = np.array([50, 50, 10, 10], float)


# ------------------------------------------------------------------ the measures, by hand

def test_precision_recall_f_by_hand_with_absence_and_confidence():
    # frames: hit (IoU 1), half (IoU 0.5), a box while the target is absent (low confidence),
    # target visible but not reported
    gt = [B, B, None, B]
    pred = [B, HALF, ELSEWHERE, None]
    conf = [0.9, 0.9, 0.2, 0.0]
    pr, re = pr_curve(pred, conf, gt, [-math.inf, 0.5, 0.95])
    # tau=-inf: 3 reported frames, overlaps 1, .5, 0 -> Pr = 1.5/3; 3 visible frames -> Re = 1.5/3
    # tau=0.5: the absent-frame box drops out -> Pr = 1.5/2; Re unchanged
    # tau=0.95: nothing reported -> Pr = 1, Re = 0 (VOT toolkit convention)
    np.testing.assert_allclose(pr, [0.5, 0.75, 1.0])
    np.testing.assert_allclose(re, [0.5, 0.5, 0.0])
    s = vot_lt([Track("t", pred, conf, gt)])
    # F = max(2*.5*.5/1, 2*.75*.5/1.25, 0) = 0.6, at the threshold 0.9 (the scores are the grid)
    assert s == {"precision": 0.75, "recall": 0.5, "f_score": 0.6, "threshold": 0.9}


def test_reporting_absence_is_what_separates_long_term_trackers():
    gt = [B, B, None, None, B]
    perfect = vot_lt([Track("p", [B, B, None, None, B], [1.0, 1.0, 0.0, 0.0, 1.0], gt)])
    assert perfect["f_score"] == 1.0 and perfect["precision"] == 1.0 and perfect["recall"] == 1.0
    # same boxes, but a box on something else while the target is away: precision 3/5
    blind = vot_lt([Track("b", [B, B, ELSEWHERE, ELSEWHERE, B], [1.0] * 5, gt)])
    assert blind["precision"] == 0.6 and blind["recall"] == 1.0 and blind["f_score"] == 0.75
    # never reporting anything: precision 1 by convention, recall 0, F 0
    mute = vot_lt([Track("m", [None] * 5, [0.0] * 5, gt)])
    assert mute["f_score"] == 0.0 and mute["recall"] == 0.0


def test_sequences_are_averaged_before_f_is_maximised():
    gt = [B, B]
    good = Track("good", [B, B], [1.0, 1.0], gt)              # Pr = Re = 1 at every threshold
    weak = Track("weak", [HALF, HALF], [0.5, 0.5], gt)        # Pr = Re = .5 when counted
    # tau <= 0.5: Pr = Re = (1 + .5)/2 = .75 -> F .75;  tau = 1: weak counts nothing: Pr (1+1)/2 = 1,
    # Re (1+0)/2 = .5 -> F .667. Max: .75 at tau .5.
    assert vot_lt([good, weak]) == {"precision": 0.75, "recall": 0.75, "f_score": 0.75, "threshold": 0.5}
    np.testing.assert_array_equal(thresholds_from([0.5, 1.0, 0.5]), [math.inf, 1.0, 0.5, 0.5, -math.inf])
    with pytest.raises(ValueError):
        pr_curve([B], [1.0], [None], [0.0])                 # target never visible: recall undefined


# ------------------------------------------------------------------ the evaluation set

@needs_media
def test_sprites_are_real_walk_cycles_cut_to_their_masks(sprites):
    from lab import walkers

    assert set(sprites) == set(walkers.SPRITES)
    for name, s in sprites.items():
        assert len(s) >= 20, name                                   # a walk cycle, not one cut-out
        for p, m in zip(s.patches, s.masks):
            assert p.shape[:2] == m.shape and m.dtype == bool
            assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()   # cut to the mask's bounds
            assert 50 <= m.shape[0] <= 160 and 0.15 <= m.shape[1] / m.shape[0] <= 1.0
        # the legs move: the silhouettes of a walker differ from frame to frame
        h = min(m.shape[0] for m in s.masks)
        w = min(m.shape[1] for m in s.masks)
        assert not all(np.array_equal(s.masks[0][:h, :w], m[:h, :w]) for m in s.masks[1:])
    assert not set(walkers.TUNE_ATHLETES) & set(walkers.TEST_ATHLETES)


@needs_media
@pytest.mark.parametrize("case", ["occlusion", "exit_reentry", "crowd", "fast_motion"])
def test_ground_truth_is_the_bounds_of_the_visible_pasted_person(sprites, case):
    """Unblurred cases: the ground-truth box is exactly the bounds of the pixels the target changes
    (render with and without it); mostly hidden or outside the frame -> None."""
    from services.tracker.lab import evalset

    seq = evalset.make_sequence(case, 0, sprites)
    seen = hidden = 0
    for t in range(0, seq.n_frames, 4):
        frame, boxes, shares = seq.render(t)
        without, _, _ = seq.render(t, hide=(0,))
        changed = np.any(frame != without, axis=2)
        gt = boxes[0]
        if gt is None:
            hidden += 1
            assert shares[0] < evalset.ABSENT_BELOW
            continue
        seen += 1
        ys, xs = np.nonzero(changed)
        np.testing.assert_array_equal(gt, [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
        assert shares[0] >= evalset.ABSENT_BELOW
    assert seen > 10
    if case == "exit_reentry":
        assert hidden >= 5                                          # it does leave the frame


@needs_media
def test_unoccluded_box_equals_the_scaled_mask_placed_at_its_foot_point(sprites):
    from services.tracker.lab import evalset

    seq = evalset.make_sequence("fast_motion", 0, sprites)          # nobody crosses the athlete early on
    a = seq.actors[0]
    for t in (0, 1, 2):
        frame, boxes, shares = seq.render(t)
        x0, y0, colour, alpha, area = seq._layer(a, t)
        ys, xs = np.nonzero(alpha >= 0.5)
        np.testing.assert_array_equal(boxes[0], [x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1,
                                                 ys.max() - ys.min() + 1])
        assert shares[0] == 1.0
        # the person stands on the foot point (+-2 px: rounding, the resized mask's edge), as tall
        # as asked (+-10%: the walk cycle's frames differ in height)
        fx, fy = a.foot[t] - seq.camera[t]                          # world -> frame pixels
        assert abs(boxes[0][1] + boxes[0][3] - fy) <= 2.0
        assert abs(boxes[0][0] + boxes[0][2] / 2 - fx) <= 0.15 * boxes[0][2]
        assert abs(boxes[0][3] / a.height[t] - 1) <= 0.1


@needs_media
def test_sequences_are_deterministic_and_split_by_athlete(sprites):
    from services.tracker.lab import evalset

    a = evalset.make_sequence("crowd", 100, sprites)
    b = evalset.make_sequence("crowd", 100, sprites)
    fa, ga, _ = a.render(30)
    fb, gb, _ = b.render(30)
    assert np.array_equal(fa, fb) and all(np.array_equal(x, y) for x, y in zip(ga, gb) if x is not None)
    for seed in evalset.SPLITS["test"]:
        assert evalset.make_sequence("occlusion", seed, sprites).actors[0].sprite in evalset.TEST_ATHLETES
    for seed in evalset.SPLITS["tune"]:
        assert evalset.make_sequence("occlusion", seed, sprites).actors[0].sprite in evalset.TUNE_ATHLETES


# ------------------------------------------------------------------ full vs plain on a hard case

@needs_media
def test_full_tracker_reports_the_exit_and_finds_the_athlete_again(sprites):
    """The athlete walks out of the frame for ~38 frames while two people stay in view, then comes
    back: the plain tracker keeps a box on someone or something; the full one says "absent" and
    re-detects the athlete."""
    from services.tracker.config import TrackerConfig
    from services.tracker.detector import PersonDetector
    from services.tracker.lab import evalset
    from services.tracker.lab.evaluation import overlaps

    seq = evalset.make_sequence("exit_reentry", 1, sprites)
    rendered = list(seq)
    gt = [g for _, g in rendered]
    absent = [t for t, g in enumerate(gt) if g is None]
    assert len(absent) >= 20
    detector = PersonDetector()
    plain = run_tracker(seq, plain_config(), detector, rendered)
    full = run_tracker(seq, TrackerConfig(), detector, rendered)
    f_plain, f_full = vot_lt([plain])["f_score"], vot_lt([full])["f_score"]
    assert f_full >= f_plain + 0.15, (f_plain, f_full)
    # the full tracker reports the absence...
    assert np.mean([full.boxes[t] is None for t in absent]) >= 0.9
    # ...and is back on the athlete soon after the re-entry
    ov = overlaps(full.boxes, gt)
    back = absent[-1] + 1
    assert np.mean(ov[back + 15:] > 0.3) >= 0.7
    assert full.states.count("redetected") >= 1
