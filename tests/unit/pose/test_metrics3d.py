"""Pose metrics (services/pose/lab/metrics.py) on hand-computed cases, including missing joints and frames."""
from __future__ import annotations

import json

import numpy as np
import pytest

from services.pose.lab.metrics import PoseFileError, PoseSet, error_heatmap, evaluate, load_poses
from shared.skeleton import LANDMARK_NAMES

N = np.nan


def _case():
    """3 joints, ground truth on frames 0-2 (joint b unlabelled in frame 1); predictions on frames
    0, 1 and 5 (frame 2 not predicted, frame 5 has no ground truth), joint c not predicted in frame 1.

        frame 0: a err 5 (3,4,5 triangle), b err 0, c err 6
        frame 1: a err 1, b unlabelled (prediction ignored), c not predicted
        frame 2: a, b, c not predicted
    """
    gt = PoseSet(names=["a", "b", "c"], frames=np.array([0, 1, 2]),
                 coords=np.array([[[0, 0], [10, 0], [0, 10]],
                                  [[0, 0], [N, N], [0, 10]],
                                  [[0, 0], [10, 0], [0, 10]]], float),
                 boxes=np.array([[0, 0, 20, 40], [0, 0, 4, 5], [0, 0, 10, 10]], float),
                 head_sizes=np.array([10.0, 10.0, 10.0]))
    pred = PoseSet(names=["c", "a", "b", "extra"], frames=np.array([0, 1, 5]),
                   coords=np.array([[[0, 16], [3, 4], [10, 0], [1, 1]],
                                    [[N, N], [0, 1], [7, 7], [1, 1]],
                                    [[0, 0], [0, 0], [0, 0], [0, 0]]], float))
    return pred, gt


def test_mpjpe_hand_computed_with_missing_joints_and_frames():
    pred, gt = _case()
    r = evaluate(pred, gt).report
    assert r["joints"] == ["a", "b", "c"] and r["joints_pred_only"] == ["extra"] and r["joints_gt_only"] == []
    assert r["frames"] == {"gt": 3, "pred": 3, "matched": 2, "gt_without_pred": 1, "pred_without_gt": 1}
    # labelled 8 (9 - b@1); evaluated = a@0 b@0 c@0 a@1; not predicted = c@1 + a,b,c@2
    assert r["counts"] == {"gt_labelled": 8, "gt_missing": 1, "evaluated": 4, "pred_missing": 4}
    assert r["mpjpe"]["mean"] == pytest.approx((5 + 0 + 6 + 1) / 4)
    assert r["mpjpe"]["per_joint"] == pytest.approx({"a": 3.0, "b": 0.0, "c": 6.0})


def test_pckh_hand_computed_missing_predictions_count_as_wrong():
    pred, gt = _case()
    r = evaluate(pred, gt).report["pckh@0.5"]
    # threshold 0.5 * 10 = 5 (strict): correct b@0 (0) and a@1 (1); a@0 (5) is not < 5
    assert (r["correct"], r["labelled"]) == (2, 8)
    assert r["per_joint"] == pytest.approx({"a": 1 / 3, "b": 1 / 2, "c": 0.0})
    assert r["mean"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)          # = 5/18, mean over joints
    assert r["overall"] == pytest.approx(2 / 8)
    assert r["reference"] == "given head sizes"


def test_pck02_uses_max_side_of_the_person_box():
    pred, gt = _case()
    r = evaluate(pred, gt).report["pck@0.2"]
    # thresholds 0.2 * max(h, w): frame 0: 8 -> a(5) b(0) c(6) correct; frame 1: 1 -> a(1) not < 1; frame 2: none predicted
    assert (r["correct"], r["labelled"]) == (3, 8)
    assert r["per_joint"] == pytest.approx({"a": 1 / 3, "b": 1 / 2, "c": 1 / 3})
    assert r["mean"] == pytest.approx(7 / 18)
    assert r["overall"] == pytest.approx(3 / 8)
    # without boxes: the tight box of the labelled ground truth (frame 0 and 2: 10, frame 1: 10) -> threshold 2
    gt.boxes = None
    r = evaluate(pred, gt).report["pck@0.2"]
    assert (r["correct"], r["labelled"]) == (2, 8)        # b@0 (0) and a@1 (1)


def test_pckh_head_size_from_blazepose_ears_and_shoulders():
    names = ["left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_wrist"]
    # head size = ||mid(ears) - mid(shoulders)|| = ||(0,0) - (0,8)|| = 8 -> threshold 4
    g = np.array([[[-3, 0], [3, 0], [-8, 8], [8, 8], [20, 20]],
                  [[-3, 0], [3, 0], [-8, 8], [8, 8], [20, 20]],
                  [[N, N], [3, 0], [-8, 8], [8, 8], [20, 20]]], float)     # frame 2: an ear missing -> no head size
    p = g.copy()
    p[0, 4] += (3, 0)          # 3 < 4: correct
    p[1, 4] += (0, 5)          # 5: wrong
    p[2] = g[1]
    p[2, 4] += (0, 1)
    gt = PoseSet(names=names, frames=np.arange(3), coords=g)
    r = evaluate(PoseSet(names=names, frames=np.arange(3), coords=p), gt).report["pckh@0.5"]
    assert r["per_joint"]["left_wrist"] == pytest.approx(0.5)
    assert r["no_reference"] == 5 - 1                        # frame 2's labelled joints (the ear is unlabelled)
    assert r["labelled"] == 10 and r["correct"] == 9         # frames 0, 1: 4 exact joints each + 1 wrist
    assert "ears" in r["reference"]


