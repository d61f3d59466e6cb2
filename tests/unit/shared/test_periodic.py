"""Class-agnostic repetition counter (shared/periodic.py) on synthetic sine-driven poses and a real
MediaPipe stretch of the Exercise-Correction squat CSV."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from services.judge.datasets import exercise_correction_dir
from shared.periodic import count_repetitions
from shared.skeleton import LANDMARK_INDEX, NUM_LANDMARKS

FPS = 30.0
SQUAT_CSV = exercise_correction_dir() / "squat_stage_train.csv"


def squat_pose(depth: np.ndarray, torso_px: float = 100.0, x0: float = 320.0, y_ankle: float = 420.0) -> np.ndarray:
    """[T] squat depth 0 (standing) .. 1 (bottom) -> kps [T,33,3] side-ish view, ankles planted."""
    T = len(depth)
    P = np.full((T, NUM_LANDMARKS, 3), np.nan)
    d, s = depth, torso_px

    def put(name, x, y):
        P[:, LANDMARK_INDEX[name], 0], P[:, LANDMARK_INDEX[name], 1], P[:, LANDMARK_INDEX[name], 2] = x, y, 0.99

    hip_y = y_ankle - 1.8 * s + 0.7 * s * d            # the hips go down ...
    hip_x = x0 - 0.4 * s * d                            # ... and back
    knee_x, knee_y = x0 + 0.35 * s * d, y_ankle - 0.9 * s + 0.1 * s * d
    sh_x, sh_y = hip_x + 0.5 * s * d, hip_y - s * np.cos(0.5 * d)  # the trunk leans forward
    for side, dx in (("left", 8.0), ("right", -8.0)):
        put(f"{side}_ankle", x0 + dx, y_ankle)
        put(f"{side}_knee", knee_x + dx, knee_y)
        put(f"{side}_hip", hip_x + dx, hip_y)
        put(f"{side}_shoulder", sh_x + dx, sh_y)
        put(f"{side}_elbow", sh_x + dx + 0.5 * s * d, sh_y + 0.5 * s * (1 - d))  # arms go forward for balance
        put(f"{side}_wrist", sh_x + dx + 1.0 * s * d, sh_y + s * (1 - d))
    put("nose", sh_x + 0.1 * s, sh_y - 0.35 * s)
    return P


def sine_depth(n: int, period_s: float, rest_s: float = 1.0) -> np.ndarray:
    """n cycles of (1 - cos)/2 starting and ending at rest, with rest_s of standing either side; [T]."""
    t = np.arange(int(n * period_s * FPS)) / FPS
    return np.r_[np.zeros(int(rest_s * FPS)), (1 - np.cos(2 * np.pi * t / period_s)) / 2, np.zeros(int(rest_s * FPS))]


def noisy(P: np.ndarray, px: float = 1.5, seed: int = 0) -> np.ndarray:
    P = P.copy()
    P[..., :2] += np.random.default_rng(seed).normal(0, px, P[..., :2].shape)
    return P


@pytest.mark.parametrize("n,period_s", [(3, 1.2), (5, 2.0), (8, 1.5), (4, 3.5), (10, 0.8)])
def test_sine_cycles_counted_exactly(n, period_s):
    rc = count_repetitions(noisy(squat_pose(sine_depth(n, period_s))), FPS)
    assert rc.count == n, rc.finding
    assert rc.period_s == pytest.approx(period_s, rel=0.15)
    assert all(e > s for s, e in rc.reps)
    js = rc.to_json(FPS)
    assert set(js) == {"count", "reps", "period_s", "finding"} and len(js["reps"]) == n


def test_changing_tempo_and_pauses():
    d = np.r_[sine_depth(3, 1.0, 0.5), sine_depth(3, 2.5, 0.8)]  # fast, a pause, then slow
    assert count_repetitions(noisy(squat_pose(d)), FPS).count == 6


def test_partial_first_and_last_cycle_not_counted():
    # phase 0.75 -> 6.35 cycles: starts half-way up, ends most of the way down; full cycles 1-2 .. 5-6
    d = sine_depth(7, 1.5, 0.0)[int(0.75 * 1.5 * FPS):int(6.35 * 1.5 * FPS)]
    assert count_repetitions(noisy(squat_pose(d)), FPS).count == 5


def test_walking_across_the_frame_is_not_counted():
    # legs swing periodically while the body moves 1 torso length per cycle across the frame
    n, period_s = 8, 1.0
    d = sine_depth(n, period_s, 0.0)
    x = 100.0 + 100.0 * np.arange(len(d)) / (period_s * FPS)
    P = np.concatenate([squat_pose(d[i:i + 1], x0=x[i]) for i in range(len(d))])
    rc = count_repetitions(noisy(P), FPS)
    assert rc.count == 0 and "walks" in rc.finding


def test_still_pose_and_sway_count_zero():
    T = int(8 * FPS)
    still = noisy(squat_pose(np.zeros(T)), px=2.0)
    assert count_repetitions(still, FPS).count == 0
    sway = squat_pose(0.05 + 0.05 * np.sin(np.arange(T) / FPS * 2 * np.pi / 1.5))  # 5% dips: sway, not reps
    sway[..., 0] += 10 * np.sin(np.arange(T) / FPS * 2 * np.pi / 2.0)[:, None]
    rc = count_repetitions(noisy(sway), FPS)
    assert rc.count == 0 and rc.finding


def test_nan_gaps_tolerated():
    P = noisy(squat_pose(sine_depth(6, 1.5)))
    P[50:58] = np.nan                                   # no pose for 0.27 s
    P[120:125, LANDMARK_INDEX["left_knee"]] = np.nan    # a joint lost
    P[200:204, :, 2] = 0.05                              # low visibility
    assert count_repetitions(P, FPS).count == 6


def test_too_few_frames_with_a_pose():
    P = np.full((100, NUM_LANDMARKS, 3), np.nan)
    rc = count_repetitions(P, FPS)
    assert rc.count == 0 and "too few frames" in rc.finding


def _csv_kps(rows: slice) -> tuple[np.ndarray, list[str]]:
    """Rows of the real squat CSV -> (kps [T,33,3] in a 1000 x 1000 px frame, labels)."""
    with SQUAT_CSV.open() as f:
        r = list(csv.reader(f))
    head, body = r[0], r[1:][rows]
    P = np.full((len(body), NUM_LANDMARKS, 3), np.nan)
    for j, col in enumerate(head):
        if col.endswith("_x"):
            i = LANDMARK_INDEX[col[:-2]]
            P[:, i, 0] = [1000 * float(b[j]) for b in body]
            P[:, i, 1] = [1000 * float(b[j + 1]) for b in body]
            P[:, i, 2] = [float(b[j + 3]) for b in body]
    return P, [b[0] for b in body]


@pytest.mark.skipif(not SQUAT_CSV.exists(), reason="Exercise-Correction data not installed")
def test_real_squat_csv_stretch_matches_labels():
    # rows 375-574: one continuous stretch of real MediaPipe frames (no landmark jump > 0.25 torso
    # lengths between rows), all labelled 'up': the labels hold no down -> up turn, so 0 repetitions
    P, labels = _csv_kps(slice(375, 575))
    truth = sum(1 for a, b in zip(labels, labels[1:]) if a == "down" and b == "up")
    assert abs(count_repetitions(P, FPS).count - truth) <= 1


def test_coach_reps_cli(tmp_path, capsys):
    import json

    from coach.cli import main

    P = noisy(squat_pose(sine_depth(4, 1.5)))
    rows = [None if not np.isfinite(r[:, 0]).any() else np.where(np.isfinite(r), r, 0.0).tolist() for r in P]
    (tmp_path / "k.json").write_text(json.dumps({"keypoints": rows, "fps": FPS}))
    assert main(["reps", "--keypoints", str(tmp_path / "k.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] == 4 and len(out["reps"]) == 4 and out["period_s"] == pytest.approx(1.5, rel=0.1)
    (tmp_path / "notavideo.mp4").write_text("hello")
    assert main(["reps", str(tmp_path / "notavideo.mp4"), "--json"]) == 2
    assert "not a readable video" in capsys.readouterr().err


def test_label_truth_and_stretches():
    from services.judge.lab.eval_reps import continuous_stretches, label_truth

    assert label_truth(np.array(["up", "down", "down", "up", "down", "up", "down"])) == 2  # the last run is unfinished
    assert label_truth(np.array(["down", "up", "up"])) == 0
    P = noisy(squat_pose(np.zeros(60)))
    P[30:, :, 0] += 300  # another video: everything jumps 3 torso lengths
    assert continuous_stretches(P) == [(0, 30), (30, 60)]


def test_two_unequal_cycles_and_an_arm_movement():
    d = np.r_[sine_depth(1, 1.0, 0.5), sine_depth(1, 3.0, 0.5)]  # two squats, the second three times slower
    assert count_repetitions(noisy(squat_pose(d)), FPS).count == 2
    # curls: legs and trunk still, the wrists rise from the hips to the shoulders 7 times
    c = sine_depth(7, 2.0)
    P = squat_pose(np.zeros(len(c)))
    for side in ("left", "right"):
        w, e = LANDMARK_INDEX[f"{side}_wrist"], LANDMARK_INDEX[f"{side}_elbow"]
        P[:, w, 0] = P[:, e, 0] + 45 * np.sin(np.pi * c)
        P[:, w, 1] = P[:, e, 1] + 50 - 100 * c
    assert count_repetitions(noisy(P), FPS).count == 7
