"""Exemplar retrieval: the right exemplar and the right moment of it."""
from __future__ import annotations

import numpy as np
import pytest

from services.judge import synth
from services.suggest.library import load_library
from services.suggest.retrieval import Exemplar, match_for, suggest
from shared.features import frame_features
from shared.skeleton import LANDMARK_INDEX as LI


@pytest.fixture(scope="module")
def exemplars() -> list[Exemplar]:
    return load_library()   # the shipped library the service serves


def by_id(exemplars, eid):
    return next(e for e in exemplars if e.id == eid)


def hip_height_px(kps: np.ndarray) -> np.ndarray:
    return -0.5 * (kps[:, LI["left_hip"], 1] + kps[:, LI["right_hip"], 1])  # image y down


def test_finds_the_exemplar_and_span_a_segment_came_from(exemplars):
    ex = by_id(exemplars, "squat_oblique")
    rng = np.random.default_rng(0)
    seg = ex.features[30:56] + rng.normal(0, 0.02, ex.features[30:56].shape)
    seg[::5, 2] = np.nan  # some unmeasured values
    res = suggest(seg, exemplars, k=3)
    assert len(res) == 3
    top = res[0]
    assert top["exemplar_id"] == "squat_oblique"
    assert abs(top["start_s"] - 30 / ex.fps) <= 3 / ex.fps
    assert top["end_s"] - top["start_s"] == pytest.approx(26 / ex.fps, abs=0.35)
    assert 0.8 < top["similarity"] <= 1.0
    sims = [r["similarity"] for r in res]
    assert sims == sorted(sims, reverse=True) and all(0.0 <= s <= 1.0 for s in sims)


def bottom_segment(sport: str, seed: int, fault_amp: float) -> tuple[np.ndarray, float]:
    """Features of +-8 frames around the first bottom of another (noisy) athlete's repetition."""
    clip = synth.generate(sport, seed, faults={"shallow_depth": fault_amp})
    joint = "left_hip" if sport == "squat" else "left_shoulder"
    y = clip.world[:, LI[joint], 1]
    b = int(np.argmin(y[: len(y) // 2 + 10]))
    return frame_features(clip.keypoints)[max(b - 8, 0): b + 8], clip.fps


def reaches_bottom(res: dict, exemplars, sport: str) -> bool:
    """Does the matched span include the exemplar's bottom (lowest 15% of its hip/shoulder travel)?"""
    ex = by_id(exemplars, res["exemplar_id"])
    y = ex.keypoints[:, LI["left_hip" if sport == "squat" else "left_shoulder"], 1]  # image y: larger = lower
    depth = (y - y.min()) / (y.max() - y.min())
    return bool(depth[res["start_frame"]: res["end_frame"] + 1].max() > 0.85)


@pytest.mark.parametrize("sport", ["squat", "pushup"])
def test_good_depth_bottom_maps_to_an_exemplar_bottom(exemplars, sport):
    for seed in (300, 301, 302):
        seg, fps = bottom_segment(sport, seed, 100.0)  # another athlete, correct depth
        top = suggest(seg, exemplars, k=2, sport=sport, fps=fps)[0]
        assert top["sport"] == sport and reaches_bottom(top, exemplars, sport), (seed, top)


def test_shallow_bottom_shape_match_shows_a_full_depth_bottom(exemplars):
    assert match_for("shallow_depth") == "shape" and match_for("knees_caving") == "pose"
    shape_hits, pose_hits = [], []
    for seed in (300, 301, 302, 303):
        seg, fps = bottom_segment("squat", seed, 70.0)  # thighs stop 20 deg above parallel
        shape_hits.append(reaches_bottom(suggest(seg, exemplars, 1, "squat", fps, "shape")[0], exemplars, "squat"))
        pose_hits.append(reaches_bottom(suggest(seg, exemplars, 1, "squat", fps, "pose")[0], exemplars, "squat"))
    assert sum(shape_hits) >= 3, shape_hits
    assert sum(pose_hits) <= 1  # why "shape" exists: by pose, a shallow bottom looks like a good squat half-way down


def test_pushup_segment_ranks_pushups_first(exemplars):
    clip = synth.generate("pushup", 5, faults={"sagging_hips": 25.0})
    seg = frame_features(clip.keypoints)[20:50]
    res = suggest(seg, exemplars, k=2)
    assert [r["sport"] for r in res] == ["pushup", "pushup"]


def test_sport_filter_and_k(exemplars):
    seg = by_id(exemplars, "squat_front").features[10:30]
    res = suggest(seg, exemplars, k=5, sport="plank")
    assert {r["exemplar_id"] for r in res} == {"plank_forearm_side", "plank_high_side"}
    assert suggest(seg, exemplars, k=1)[0]["exemplar_id"].startswith("squat")
    assert suggest(np.full((10, seg.shape[1]), np.nan), exemplars) == []
    with pytest.raises(ValueError):
        suggest(seg[:, :5], exemplars)


def test_segment_longer_than_exemplar_is_handled(exemplars):
    ex = by_id(exemplars, "plank_high_side")
    seg = np.concatenate([ex.features, ex.features])  # twice the exemplar's length
    res = suggest(seg, [ex], k=1)
    assert res[0]["start_s"] >= 0 and res[0]["end_s"] <= len(ex.features) / ex.fps + 1e-9