def test_3d_root_alignment_and_pck150mm():
    names = list(LANDMARK_NAMES)
    rng = np.random.default_rng(0)
    g = rng.normal(scale=0.3, size=(4, 33, 3))
    p = g - 0.5 * (g[:, [23]] + g[:, [24]])                  # prediction hip-centred (like BlazePose world landmarks)
    p[1, 0] += (0.0, 0.0, 0.2)                               # nose 20 cm off in frame 1
    p[2, 15] += (0.1, 0.0, 0.0)                              # left wrist 10 cm off in frame 2
    gt = PoseSet(names=names, frames=np.arange(4), coords=g)
    pred = PoseSet(names=names, frames=np.arange(4), coords=p)
    raw = evaluate(pred, gt).report
    assert raw["mpjpe"]["mean"] > 0.1                        # hip offset dominates without alignment
    r = evaluate(pred, gt, root=True).report
    assert r["root_aligned"] and r["unit"] == "m"
    assert r["mpjpe"]["mean"] == pytest.approx((0.2 + 0.1) / (4 * 33))
    assert r["mpjpe"]["per_joint"]["nose"] == pytest.approx(0.05)
    assert r["pck@150mm"]["correct"] == 4 * 33 - 1 and r["pck@150mm"]["labelled"] == 4 * 33


def test_result_json_json_arrays_and_npz_formats(tmp_path):
    T = 3
    rng = np.random.default_rng(1)
    kp = rng.uniform(100, 200, size=(T, 33, 2))
    frames = [{"index": i, "t_s": i / 10, "bbox_px": [90.0, 90.0, 120.0, 120.0],
               "keypoints": {n: [*kp[i, j], 0.9] for j, n in enumerate(LANDMARK_NAMES)},
               "keypoints_3d": {n: [0.0, 0.0, 0.0] for n in LANDMARK_NAMES}} for i in range(T)]
    frames[1]["keypoints"]["left_knee"][2] = 0.1              # low confidence
    frames.append({"index": 3, "t_s": 0.3, "bbox_px": None, "keypoints": None, "keypoints_3d": None})
    res = tmp_path / "result.json"
    res.write_text(json.dumps({"schema": "coach.result/1", "athletes": [{"frames": frames}]}))

    # JSON arrays: COCO-style subset of names, a null frame and a null joint
    coco = ["left_shoulder", "right_shoulder", "left_knee", "left_ear", "right_ear"]
    idx = [LANDMARK_NAMES.index(n) for n in coco]
    arr = [[list(kp[t, j]) for j in idx] for t in range(T)] + [None]
    arr[0][2] = None
    gj = tmp_path / "gt.json"
    gj.write_text(json.dumps({"names": coco, "frames": [0, 1, 2, 3], "keypoints": arr, "unit": "px"}))
    r = evaluate(load_poses(res, min_confidence=0.5), load_poses(gj)).report
    assert r["joints"] == coco and r["mpjpe"]["mean"] == pytest.approx(0.0)
    assert r["counts"] == {"gt_labelled": 14, "gt_missing": 6, "evaluated": 13, "pred_missing": 1}   # knee@1 below 0.5
    assert r["pckh@0.5"]["overall"] == pytest.approx(13 / 14)

    g = np.full((T, len(coco), 2), np.nan)
    for t in range(T):
        g[t] = kp[t, idx]
    np.savez(tmp_path / "gt.npz", keypoints=g, names=np.array(coco), frames=np.arange(T),
             boxes=np.tile([90.0, 90.0, 120.0, 120.0], (T, 1)))
    r2 = evaluate(load_poses(res), load_poses(tmp_path / "gt.npz")).report
    assert r2["mpjpe"]["mean"] == pytest.approx(0.0) and r2["pck@0.2"]["reference"].startswith("max(h, w) of the given")
    with pytest.raises(PoseFileError):
        load_poses(tmp_path / "gt.npz", dim=3)


def test_heatmap_png_and_cli_json(tmp_path, capsys):
    from coach.cli import main

    pred, gt = _case()
    png = tmp_path / "heat.png"
    error_heatmap(evaluate(pred, gt), png)
    assert png.read_bytes()[:4] == b"\x89PNG"

    def dump(ps: PoseSet, path):
        np.savez(path, keypoints=ps.coords, names=np.array(ps.names), frames=ps.frames,
                 **({"head_sizes": ps.head_sizes} if ps.head_sizes is not None else {}),
                 **({"boxes": ps.boxes} if ps.boxes is not None else {}))

    dump(pred, tmp_path / "p.npz")
    dump(gt, tmp_path / "g.npz")
    assert main(["eval", "--pred", str(tmp_path / "p.npz"), "--gt", str(tmp_path / "g.npz"), "--json",
                 "--heatmap", str(tmp_path / "h2.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mpjpe"]["mean"] == pytest.approx(3.0) and out["pckh@0.5"]["mean"] == pytest.approx(5 / 18)
    assert (tmp_path / "h2.png").exists()
    assert main(["eval", "--pred", str(tmp_path / "nope.json"), "--gt", str(tmp_path / "g.npz")]) == 2
