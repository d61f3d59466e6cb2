"""`coach judge train` / `eval` on synthetic labelled data written in the documented CSV format."""
from __future__ import annotations

import json

import numpy as np
import pytest

from services.judge import synth
from services.judge.datasets import write_csv
from services.judge.packs import load_pack_dir
from services.judge.lab.training import GRID_C
from coach.cli import main as coach

PLANK = synth.FAULTS["plank"]
SKI = synth.FAULTS["ski_aerials"]
# the paper's 12 keypoints: shoulders, hips, knees, ankles, and the skis (heel, foot index)
PAPER_LANDMARKS = tuple(f"{s}_{p}" for p in ("shoulder", "hip", "knee", "ankle", "heel", "foot_index")
                        for s in ("left", "right"))


def _clips(sport, n, seed, **kw):
    out = []
    for i in range(n):
        c = synth.generate(sport, np.random.default_rng([seed, i]), **kw)
        out.append((f"{sport}{seed}-{i:02d}", c.keypoints, c.labels, c.fps))
    return out


def _run(capsys, *argv) -> dict:
    capsys.readouterr()
    assert coach(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _chance_f1(prevalence: float) -> float:
    """F1 of the best input-blind rule (flag every frame): 2p / (1 + p); guessing at rate p gets p."""
    return 2 * prevalence / (1 + prevalence)


@pytest.fixture(scope="module")
def plank_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("plank")
    train = write_csv(d / "train.csv", _clips("plank", 24, seed=11, duration_s=5.0), PLANK)
    held_out = write_csv(d / "held_out.csv", _clips("plank", 8, seed=12, duration_s=5.0), PLANK)
    return d, train, held_out


def test_train_then_eval_on_held_out_clips_beats_chance(plank_data, capsys):
    d, train, held_out = plank_data
    out = _run(capsys, "judge", "train", "--sport", "plank", "--data", str(train), "--out", str(d / "m"), "--json",
               "--quiet")
    assert out["model_version"].startswith("plank-svm-") and out["evaluation"]["split"] == "by-sequence"
    assert {p.name for p in (d / "m").iterdir()} == {"pack.json", "model.joblib", "report.json"}

    ev = _run(capsys, "judge", "eval", "--model", str(d / "m"), "--data", str(held_out), "--json")
    assert ev["split"] == "held-out-data" and ev["mode"] == "multiclass"
    assert set(ev["per_class"]) == {"sagging_hips", "piked_hips", "correct"}
    assert set(ev) >= {"macro_f1", "per_class", "confusion", "split"}
    for f in PLANK:
        c = ev["per_class"][f]
        assert c["support"] > 20
        assert c["f1"] > _chance_f1(c["prevalence"]) + 0.4, (f, c)
        assert set(c) >= {"precision", "recall", "f1", "support"}
    assert ev["macro_f1"] > 0.8
    m = np.array(ev["confusion"]["matrix"])
    assert ev["confusion"]["labels"] == ["sagging_hips", "piked_hips", "correct"] and m.sum() == ev["frames_scored"]

    # evaluating on the training file scores only that run's held-out test sequences
    again = _run(capsys, "judge", "eval", "--model", str(d / "m"), "--data", str(train), "--json")
    report = json.loads((d / "m" / "report.json").read_text())
    assert again["split"] == "by-sequence" and "held-out test split" in again["split_detail"]
    assert again["frames"] == report["split"]["frames"]["test"]
    assert again["macro_f1"] == report["evaluation"]["macro_f1"]
    assert report["data"]["files"][0]["sha256"] and report["data"]["fingerprint"]


def test_multilabel_normalised_subset_of_landmarks(tmp_path, capsys):
    """The paper's setting: 12 keypoints, three independent binary faults; MediaPipe-style normalised coordinates."""
    data = write_csv(tmp_path / "ski.csv", _clips("ski_aerials", 60, seed=21), SKI, multilabel=True,
                     landmarks=PAPER_LANDMARKS, size=(1280, 720))
    header = data.read_text().splitlines()[0].split(",")
    assert "nose_x" not in header and "width" in header and "bent_knees" in header
    out = _run(capsys, "judge", "train", "--sport", "ski_aerials", "--data", str(data), "--out", str(tmp_path / "m"),
               "--json", "--quiet")
    ev = out["evaluation"]
    assert ev["mode"] == "multilabel" and set(ev["confusion"]) == set(SKI)
    for f in ("bent_hips", "bent_knees"):   # crossed skis are hard in 2D, as in the paper's Table 9
        c = ev["per_class"][f]
        assert c["support"] > 20 and c["f1"] > _chance_f1(c["prevalence"]) + 0.3, (f, c)


def test_rows_without_sequences_are_split_in_contiguous_blocks(tmp_path, capsys):
    path = write_csv(tmp_path / "p.csv", _clips("plank", 6, seed=31, duration_s=5.0, fps=30.0), PLANK)
    lines = path.read_text().splitlines()
    one = tmp_path / "one_video.csv"
    one.write_text("\n".join(",".join(line.split(",")[3:]) for line in lines) + "\n")  # no sequence/frame/fps
    out = _run(capsys, "judge", "train", "--sport", "plank", "--data", str(one), "--out", str(tmp_path / "m"),
               "--json", "--quiet")
    assert out["evaluation"]["split"] == "contiguous-blocks"
    assert "blocks of consecutive frames" in out["evaluation"]["split_detail"]


def test_grid_search_picks_c_and_gamma_on_validation(plank_data, tmp_path, capsys):
    d, train, _ = plank_data
    _run(capsys, "judge", "train", "--sport", "plank", "--data", str(train), "--out", str(tmp_path / "g"), "--grid",
         "--json", "--quiet")
    report = json.loads((tmp_path / "g" / "report.json").read_text())
    assert report["svm"]["grid"] is True
    for f in PLANK:
        assert len(report["svm"]["search"][f]) == 12
        assert report["svm"]["per_fault"][f]["C"] in GRID_C
    assert report["evaluation"]["macro_f1"] > 0.8


def test_new_sport_gets_features_from_the_landmarks_it_has(plank_data, tmp_path, capsys):
    d, train, _ = plank_data
    text = train.read_text().replace("sagging_hips", "hips_low").replace("piked_hips", "hips_high")
    data = tmp_path / "custom.csv"
    data.write_text(text)
    out = _run(capsys, "judge", "train", "--sport", "plank_custom", "--data", str(data), "--out", str(tmp_path / "m"),
               "--json", "--quiet")
    pack = load_pack_dir(tmp_path / "m")
    assert pack.name == "plank_custom" and set(pack.fault_ids) == {"hips_low", "hips_high"}  # order first seen
    assert "body_line_offset" in pack.spec.features
    d = pack.describe()
    assert d["faults"][0]["standard_range"] == [] and "threshold" in d["faults"][0]
    assert out["evaluation"]["macro_f1"] > 0.8


def test_training_errors_are_reported_not_raised(tmp_path, capsys):
    wrists = write_csv(tmp_path / "wrists.csv", _clips("plank", 6, seed=41, duration_s=3.0), PLANK,
                       landmarks=("left_wrist", "right_wrist"))
    assert coach(["judge", "train", "--sport", "plank", "--data", str(wrists), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "frames can be judged" in err and "left_hip" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("label,left_hip_x,left_hip_y\ncorrect,1,2\ncorrect,x,2\n")
    assert coach(["judge", "train", "--sport", "plank", "--data", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert "bad.csv line 3, column 'left_hip_x': 'x' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
