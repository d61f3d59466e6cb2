"""The athlete-choice evaluation (`coach tracker eval --choice`): its scoring on small synthetic
tracks (the numbers a user reads), the policy applied to perfect tracks, the table it prints, and
the disjoint split (people and scenes never in a tuning sequence)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from services.tracker.lab.choice_eval import (
    choice_row,
    is_correct,
    lock_frame,
    on_target_share,
    policy_on_truth,
    summarise,
)

DATA = "/usr/share/doc/opencv-doc/examples/data"
needs_media = pytest.mark.skipif(not os.path.exists(f"{DATA}/vtest.avi"), reason="apt-get install opencv-doc")

ATH = np.array([100, 100, 40, 100], float)      # the athlete (actor 0)
OTHER = np.array([300, 100, 40, 100], float)    # someone else (actor 1)
NEAR = np.array([110, 100, 40, 100], float)     # IoU 0.6 with ATH: still "on" the athlete
BG = np.array([500, 400, 40, 100], float)       # on nobody (background)


def gts(n: int, absent: tuple[int, ...] = ()) -> list[list]:
    return [[None if t in absent else ATH, OTHER] for t in range(n)]


def test_a_track_is_the_athlete_when_it_covers_them_in_most_of_its_frames():
    target = [g[0] for g in gts(4)]
    # on the athlete in 3 of its 4 boxes (one shifted box still counts: IoU 0.6)
    assert on_target_share([ATH, NEAR, ATH, OTHER], target) == 0.75
    assert is_correct(0.75)
    # frames without a box do not count; half is not "most"
    assert on_target_share([ATH, None, None, OTHER], target) == 0.5
    assert not is_correct(0.5)
    # a box while the athlete is absent is not on the athlete
    assert on_target_share([ATH, ATH], [ATH, None]) == 0.5
    assert on_target_share([None, None], target[:2]) is None and not is_correct(None)


def test_lock_is_the_first_frame_on_the_athlete_after_the_last_one_on_someone_else():
    actors = gts(10, absent=(6,))
    # on the other person 0-2, the athlete from 3; frame 5 no box, frame 6 the athlete is absent,
    # frame 7 the box is on the background: none of these breaks the lock
    boxes = [OTHER, OTHER, OTHER, ATH, ATH, None, ATH, BG, ATH, ATH]
    assert lock_frame(boxes, actors) == 3
    # a later visit to someone else moves the lock after it
    boxes[8] = OTHER
    assert lock_frame(boxes, actors) == 9
    # ends on someone else: never locked
    boxes[9] = OTHER
    assert lock_frame(boxes, actors) is None
    # on the athlete from the start
    assert lock_frame([ATH] * 4, gts(4)) == 0


def test_picked_looks_at_the_first_frames_the_track_covers_anybody():
    actors = gts(30)
    # on the athlete for 8 of its first 10 covering frames (2 on the other), then someone else for good
    boxes = [None, BG, ATH, OTHER, ATH, ATH, OTHER] + [ATH] * 6 + [OTHER] * 17
    from services.tracker.lab.choice_eval import picked_first
    assert picked_first(boxes, actors)
    assert not is_correct(on_target_share(boxes, [g[0] for g in actors]))    # most of its frames: not the athlete
    assert not picked_first([OTHER] * 5 + [ATH] * 25, actors, first=10)       # 5 of 10 is not most
    assert not picked_first([BG] * 30, actors)                                 # never on anybody


def test_choice_row_gives_seconds_and_closeness_and_summary_aggregates():
    actors = gts(10)
    right = choice_row([ATH] * 10, [OTHER] * 2 + [ATH] * 8, actors, fps=10.0, alternatives=0, reachable=True)
    assert right["correct"] and right["delivered_correct"]       # 8 of 10 delivered boxes on the athlete
    assert right["lock_frame"] == 2 and right["lock_s"] == 0.2 and right["close"] is False
    wrong = choice_row([OTHER] * 10, [OTHER] * 10, actors, fps=10.0, alternatives=2, reachable=True)
    assert not wrong["correct"] and wrong["on_athlete"] == 0.0 and wrong["lock_s"] is None and wrong["close"] is True
    # the chosen multi-person track went to someone else, the refined one kept the athlete
    refined = choice_row([ATH] * 4 + [OTHER] * 6, [ATH] * 10, actors, fps=10.0, alternatives=0, reachable=True)
    assert not refined["correct"] and refined["delivered_correct"] and refined["lock_frame"] == 0
    assert right["picked"] and not wrong["picked"] and not refined["picked"]    # refined: 4 of its first 10 frames
    legacy = choice_row([ATH] * 10, [ATH] * 10, actors, fps=10.0)     # no margin: closeness is not defined
    assert legacy["close"] is None and legacy["reachable"] is None
    late = choice_row([ATH] * 10, [None] * 6 + [ATH] * 4, actors, fps=10.0, alternatives=1, reachable=True)
    s = summarise([right, wrong, late])
    # 2 of 3 right; the athlete was among the tracks each time; 2 close choices, one of them wrong;
    # 2 locked, at 0.2 s and 0.6 s
    assert s["sequences"] == 3 and s["correct"] == 2 and s["accuracy"] == 0.667 and s["delivered_accuracy"] == 0.667
    assert s["reachable"] == 1.0 and s["wrong_but_listed"] == 1 and s["close"] == 0.667 and s["close_and_wrong"] == 1
    assert s["locked"] == 0.667 and s["lock_s_median"] == 0.4 and s["lock_s_mean"] == 0.4
    assert "close" not in summarise([legacy]) and summarise([legacy])["accuracy"] == 1.0
    with pytest.raises(ValueError):
        summarise([])


def _truth_clip(n: int = 40) -> list[list]:
    """Actor 0 jumps in place the whole clip (small), actor 1 stands still, taller, from frame 3,
    actor 2 walks across from frame 10 to 25."""
    out = []
    for t in range(n):
        jump = np.array([100, 200 - 30 * abs(np.sin(t / 2)), 40, 100], float)
        still = np.array([300, 150, 60, 150], float) if t >= 3 else None
        walker = np.array([20 + 20 * (t - 10), 180, 40, 110], float) if 10 <= t <= 25 else None
        out.append([jump, still, walker])
    return out


def test_policies_on_perfect_tracks_pick_as_documented():
    clip = _truth_clip()
    assert policy_on_truth(clip, frame_h=480, fps=10.0, policy="most_active") == 0   # the one who moves
    assert policy_on_truth(clip, frame_h=480, fps=10.0, policy="largest") == 1       # the tall one
    assert policy_on_truth(clip, frame_h=480, fps=10.0, policy="first_seen") == 0    # there at frame 0
    assert policy_on_truth([[None, None]] * 5, frame_h=480, fps=10.0, policy="largest") is None


def test_table_shows_accuracy_and_policy_on_truth():
    from services.tracker.lab.cli import choice_table

    row = {"sequences": 3, "correct": 2, "accuracy": 0.667, "picked": 1.0, "delivered_accuracy": 0.5, "reachable": 1.0, "close": 0.333, "close_and_wrong": 1,
           "locked": 0.667, "lock_s_median": 0.4, "lock_s_mean": 0.4, "f_score": 0.41, "id_switches_per_sequence": 1.0}
    legacy = {k: v for k, v in row.items() if k not in ("reachable", "close", "close_and_wrong")}
    out = {"split": "test", "sequences": 3, "frames": 300, "athlete": "actor 0 (evalset)", "legacy": legacy,
           "mot/most_active": row, "on_truth": {"most_active": 0.5},
           "cases": {"crowd": {"legacy": {"accuracy": 1.0}, "mot/most_active": {"accuracy": 0.5},
                               "on_truth": {"most_active": 0.0}}}}
    text = choice_table(out)
    lines = text.splitlines()
    mot = next(ln for ln in lines if ln.startswith("mot/most_active")).split()
    assert mot[1:6] == ["0.667", "1.000", "0.500", "1.000", "0.333"] and mot[-2:] == ["0.410", "1.00"]
    leg = next(ln for ln in lines if ln.startswith("legacy")).split()
    assert leg[4:7] == ["-", "-", "-"]                    # no reachability / margin for the default tracker
    assert "most_active 0.500" in text and "crowd" in text and "on truth: most_active 0.00" in text


@needs_media
def test_disjoint_split_shares_no_person_and_no_scene_with_the_tuning_part(sprites):
    from services.tracker.lab import evalset

    def people_and_scenes(split):
        seqs = [evalset.make_sequence(c, s, sprites) for c in evalset.CASES for s in evalset.SPLITS[split]]
        assert {q.split for q in seqs} == {split}
        return {a.sprite for q in seqs for a in q.actors}, {q.scene for q in seqs}

    tune_people, tune_scenes = people_and_scenes("tune")
    test_people, test_scenes = people_and_scenes("test")
    disjoint_people, disjoint_scenes = people_and_scenes("disjoint")
    assert not disjoint_people & tune_people and not disjoint_scenes & tune_scenes
    assert disjoint_scenes == set(evalset.DISJOINT_SCENES)
    # why it exists: the test split keeps its athletes apart but shares passers-by and scenes
    assert test_people & tune_people and test_scenes == tune_scenes
    # and its athletes are the test athletes, visible in the first frame
    seq = evalset.make_sequence("crowd", evalset.SPLITS["disjoint"][0], sprites)
    assert seq.actors[0].sprite in evalset.TEST_ATHLETES and seq.render(0)[1][0] is not None


def test_saved_runs_are_scored_again_and_merged_per_sequence(tmp_path):
    import pickle

    from services.tracker.lab.choice_eval import score_saved

    actors = gts(20)

    def save(d, name, results):
        d.mkdir(exist_ok=True)
        rec = {"sequence": name, "case": "crowd", "split": "test", "athlete": "w174", "actors_gt": actors,
               "fps": 10.0, "size": (768, 576), "results": results}
        (d / f"{name}.pkl").write_bytes(pickle.dumps(rec))

    def res(boxes, alts=None, kept=None):
        return {"chosen": boxes, "delivered": boxes, "scores": [1.0] * len(boxes), "alternatives": alts,
                "reason": "r", "kept": kept, "track_id": 0}

    save(tmp_path / "a", "crowd-100", {"legacy": res([ATH] * 20), "mot/most_active": res([OTHER] * 20, 1, [[ATH] * 20])})
    save(tmp_path / "a", "crowd-101", {"legacy": res([OTHER] * 20), "mot/most_active": res([ATH] * 20, 0, [[ATH] * 20])})
    save(tmp_path / "b", "crowd-100", {"legacy/box": res([ATH] * 20)})
    save(tmp_path / "b", "crowd-101", {"legacy/box": res([ATH] * 20)})
    out = score_saved([str(tmp_path / "a"), str(tmp_path / "b")], policies=("most_active",))
    assert out["sequences"] == 2 and out["frames"] == 40
    assert out["legacy"]["accuracy"] == 0.5 and out["legacy/box"]["accuracy"] == 1.0
    mot = out["mot/most_active"]
    # one wrong choice with the athlete among the kept people (a switch would fix it), one right
    assert mot["accuracy"] == 0.5 and mot["reachable"] == 1.0 and mot["wrong_but_listed"] == 1
    assert mot["close_and_wrong"] == 1
    assert out["cases"]["crowd"]["legacy"]["accuracy"] == 0.5
    with pytest.raises(ValueError):
        score_saved(str(tmp_path / "empty"))
