"""Faults only while the exercise is performed, depth only at the bottom, and only from views that show it."""
from __future__ import annotations

import numpy as np
import pytest

from services.judge.activity import decide, estimate_view, rule_for, yaw_cosine
from services.judge.packs import load_pack
from services.judge.reps import primary_signal, segment
from services.judge.worker import judge_while_performing

FPS = 30.0


def _squat(yaw_deg: float = 10.0, seed: int = 97, duration_s: float = 8.0):
    from services.judge.lab.bootstrap_temporal import exercise_clip

    clip, _ = exercise_clip("squat", np.random.default_rng([seed, 0]), faults={}, fps=FPS, duration_s=duration_s,
                            px_per_m=150.0, center_px=(320.0, 240.0), camera_yaw_deg=yaw_deg)
    return clip.keypoints, clip.meta["reps"]


def _standing(kps: np.ndarray, T: int) -> np.ndarray:
    """The first (standing) pose of a squat clip held for T frames, with a little jitter."""
    rng = np.random.default_rng(1)
    out = np.repeat(kps[:1], T, axis=0).copy()
    out[..., :2] += rng.normal(0, 0.5, out[..., :2].shape)
    return out


def _decide(kps, sport="squat"):
    reps = [(r.start, r.end, r.bottom) for r in segment(kps, sport, FPS)]
    return decide(kps, FPS, rule_for(sport), reps, primary_signal(kps, sport))


def test_a_squatting_athlete_is_performing_and_judged_at_the_bottom_only():
    kps, n_reps = _squat()
    act = _decide(kps)
    assert act.finding is None
    assert act.performing.mean() > 0.5, "most of a squat clip is repetitions"
    assert 0 < act.bottom.sum() < 0.5 * act.performing.sum(), "the bottom is a part of each repetition"
    assert not (act.bottom & ~act.performing).any()


def test_a_person_walking_across_the_frame_gets_a_finding_and_no_faults():
    kps, _ = _squat()
    stand = _standing(kps, 150)
    walk = stand.copy()
    walk[..., 0] += np.linspace(0, 600, len(walk))[:, None]      # ~2.7 torso lengths per second
    act = _decide(walk)
    assert not act.performing.any()
    assert act.finding.startswith("no squat repetitions found") and "moves across the frame" in act.finding

    pack = load_pack("squat")
    judged = judge_while_performing("squat", pack, walk, FPS, pack.judge(walk, FPS))
    assert np.isnan(judged["probs"]).all() and judged["frames_performing"] == 0
    assert set(judged["activity"]) == {"not_performing"}


def test_standing_still_is_not_a_squat():
    kps, _ = _squat()
    act = _decide(_standing(kps, 150))
    assert not act.performing.any()
    assert act.finding == "no squat repetitions found: the athlete stays in place without a repetitive movement"


def test_a_standing_person_is_not_a_plank():
    kps, _ = _squat()
    act = decide(_standing(kps, 150), FPS, rule_for("plank"))
    assert not act.performing.any() and "never horizontal" in act.finding


@pytest.mark.parametrize("yaw, view", [(0.0, "front"), (30.0, "front"), (60.0, "oblique"), (90.0, "side")])
def test_the_camera_view_is_estimated_from_the_pose(yaw, view):
    kps, _ = _squat(yaw_deg=yaw)
    views = estimate_view(kps, FPS)
    # most frames: the squat itself folds the torso, which the estimate must survive
    assert max(set(views), key=views.count) == view, (np.nanmedian(yaw_cosine(kps)), views[:5])


def test_knees_caving_is_not_judgeable_from_the_side_and_says_so():
    kps, _ = _squat(yaw_deg=90.0)
    pack = load_pack("squat")
    judged = judge_while_performing("squat", pack, kps, FPS, pack.judge(kps, FPS))
    j = list(pack.fault_ids).index("knees_caving")
    assert judged["frames_performing"] > 0
    assert np.isnan(judged["probs"][:, j]).all(), "no knees-caving verdict from a side view"
    runs = [n for n in judged["not_judgeable"] if n[0] == "knees_caving"]
    assert runs and all(n[3] == "side" and "front" in n[4] for n in runs)


def test_sports_without_a_repetition_rule_are_gated_by_the_class_agnostic_counter():
    """A lunge or curl pack has no primary angle in reps.py: shared/periodic.py finds the repetitions."""
    kps, n_reps = _squat()
    pack = load_pack("squat")   # any pack: the rule of the sport name decides the gating
    judged = judge_while_performing("lunge", pack, kps, FPS, pack.judge(kps, FPS))
    assert len(judged["counted_reps"]) == n_reps
    assert judged["finding"] is None and judged["frames_performing"] > 0.4 * len(kps)
    walk = _standing(kps, 150)
    walk[..., 0] += np.linspace(0, 600, len(walk))[:, None]
    judged = judge_while_performing("lunge", pack, walk, FPS, pack.judge(walk, FPS))
    assert judged["counted_reps"] == [] and judged["finding"].startswith("no lunges found")


def test_a_sport_without_a_rule_is_judged_on_every_posed_frame():
    kps, _ = _squat()
    walk = _standing(kps, 150)
    walk[..., 0] += np.linspace(0, 600, len(walk))[:, None]
    act = decide(walk, FPS, rule_for("tennis_serve"))   # a coach's own sport: no activity rule known
    assert act.performing.all() and act.finding is None
