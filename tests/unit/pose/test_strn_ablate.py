"""`coach pose ablate` (paper tables 6-8): the labels and the scoring protocol reach the training and the
scoring, a result is reused only under the protocol it was scored under, and the tables show coverage and
the worker's default refiner. Cheap: a synthetic walker and an untrained 1 x 1 network, no data cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from services.pose.strn import STRN, StrnConfig

torch.set_num_threads(1)
ST = "T10-L1-H1-ST-s16"


def _run(n: int = 40, first_frame: int = 20):
    from services.pose.lab.strn_train import Run

    rng = np.random.default_rng(5)
    gt = np.zeros((n, 33, 3), np.float32)
    gt[..., :2] = 100 + rng.normal(0, 3, (n, 33, 2))
    gt[..., 2] = 1.0
    kps = gt + np.concatenate([rng.normal(0, 4, (n, 33, 2)), np.zeros((n, 33, 1))], -1).astype(np.float32)
    present = np.ones(n, bool)
    present[7] = False  # the degraded model found nobody here
    kps[7] = np.nan
    box = np.tile(np.array([50.0, 50.0, 50.0, 100.0], np.float32), (n, 1))
    return Run("wX", "blur", kps, present, gt, np.ones(n, bool), box, first_frame)


@pytest.fixture
def fake_training(monkeypatch):
    """strn_train.ablate with the data and the training replaced: records what each was asked for."""
    from services.pose.lab import strn_train as T

    calls = {"load": [], "train": []}

    def load_runs(split, cache=None, eval_conditions=False, labels="full"):
        calls["load"].append((split, labels))
        return [_run()]

    def train(cfg, minutes=30.0, max_steps=2000, seed=0, cache=None, log=print, labels="full", **kw):
        calls["train"].append((cfg, labels))
        torch.manual_seed(0)
        return STRN(cfg), {"steps": max_steps, "best_step": max_steps, "best_val_pck": 0.5, "best_val_accel": 0.1,
                           "seconds": 0.0}

    monkeypatch.setattr(T, "load_runs", load_runs)
    monkeypatch.setattr(T, "train", train)
    return calls


def test_ablation_trains_and_scores_against_the_labels_asked_for_and_reuses_only_the_same_protocol(
        fake_training, tmp_path):
    from services.pose.lab.strn_train import ablate

    base = StrnConfig(layers=1, heads=1)
    res = ablate(base, 3, tmp_path, only=[ST], labels="heavy", log=lambda m: None)
    assert fake_training["load"] == [("test", "heavy")]
    assert [lab for _, lab in fake_training["train"]] == ["heavy"]
    assert set(res) == {"raw", "one_euro", ST}
    for r in res.values():
        assert r["protocol"] == {"labels": "heavy", "scoring": "clips", "clip_frames": 32, "context": True,
                                 "missing": "wrong"}
        # the frame without a pose is wrong on every joint: 39 of 40 frames covered, PCK at most that
        assert r["test"]["all"]["coverage"] == 0.975 and r["test"]["all"]["pck02"] <= 0.975
    ablate(base, 3, tmp_path, only=[ST], labels="heavy", log=lambda m: None)
    assert len(fake_training["train"]) == 1  # same protocol: the stored run is reused
    res = ablate(base, 3, tmp_path, only=[ST], labels="full", log=lambda m: None)
    assert [lab for _, lab in fake_training["train"]] == ["heavy", "full"]  # other labels: trained again
    assert res[ST]["protocol"]["labels"] == "full"
    res = ablate(base, 3, tmp_path, only=[ST], labels="full", protocol="whole", log=lambda m: None)
    assert len(fake_training["train"]) == 3 and res[ST]["protocol"]["scoring"] == "whole"
    assert json.loads((tmp_path / "runs" / f"{ST}.json").read_text())["protocol"]["scoring"] == "whole"


def test_clip_scoring_is_what_the_worker_outputs_with_context():
    from services.pose.lab.strn_train import ablation_predict, clipwise
    from services.pose.refine import OneEuroRefiner

    run = _run(40, first_frame=20)  # video frames 20-59: two of the worker's clips (cut at 32)
    ref = OneEuroRefiner(freq_hz=10.0)
    got = ablation_predict(ref, [run])[0]
    np.testing.assert_array_equal(got, clipwise(run, ref, context=True))
    whole = ablation_predict(ref, [run], "whole")[0]
    assert np.isnan(got[7]).all() and np.isnan(whole[7]).all()  # refiners keep absent frames absent
    assert not np.allclose(got[12:], whole[12:], equal_nan=True)  # the clip cut at frame 32 restarts the filter


def test_bad_labels_or_protocol_are_refused():
    from services.pose.lab.strn_train import ablation_protocol

    with pytest.raises(ValueError, match="labels"):
        ablation_protocol("lite")
    with pytest.raises(ValueError, match="protocol"):
        ablation_protocol("heavy", "frames")


@pytest.mark.parametrize("argv,labels,protocol,out", [
    ([], "full", "clips", "out/strn-ablations"),
    (["--labels", "heavy"], "heavy", "clips", "out/strn-ablations-heavy"),
    (["--labels", "heavy", "--whole-runs", "--out", "elsewhere"], "heavy", "whole", "elsewhere"),
])
def test_ablate_command_routes_labels_protocol_and_output(monkeypatch, tmp_path, capsys, argv, labels, protocol, out):
    from coach.cli import main
    from services.pose.lab import strn_train as T

    seen = {}

    def ablate(base, steps, out_dir, minutes, cache, **kw):
        seen.update(kw, out=out_dir, base=base)
        out_dir.mkdir(parents=True, exist_ok=True)
        return {}

    monkeypatch.setattr(T, "ablate", ablate)
    monkeypatch.chdir(tmp_path)
    assert main(["pose", "ablate", "--threads", "1", *argv]) == 0
    assert (seen["labels"], seen["protocol"], str(seen["out"])) == (labels, protocol, out)
    assert (seen["base"].layers, seen["base"].heads) == (1, 1)  # the 1 x 1 base of tables 6 and 7
    assert (tmp_path / out / "ablations.md").exists() and "(not run)" in capsys.readouterr().out


def test_tables_show_coverage_and_the_worker_default_refiner():
    from services.pose.lab.strn_train import GROUPS, ablation_markdown

    def res(pck, cov, accel):
        a = {"pck02": pck, "coverage": cov, "accel": accel, "groups": {g: pck for g in GROUPS}}
        return {"test": {"all": a, "blur": {"pck02": pck - 0.05}}}

    st = {**res(0.80, 0.845, 0.08), "train": {"best_val_pck": 0.9, "steps": 2000}}
    md = ablation_markdown({"raw": res(0.72, 0.845, 0.099), "one_euro": res(0.73, 0.845, 0.075), ST: st},
                           StrnConfig(layers=1, heads=1))
    t6 = md.split("**Table 7")[0]
    assert "| coverage |" in t6
    assert "| One Euro (worker default) | - | - | - | 73.0 |" in t6
    assert "| STRN-ST | 10 | 1 | 1 | 80.0 | 80.0 | 80.0 | 80.0 | 80.0 | 80.0 | 80.0 | 80.0 | 75.0 | 84.5 | 0.0800 | 90.0 | 2000 |" in t6
    assert "| STRN-S (spatial only) | 10 | 1 | 1 | (not run) |" in t6
