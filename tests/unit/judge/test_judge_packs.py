"""Shipped sport packs: load, describe, and judge faulty vs correct synthetic athletes."""
from __future__ import annotations

import numpy as np
import pytest

from services.judge import synth
from services.judge.packs import PACKS_ROOT, available_packs, load_pack
from services.judge.segments import fault_segments
from shared.sports import PACK_SPECS

EXPECTED = {
    "ski_aerials": ("bent_hips", "crossed_skis", "bent_knees"),
    "squat": ("shallow_depth", "knees_caving"),
    "pushup": ("sagging_hips", "piked_hips", "shallow_depth"),
    "plank": ("sagging_hips", "piked_hips"),
}
# (sport, fault, amplitude, camera yaw or None = the pack's usual random view)
FAULTY = [
    ("ski_aerials", "bent_knees", 80.0, None),
    ("ski_aerials", "bent_hips", 80.0, None),
    ("ski_aerials", "crossed_skis", 60.0, 135.0),  # oblique: a crossing can hide in the line of sight from the side
    ("squat", "shallow_depth", 50.0, None),
    ("squat", "knees_caving", 35.0, None),
    ("pushup", "sagging_hips", 30.0, None),
    ("pushup", "piked_hips", 35.0, None),
    ("pushup", "shallow_depth", 45.0, None),
    ("plank", "sagging_hips", 30.0, None),
    ("plank", "piked_hips", 35.0, None),
]
SEEDS = (1000, 1001, 1002)


@pytest.fixture(scope="module")
def packs():
    # the shipped plank is trained on real labels (test_judge_realpacks.py); these synthetic-pose checks
    # concern the synthetic plank pack, kept in services/judge/packs_synthetic
    out = {s: load_pack(s) for s in available_packs()}
    out["plank"] = load_pack("plank", PACKS_ROOT.parent / "packs_synthetic")
    return out


def test_all_packs_shipped_and_described(packs):
    assert set(EXPECTED) <= set(packs)
    for name, ids in EXPECTED.items():
        p = packs[name]
        assert p.fault_ids == ids
        d = p.describe()
        assert d["name"] == name and d["title"] and d["model_version"].startswith(name)
        assert [f["id"] for f in d["faults"]] == list(ids)
        assert all(f["title"] and f["description"] for f in d["faults"])
        assert set(p.thresholds) == set(ids) and all(0 < t < 1 for t in p.thresholds.values())


def test_ski_pack_uses_exactly_the_paper_features(packs):
    assert packs["ski_aerials"].spec.input_names == PACK_SPECS["ski_aerials"].features
    assert len(packs["ski_aerials"].spec.features) == 8


@pytest.mark.parametrize("sport,fault,amp,yaw", FAULTY, ids=[f"{s}-{f}" for s, f, _, _ in FAULTY])
def test_flags_fault_but_not_correct_form(packs, sport, fault, amp, yaw):
    pack = packs[sport]
    j = pack.fault_ids.index(fault)
    hit, false_alarm = [], []
    for seed in SEEDS:
        bad = synth.generate(sport, seed, faults={fault: amp}, camera_yaw_deg=yaw)
        good = synth.generate(sport, seed + 50, faults={}, camera_yaw_deg=yaw)
        y = bad.labels[fault]
        assert y.any()
        hit.append(pack.flags(pack.judge(bad.keypoints, bad.fps))[y, j].mean())
        false_alarm.append(pack.flags(pack.judge(good.keypoints, good.fps))[:, j].mean())
    assert np.mean(hit) > 0.6, f"{fault} flagged on only {np.mean(hit):.0%} of its frames"
    assert np.mean(false_alarm) < 0.1, f"{fault} flagged on {np.mean(false_alarm):.0%} of correct frames"


def test_deep_bent_knees_becomes_a_segment(packs):
    pack = packs["ski_aerials"]
    clip = synth.generate("ski_aerials", 7, faults={"bent_knees": 90.0})
    probs = pack.judge(clip.keypoints, clip.fps)
    segs = [s for s in fault_segments(probs, pack.fault_ids, pack.threshold_list()) if s["type"] == "bent_knees"]
    truth = np.flatnonzero(clip.labels["bent_knees"])
    assert segs and segs[0]["peak_probability"] > 0.9
    overlap = [s for s in segs if s["start_frame"] <= truth[-1] and s["end_frame"] >= truth[0]]
    assert overlap, (segs, truth[[0, -1]])
    correct = synth.generate("ski_aerials", 8, faults={})
    probs = pack.judge(correct.keypoints, correct.fps)
    assert fault_segments(probs, pack.fault_ids, pack.threshold_list()) == []


def test_no_pose_frames_get_no_verdict(packs):
    pack = packs["squat"]
    clip = synth.generate("squat", 5, faults={}, clean=True)
    kps = clip.keypoints.copy()
    kps[10:13] = np.nan  # detector found nobody
    kps[20, :, 2] = 0.05  # a pose, but every joint below confidence
    probs = pack.judge(kps, clip.fps)
    assert probs.shape == (len(kps), 2)
    assert np.isnan(probs[[10, 11, 12, 20]]).all()
    rest = np.delete(probs, [10, 11, 12, 20], axis=0)
    assert np.isfinite(rest).all() and (rest >= 0).all() and (rest <= 1).all()
    assert np.isnan(pack.judge(np.full((4, 33, 3), np.nan))).all()


def test_unknown_pack_raises(tmp_path):
    assert available_packs(tmp_path) == []
    with pytest.raises(KeyError):
        load_pack("curling")
