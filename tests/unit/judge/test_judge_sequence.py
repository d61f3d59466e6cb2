"""LSTM + attention repetition quality (services/judge/sequence.py): shapes, attention, learning, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from services.judge import sequence as Q
from services.judge import synth
from services.judge.lab.bootstrap_temporal import exercise_clip
from services.judge.datasets import write_csv
from coach.cli import main as coach
from services.judge.packs import PACKS_ROOT
from shared.sports import PACK_SPECS

torch.set_num_threads(1)
SQUAT_LANDMARKS = [f"{s}_{p}" for p in ("shoulder", "hip", "knee", "ankle") for s in ("left", "right")]


def _clips(sport, n, seed):
    out = []
    for i in range(n):
        c, _ = exercise_clip(sport, np.random.default_rng([seed, i]), pauses=bool(i % 3 == 0))
        out.append((c.keypoints, c.fps, np.stack([c.labels[f] for f in synth.FAULTS[sport]], axis=1)))
    return out


def _majority(y):
    return max(np.mean(y), 1 - np.mean(y))


def test_forward_shapes_on_cpu_and_attention_sums_to_one():
    net = Q.LSTMAttention(d_in=8, hidden=16, layers=2).eval()
    x = torch.randn(5, Q.WINDOW, 8)
    with torch.no_grad():
        logits, alpha = net(x)
    assert logits.shape == (5, 2) and alpha.shape == (5, Q.WINDOW)
    assert logits.device.type == "cpu"
    assert torch.all(alpha >= 0)
    assert torch.allclose(alpha.sum(dim=1), torch.ones(5), atol=1e-5)
    w = Q.attention_to_frames(alpha[0].numpy(), 77)
    assert w.shape == (77,) and abs(w.sum() - 1) < 1e-9 and np.all(w >= 0)


def test_windows_resample_repetitions_and_label_by_any_fault():
    X = np.arange(40, dtype=float)[:, None] * np.ones((1, 3))
    X[5, 1] = np.nan
    W = Q.resample(X, 10, 29)
    assert W.shape == (Q.WINDOW, 3) and W[0, 0] == 10 and W[-1, 0] == 29 and np.all(np.isfinite(W))
    rep = type("R", (), {"start": 10, "end": 20})()
    labels = np.zeros((40, 2), bool)
    assert Q.rep_label(labels, rep) == 0
    labels[20, 1] = True       # one faulty frame anywhere in the repetition
    assert Q.rep_label(labels, rep) == 1
    labels[:] = False
    labels[21, 0] = True       # just outside
    assert Q.rep_label(labels, rep) == 0


def test_a_tiny_model_trained_here_beats_chance_on_held_out_clips():
    tr = Q.examples("squat", _clips("squat", 70, 51))
    va = Q.examples("squat", _clips("squat", 20, 52))
    te = Q.examples("squat", _clips("squat", 40, 53))
    assert tr.W.shape[1:] == (Q.WINDOW, len(PACK_SPECS["squat"].input_names))
    model = Q.fit("squat", tr, va, hidden=16, epochs=40, patience=10, log=lambda m: None)
    p, alpha = model.predict_windows(te.W)
    ev = Q.metrics(te.y, p < 0.5)
    assert ev["accuracy"] >= _majority(te.y) + 0.2, ev
    assert ev["f1"] >= 0.75, ev
    assert np.allclose(alpha.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("sport", ["squat", "pushup"])
def test_shipped_weights_are_small_and_judge_held_out_repetitions(sport):
    path = PACKS_ROOT / sport / "sequence.pt"
    assert path.stat().st_size < 1_000_000
    model = Q.load(path, map_location="cpu")
    assert model.sport == sport and model.model_version.startswith(f"{sport}-lstm-attn-")
    assert model.inputs == PACK_SPECS[sport].input_names
    clips = _clips(sport, 30, 54)          # seeds unused by the training script
    ex = Q.examples(sport, clips)
    p, _ = model.predict_windows(ex.W)
    ev = Q.metrics(ex.y, p < 0.5)
    assert ev["accuracy"] >= max(0.85, _majority(ex.y) + 0.2), ev
    assert ev["f1"] >= 0.8, ev
    kps, fps, _ = clips[0]
    from services.judge.reps import segment
    reps = segment(kps, sport, fps)
    out = model.judge(kps, fps, reps)
    for r, o in zip(reps, out):
        assert 0 <= o["quality"] <= 1 and len(o["attention"]) == r.frames and abs(sum(o["attention"]) - 1) < 1e-6


def test_cli_train_and_eval_kind_sequence(tmp_path, capsys):
    def rows(n, seed):
        out = []
        for i in range(n):
            c, _ = exercise_clip("squat", np.random.default_rng([seed, i]))
            out.append((f"athlete{seed}-{i:02d}", c.keypoints, c.labels, c.fps))
        return out

    faults = synth.FAULTS["squat"]
    train = write_csv(tmp_path / "train.csv", rows(45, 61), faults, multilabel=True, landmarks=SQUAT_LANDMARKS)
    held = write_csv(tmp_path / "held.csv", rows(20, 62), faults, multilabel=True, landmarks=SQUAT_LANDMARKS)
    capsys.readouterr()
    assert coach(["judge", "train", "--kind", "sequence", "--sport", "squat", "--data", str(train),
                  "--out", str(tmp_path / "m"), "--json", "--quiet"]) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "sequence" and out["model_version"].startswith("squat-lstm-attn-")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"sequence.pt", "sequence_report.json"}
    report = json.loads((tmp_path / "m" / "sequence_report.json").read_text())
    assert report["split"]["kind"] == "by-sequence" and len(report["split"]["test"]) == 9

    assert coach(["judge", "eval", "--kind", "sequence", "--model", str(tmp_path / "m"), "--data", str(held), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["split"] == "held-out-data" and ev["reps"] >= 25
    y_rate = ev["non_standard"] / ev["reps"]
    assert ev["accuracy"] >= max(y_rate, 1 - y_rate) + 0.05, ev
    assert ev["f1"] > 2 * y_rate / (1 + y_rate), ev        # better than flagging every repetition

    assert coach(["judge", "eval", "--kind", "sequence", "--model", str(tmp_path / "m"), "--data", str(train), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "by-sequence"
    # a sport without repetitions is refused in words
    assert coach(["judge", "train", "--kind", "sequence", "--sport", "lunge", "--data", str(train),
                  "--out", str(tmp_path / "x"), "--quiet"]) == 2
