"""Training-data loaders: landmark CSVs (multi-class / multi-label), result documents + labels, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from services.judge import synth
from services.judge.datasets import DatasetError, load_csv, load_training_data, write_csv
from shared.messages import VideoInfo
from shared.result import AnalysisResult
from shared.skeleton import LANDMARK_INDEX as LI
from shared.skeleton import LANDMARK_NAMES

PLANK = synth.FAULTS["plank"]
LEGS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


def _clips(sport: str, n: int, seed: int = 0, duration_s: float | None = 3.0):
    out = []
    for i in range(n):
        c = synth.generate(sport, np.random.default_rng([seed, i]), duration_s=duration_s)
        out.append((f"clip{i}", c.keypoints, c.labels, c.fps))
    return out


def _write(tmp_path, text: str, name: str = "data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _header(landmarks=("left_hip", "right_hip"), extra=("label",)):
    return ",".join(list(extra) + [f"{lm}_{a}" for lm in landmarks for a in ("x", "y")])


# ----------------------------------------------------------------------------- CSV, the good cases

def test_multiclass_csv_round_trip_groups_rows_by_sequence(tmp_path):
    clips = _clips("plank", 3)
    path = write_csv(tmp_path / "plank.csv", clips, PLANK)
    ds = load_csv(path, faults=PLANK)
    assert ds.mode == "multiclass" and ds.grouped and [s.name for s in ds.sequences] == [f"plank.csv#clip{i}" for i in range(3)]
    for (name, kps, labels, fps), seq in zip(clips, ds.sequences):
        assert seq.fps == fps and len(seq) == len(kps)
        ok = np.isfinite(kps[..., 0])
        np.testing.assert_allclose(seq.keypoints[ok][:, :2], kps[ok][:, :2], atol=0.006)
        assert np.isnan(seq.keypoints[~ok]).all()           # frames without a pose stay missing
        for f in PLANK:
            assert (seq.labels.get(f, np.zeros(len(kps), bool)) == labels[f]).all()
    assert len(ds.files) == 1 and len(ds.files[0]["sha256"]) == 64 and ds.files[0]["rows"] == ds.frames


def test_multilabel_csv_with_a_subset_of_landmarks_and_missing_cells(tmp_path):
    clips = _clips("squat", 2)
    path = write_csv(tmp_path / "squat.csv", clips, synth.FAULTS["squat"], multilabel=True, landmarks=LEGS)
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[5:8] = ["", "", ""]                      # first landmark of line 6 is missing: not an error
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    ds = load_csv(path, faults=synth.FAULTS["squat"])
    assert ds.mode == "multilabel" and ds.classes == ("shallow_depth", "knees_caving")
    k = ds.sequences[0].keypoints
    assert np.isnan(k[:, LI["nose"]]).all() and np.isfinite(k[1:, LI["left_hip"], 0]).any()
    assert np.isnan(k[4, LI[LEGS[0]]]).all()        # line 6 = 5th data row of clip0


def test_normalised_coordinates_use_width_and_height(tmp_path):
    rows = [_header(extra=("label", "width", "height")),
            "correct,1280,720,0.5,0.5,0.6,0.5",
            "correct,1280,720,0.5,0.25,0.6,0.25"]
    ds = load_csv(_write(tmp_path, "\n".join(rows)))
    np.testing.assert_allclose(ds.sequences[0].keypoints[1, LI["left_hip"], :2], [640, 180])
    assert ds.sequences[0].keypoints[0, LI["left_hip"], 2] == 1.0   # no _v column: visible
    assert "width/height" in ds.notes[0]
    ds2 = load_csv(_write(tmp_path, "\n".join([_header(), "correct,0.5,0.5,0.6,0.5", "correct,0.5,0.4,0.6,0.4"]),
                          "n.csv"))
    assert "assumed square pixels" in ds2.notes[0]


def test_frame_column_orders_rows_and_fps_column_is_read(tmp_path):
    rows = [_header(extra=("sequence", "frame", "fps", "label")),
            "a,2,25,correct,3,3,4,4", "a,0,25,correct,1,1,2,2", "a,1,25,correct,2,2,3,3"]
    s = load_csv(_write(tmp_path, "\n".join(rows))).sequences[0]
    assert s.fps == 25 and s.keypoints[:, LI["left_hip"], 0].tolist() == [1, 2, 3]
    assert s.lines.tolist() == [3, 4, 2]


def test_file_without_sequence_column_is_one_ungrouped_sequence(tmp_path):
    path = write_csv(tmp_path / "p.csv", _clips("plank", 2), PLANK)
    text = path.read_text().splitlines()
    stripped = [",".join(line.split(",")[3:]) for line in text]   # drop the sequence, frame and fps columns
    ds = load_training_data([_write(tmp_path, "\n".join(stripped), "one.csv")], faults=PLANK)
    assert len(ds.sequences) == 1 and not ds.grouped
    two = load_training_data([_write(tmp_path, "\n".join(stripped), "a.csv"),
                              _write(tmp_path, "\n".join(stripped), "b.csv")], faults=PLANK)
    assert two.grouped and [s.name for s in two.sequences] == ["a.csv", "b.csv"]


# ----------------------------------------------------------------------------- CSV, malformed

@pytest.mark.parametrize("text,needles", [
    ("", ["data.csv is empty"]),
    ("\n\n", ["data.csv is empty"]),
    (_header(), ["header but no data rows"]),
    (_header() + "\ncorrect,1,2,3\n", ["line 2", "4 fields", "header has 5"]),
    (_header() + "\ncorrect,1,abc,3,4\n", ["line 2", "'left_hip_y'", "'abc' is not a number"]),
    (_header() + "\ncorrect,1,2,3,4\ncorrect,1,2,inf,4\n", ["line 3", "'right_hip_x'", "not a finite number"]),
    ("label,left_kne_x,left_kne_y\ncorrect,1,2\n", ["line 1", "column 2", "left_kne_x", "did you mean 'left_knee'"]),
    ("label,left_hip_x\ncorrect,1\n", ["landmark 'left_hip' has no left_hip_y column"]),
    ("label,left_hip_x,left_hip_y,left_hip_x\ncorrect,1,2,1\n", ["column 4", "appears twice"]),
    ("label,frame\ncorrect,1\n", ["no landmark columns"]),
    ("frame,left_hip_x,left_hip_y\n1,1,2\n", ["no labels"]),
    (_header() + "\n,1,2,3,4\n", ["line 2", "'label'", "empty label"]),
    (_header() + "\ncorrect,1,2,3,4\nsaging_hips,1,2,3,4\n",
     ["line 3", "'label'", "'saging_hips' is not a fault", "did you mean 'sagging_hips'"]),
    ("sagging_hips,piked_hips,left_hip_x,left_hip_y\n0,1,1,2\n2,0,1,2\n", ["line 3", "'sagging_hips'", "not 0 or 1"]),
    ("sagging_hips,piked_hips,colour,left_hip_x,left_hip_y\n0,1,red,1,2\n", ["column 3", "unknown column 'colour'"]),
    ("label,sagging_hips,left_hip_x,left_hip_y\ncorrect,0,1,2\n", ["either a 'label' column", "not both"]),
    ("sequence,frame,label,left_hip_x,left_hip_y\na,1,correct,1,2\na,1,correct,1,2\n",
     ["frame 1 appears twice", "sequence 'a'", "lines 2 and 3"]),
    ("label,left_hip_x,left_hip_y,left_hip_v\ncorrect,1,2,1.5\n", ["line 2", "'left_hip_v'", "outside 0..1"]),
])
def test_malformed_csv_errors_name_line_and_column(tmp_path, text, needles):
    path = _write(tmp_path, text)
    with pytest.raises(DatasetError) as err:
        load_csv(path, faults=PLANK)
    msg = str(err.value)
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"


def test_new_sport_accepts_any_fault_id_but_checks_its_shape(tmp_path):
    ds = load_csv(_write(tmp_path, _header() + "\nheels_up,1,2,3,4\ncorrect,1,2,3,4\n"))
    assert ds.classes == ("heels_up",)
    with pytest.raises(DatasetError, match="line 2.*not a valid fault id"):
        load_csv(_write(tmp_path, _header() + "\nHeels Up!,1,2,3,4\n", "b.csv"))


def test_multilabel_files_must_share_fault_columns(tmp_path):
    a = _write(tmp_path, "sagging_hips,left_hip_x,left_hip_y\n0,1,2\n", "a.csv")
    b = _write(tmp_path, "piked_hips,left_hip_x,left_hip_y\n1,1,2\n", "b.csv")
    with pytest.raises(DatasetError, match="b.csv has fault columns piked_hips but a.csv has sagging_hips"):
        load_training_data([a, b], faults=PLANK)


# ----------------------------------------------------------------------------- result documents + labels

def result_doc(kps: np.ndarray, fps: float, aid: str, first_index: int = 0) -> dict:
    """A result document (shared/result.py) carrying these keypoints for the target athlete."""
    frames = []
    for t, k in enumerate(kps):
        named = None if not np.isfinite(k).any() else {
            n: [round(float(v), 2) for v in k[i]] for i, n in enumerate(LANDMARK_NAMES) if np.isfinite(k[i]).all()}
        frames.append({"index": first_index + t, "t_s": round(t / fps, 4), "keypoints": named})
    doc = AnalysisResult(id=aid, sport="plank", video=VideoInfo(fps=fps, width=1280, height=720, frames=len(kps)),
                         athletes=[{"track_id": 1, "is_target": True, "frames": frames}], faults=[])
    return json.loads(doc.model_dump_json(by_alias=True))


def _runs(mask: np.ndarray):
    padded = np.concatenate([[False], mask, [False]])
    e = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(e[::2], e[1::2] - 1))


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_result_documents_with_frame_range_labels(tmp_path, fmt):
    clips = _clips("plank", 2, seed=4, duration_s=4.0)
    paths, ranges = [], []
    for i, (name, kps, labels, fps) in enumerate(clips):
        aid = f"{i:032x}"
        p = tmp_path / f"result{i}.json"
        p.write_text(json.dumps(result_doc(kps, fps, aid, first_index=100)))
        paths.append(p)
        for f in PLANK:
            ranges += [{"video": aid if i == 0 else p.name, "fault": f, "start_frame": int(a) + 100,
                        "end_frame": int(b) + 100} for a, b in _runs(labels[f])]
    assert ranges, "the synthetic clips should show some fault"
    if fmt == "json":
        lab = _write(tmp_path, json.dumps({"labels": ranges}), "labels.json")
    else:
        lab = _write(tmp_path, "video,fault,start_frame,end_frame\n" + "\n".join(
            f"{r['video']},{r['fault']},{r['start_frame']},{r['end_frame']}" for r in ranges), "labels.csv")
    ds = load_training_data(paths, labels=lab, faults=PLANK)
    assert ds.grouped and [s.name for s in ds.sequences] == [f"{0:032x}", f"{1:032x}"]
    assert {f["format"] for f in ds.files} == {"result", "labels"}
    for (name, kps, labels, fps), seq in zip(clips, ds.sequences):
        assert seq.fps == fps
        for f in ds.classes:
            assert (seq.labels[f] == labels[f]).all()
        ok = np.isfinite(kps).all(axis=-1)
        np.testing.assert_allclose(seq.keypoints[ok], kps[ok], atol=0.006)


def test_result_document_errors(tmp_path):
    clip = synth.generate("plank", 1, duration_s=2.0)
    doc = tmp_path / "r.json"
    doc.write_text(json.dumps(result_doc(clip.keypoints, clip.fps, "a" * 32)))
    with pytest.raises(DatasetError, match="r.json is a result document: give the frame ranges"):
        load_training_data([doc])
    cases = [
        ("video,fault,start_frame,end_frame\nzzz,sagging_hips,1,5\n", ["labels.csv line 2", "'video'", "'zzz' matches no result document"]),
        ("video,fault,start_frame,end_frame\nr.json,sagging_hips,x,5\n", ["line 2", "'start_frame'", "'x' is not a number"]),
        ("video,fault,start_frame,end_frame\nr.json,sagging_hips,9,5\n", ["line 2", "ends before it starts"]),
        ("video,fault,start_frame,end_frame\nr.json,sagging_hips,5000,5005\n", ["line 2", "selects no frame"]),
        ("video,fault,start_frame,end_frame\nr.json,bent_knees,1,5\n", ["line 2", "'fault'", "not a fault of this sport"]),
        ("video,fault,start,end_frame\nr.json,sagging_hips,1,5\n", ["line 2", "'start'", "unknown field"]),
        ("", ["labels.csv is empty"]),
    ]
    for text, needles in cases:
        lab = _write(tmp_path, text, "labels.csv")
        with pytest.raises(DatasetError) as err:
            load_training_data([doc], labels=lab, faults=PLANK)
        for n in needles:
            assert n in str(err.value), (n, str(err.value))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x", "sport": "plank"}))
    with pytest.raises(DatasetError, match="bad.json: not a result document"):
        load_training_data([bad], labels=_write(tmp_path, '{"labels": []}', "l.json"))
    lab = _write(tmp_path, '{"labels": [{"fault": "sagging_hips", "start_s": 0.1, "end_s": 0.5}]}', "s.json")
    ds = load_training_data([doc], labels=lab, faults=PLANK)
    t = np.arange(len(clip.keypoints)) / clip.fps
    assert (ds.sequences[0].labels["sagging_hips"] == ((t >= 0.1 - 1e-6) & (t <= 0.5 + 1e-6))).all()
