"""Labelled training data for the judge: landmark CSVs, or our own result documents plus a labels file.

Everything loads into a `Dataset`: a list of `Sequence`s (consecutive frames of one video, with
keypoints [T,33,3] = x_px, y_px, visibility in BlazePose order, NaN where a landmark is missing)
and per-frame boolean labels, one column per fault type. The judge's features are computed per
sequence (they are median-filtered over time and some packs look at motion), exactly as the
judge service does on a whole analysis.

(a) CSV, one row per frame (docs/judge.md "Training data" has a worked example):

    label                 multi-class: a fault id, or "correct" / "none" for a frame without a fault
    <fault_id> ...        or multi-label: one 0/1 column per fault type (not both styles in one file)
    <landmark>_x, _y      BlazePose landmark names (shared/skeleton.py), any subset of the 33;
    <landmark>_z, _v      optional; z is read and checked but unused (the features are 2D); _v (or
                          _visibility) is the landmark's visibility / confidence, 1.0 when absent
    sequence / video      optional: rows with the same value are one sequence (clip); without them
                          the file is one sequence, rows in file order
    frame                 optional: frame number, orders the rows of a sequence
    fps                   optional: frames per second of the sequence (default 30)
    width, height         optional: frame size in pixels, used when coordinates are normalised

Coordinates are pixels (image y down) or normalised to 0..1 (MediaPipe's normalised landmarks);
a file whose coordinates all lie within [-0.5, 1.5] is taken as normalised and scaled by its
width/height columns, or, without them, as square pixels (noted: angles then carry the frame's
aspect ratio). An empty cell (or nan / NA / null) is a missing landmark, which the judge handles
like an undetected joint. A landmark without both x and y is missing.

(b) Result documents (analyses/<id>/result.json, shared/result.py) plus a labels file of frame
ranges -> fault types, as JSON

    {"labels": [{"video": "<analysis id or file name>", "fault": "bent_knees",
                 "start_frame": 120, "end_frame": 160}, ...]}          (a bare list works too)

or CSV with the header `video,fault,start_frame,end_frame`. Frame numbers are the result
document's frame `index` (the video's frame numbers), both ends inclusive; `start_s`/`end_s`
(seconds) may replace them. `video` may be left out when there is one result document. Every
frame of a given result document outside all ranges of a fault is a negative for that fault
(a document with no range at all is all-correct). The target athlete's keypoints are used.

Errors name the file, the line (1-based, the header is line 1) and the column.
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence as Seq

REPO_ROOT = Path(__file__).resolve().parents[2]


def exercise_correction_dir() -> Path:
    """The human-labelled Exercise-Correction landmark files (training portions): `shared/data/`
    beside the checkout, as the project's machines and CI lay it out, or COACH_EXERCISE_DATA."""
    import os

    return Path(os.environ.get("COACH_EXERCISE_DATA") or REPO_ROOT.parent / "shared" / "data" / "exercise-correction")

import numpy as np

from shared.skeleton import LANDMARK_INDEX, LANDMARK_NAMES, NUM_LANDMARKS

GROUP_COLUMNS = ("sequence", "video")
META_COLUMNS = ("label", "frame", "fps", "width", "height") + GROUP_COLUMNS
NO_FAULT = ("correct", "none")
AXES = {"x": 0, "y": 1, "z": 2, "v": 3, "visibility": 3}
MISSING = {"", "nan", "na", "n/a", "null", "none", "-"}
DEFAULT_FPS = 30.0
FAULT_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DatasetError(ValueError):
    """A training file cannot be used; the message names the file, line and column."""


@dataclass
class Sequence:
    name: str                # unique within a Dataset: "file.csv", "file.csv#clip3", "<analysis id>"
    keypoints: np.ndarray    # [T,33,3] x_px, y_px, visibility; NaN = missing
    labels: dict[str, np.ndarray]  # fault id -> [T] bool (faults this source labels)
    fps: float
    lines: np.ndarray        # [T] source line (CSV) or frame index (result doc), for messages
    sha256: str = ""         # of the file it came from (tells training data from new data in `eval`)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class Dataset:
    sequences: list[Sequence]
    classes: tuple[str, ...]          # fault ids, in the order first seen (or the pack's order)
    mode: str                         # "multiclass" (<= 1 fault per frame, label column / ranges) or "multilabel"
    grouped: bool                     # the data says which rows belong together (sequence column, files, videos)
    files: list[dict] = field(default_factory=list)  # [{"path", "name", "sha256", "format", "rows"}]
    notes: list[str] = field(default_factory=list)
    coordinates: str = "pixels"       # "normalized": MediaPipe 0..1 coordinates without a frame size (kept as square pixels)

    @property
    def frames(self) -> int:
        return sum(len(s) for s in self.sequences)

    def label_matrix(self, seq: Sequence) -> np.ndarray:
        """[T, len(classes)] bool; a fault the source does not mention is absent (see module doc)."""
        return np.stack([seq.labels.get(c, np.zeros(len(seq), bool)) for c in self.classes], axis=1) \
            if self.classes else np.zeros((len(seq), 0), bool)

    def fingerprint(self) -> str:
        """sha256 over the sha256 of every file read (data and labels), order-independent."""
        return hashlib.sha256("\n".join(sorted(f["sha256"] for f in self.files)).encode()).hexdigest()

    def summary(self) -> dict:
        return {"files": self.files, "fingerprint": self.fingerprint(), "mode": self.mode, "grouped": self.grouped,
                "sequences": len(self.sequences), "frames": self.frames, "classes": list(self.classes),
                "positives": {c: int(sum(int(s.labels.get(c, np.zeros(0, bool)).sum()) for s in self.sequences))
                              for c in self.classes},
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- helpers

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _where(path: Path, line: int | None = None, column: str | None = None) -> str:
    out = path.name
    if line is not None:
        out += f" line {line}"
    if column is not None:
        out += f", column {column!r}"
    return out


def _number(raw: str, path: Path, line: int, column: str) -> float:
    s = raw.strip()
    if s.lower() in MISSING:
        return math.nan
    try:
        v = float(s)
    except ValueError:
        raise DatasetError(f"{_where(path, line, column)}: {raw!r} is not a number "
                           "(leave the cell empty for a missing landmark)") from None
    if math.isinf(v):
        raise DatasetError(f"{_where(path, line, column)}: {raw!r} is not a finite number")
    return v


def _suggest(word: str, options: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.75)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _split_landmark_column(col: str) -> tuple[str, str] | None:
    """'left_knee_x' -> ('left_knee', 'x'); None when the name has no coordinate suffix."""
    for suffix in sorted(AXES, key=len, reverse=True):
        if col.endswith("_" + suffix) and len(col) > len(suffix) + 1:
            return col[: -len(suffix) - 1], suffix
    return None


def _check_fault_id(fid: str, allowed: Seq[str] | None, where: str, what: str) -> str:
    if allowed is not None:
        if fid not in allowed:
            raise DatasetError(f"{where}: {what} {fid!r} is not a fault of this sport "
                               f"({', '.join(allowed)}) nor {' / '.join(NO_FAULT)}{_suggest(fid, list(allowed) + list(NO_FAULT))}")
    elif not FAULT_ID.match(fid):
        raise DatasetError(f"{where}: {what} {fid!r} is not a valid fault id (lower case letters, digits and _, "
                           "starting with a letter)")
    return fid


# ----------------------------------------------------------------------------- CSV

def load_csv(path: str | Path, faults: Seq[str] | None = None, fps: float = DEFAULT_FPS,
             label_map: dict[str, str] | None = None) -> Dataset:
    """One landmark CSV -> Dataset. faults: the fault ids allowed (a known sport's), None = any.
    label_map: the file's label values -> fault ids or correct (e.g. {"c": "correct", "l": "lean_back"})."""
    label_map = {k.strip().lower(): v for k, v in (label_map or {}).items()}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise DatasetError(f"{path.name} is empty: expected a header row with a label column (or one 0/1 column "
                           "per fault) and landmark columns such as left_hip_x, left_hip_y")
    rows = list(csv.reader(io.StringIO(text)))
    header = [h.strip().lower() for h in rows[0]]
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(c.strip() for c in r)]  # (line, cells); blank lines skipped
    if not body:
        raise DatasetError(f"{path.name} has a header but no data rows")

    # --- classify columns
    seen: dict[str, int] = {}
    landmark_cols: dict[str, dict[int, int]] = {}  # landmark -> {axis: column index}
    fault_cols: dict[str, int] = {}
    meta: dict[str, int] = {}
    for j, col in enumerate(header):
        where = f"{path.name} line 1, column {j + 1}"
        if not col:
            raise DatasetError(f"{where} has no name")
        if col in seen:
            raise DatasetError(f"{where}: column {col!r} appears twice (also column {seen[col] + 1})")
        seen[col] = j
        if col in META_COLUMNS:
            meta[col] = j
            continue
        split = _split_landmark_column(col)
        if split and split[0] in LANDMARK_INDEX:
            landmark_cols.setdefault(split[0], {})[AXES[split[1]]] = j
            continue
        if split and (faults is None or col not in faults):
            raise DatasetError(f"{where}: {col!r} is not a landmark column: {split[0]!r} is not a BlazePose landmark"
                               f"{_suggest(split[0], LANDMARK_NAMES)}; landmarks are {', '.join(LANDMARK_NAMES)}")
        if faults is not None and col not in faults:
            raise DatasetError(f"{where}: unknown column {col!r}{_suggest(col, list(faults) + list(META_COLUMNS))}: "
                               f"expected <landmark>_x/_y/_z/_v, a fault of this sport ({', '.join(faults)}), "
                               f"or one of {', '.join(META_COLUMNS)}")
        if faults is None and not FAULT_ID.match(col):
            raise DatasetError(f"{where}: {col!r} is neither a landmark column, one of {', '.join(META_COLUMNS)}, "
                               "nor a valid fault id")
        fault_cols[col] = j
    if not landmark_cols:
        raise DatasetError(f"{path.name} line 1: no landmark columns (<landmark>_x, <landmark>_y, e.g. left_hip_x)")
    for lm, axes in landmark_cols.items():
        for need, name in ((0, "x"), (1, "y")):
            if need not in axes:
                raise DatasetError(f"{path.name} line 1: landmark {lm!r} has no {lm}_{name} column")
    if "label" in meta and fault_cols:
        raise DatasetError(f"{path.name} line 1: use either a 'label' column (multi-class) or one 0/1 column per fault "
                           f"(multi-label), not both (fault columns: {', '.join(fault_cols)})")
    if "label" not in meta and not fault_cols:
        raise DatasetError(f"{path.name} line 1: no labels: add a 'label' column (a fault id or correct/none per row) "
                           "or one 0/1 column per fault type")
    if ("width" in meta) != ("height" in meta):
        raise DatasetError(f"{path.name} line 1: give both 'width' and 'height' columns, or neither")

    # --- read cells
    n = len(body)
    values = np.full((n, NUM_LANDMARKS, 4), np.nan)  # x, y, z, v
    labels: dict[str, np.ndarray] = {f: np.zeros(n, bool) for f in fault_cols}
    group = [""] * n
    frame = np.arange(n, dtype=np.int64)
    seq_fps = np.full(n, float(fps))
    size = np.full((n, 2), np.nan)
    lines = np.array([ln for ln, _ in body])
    for i, (ln, cells) in enumerate(body):
        if len(cells) != len(header):
            raise DatasetError(f"{_where(path, ln)} has {len(cells)} fields, the header has {len(header)}")
        for lm, axes in landmark_cols.items():
            li = LANDMARK_INDEX[lm]
            for ax, j in axes.items():
                values[i, li, ax] = _number(cells[j], path, ln, header[j])
        if "label" in meta:
            raw = cells[meta["label"]].strip().lower()
            raw = label_map.get(raw, raw)
            if not raw:
                raise DatasetError(f"{_where(path, ln, 'label')}: empty label (write correct or none for a frame "
                                   "without a fault)")
            if raw not in NO_FAULT:
                fid = _check_fault_id(raw, faults, _where(path, ln, "label"), "label")
                labels.setdefault(fid, np.zeros(n, bool))[i] = True
        for fid, j in fault_cols.items():
            raw = cells[j].strip()
            if raw not in ("0", "1", "0.0", "1.0", "true", "false", "True", "False"):
                raise DatasetError(f"{_where(path, ln, fid)}: {raw!r} is not 0 or 1 (multi-label fault columns "
                                   "hold 1 where the frame shows the fault, 0 where not)")
            labels[fid][i] = raw in ("1", "1.0", "true", "True")
        key = tuple(cells[meta[c]].strip() for c in GROUP_COLUMNS if c in meta)
        group[i] = "/".join(key)
        if "frame" in meta:
            v = _number(cells[meta["frame"]], path, ln, "frame")
            if not (np.isfinite(v) and v == int(v) and v >= 0):
                raise DatasetError(f"{_where(path, ln, 'frame')}: {cells[meta['frame']]!r} is not a frame number "
                                   "(a whole number >= 0)")
            frame[i] = int(v)
        if "fps" in meta:
            v = _number(cells[meta["fps"]], path, ln, "fps")
            if not (np.isfinite(v) and 1 <= v <= 1000):
                raise DatasetError(f"{_where(path, ln, 'fps')}: {cells[meta['fps']]!r} is not a frame rate (1-1000)")
            seq_fps[i] = v
        if "width" in meta:
            for k, c in enumerate(("width", "height")):
                v = _number(cells[meta[c]], path, ln, c)
                if not (np.isfinite(v) and v > 0):
                    raise DatasetError(f"{_where(path, ln, c)}: {cells[meta[c]]!r} is not a frame size in pixels")
                size[i, k] = v

    # --- coordinates: pixels or normalised
    notes: list[str] = []
    coordinates = "pixels"
    xy = values[..., :2]
    finite = xy[np.isfinite(xy)]
    if finite.size == 0:
        raise DatasetError(f"{path.name}: no row has any landmark coordinates")
    if np.all(np.abs(finite - 0.5) <= 1.0):  # everything within [-0.5, 1.5]: normalised
        if "width" in meta:
            values[..., 0] *= size[:, None, 0]
            values[..., 1] *= size[:, None, 1]
            notes.append(f"{path.name}: normalised coordinates, scaled by the width/height columns")
        else:
            values[..., :2] *= 1000.0
            coordinates = "normalized"
            notes.append(f"{path.name}: normalised coordinates without width/height columns: assumed square pixels "
                         "(angles are distorted by the frame's aspect ratio unless it is 1:1)")
    kps = np.full((n, NUM_LANDMARKS, 3), np.nan)
    present = np.isfinite(values[..., 0]) & np.isfinite(values[..., 1])
    kps[..., :2] = np.where(present[..., None], values[..., :2], np.nan)
    vis = values[..., 3]
    kps[..., 2] = np.where(present, np.where(np.isfinite(vis), vis, 1.0), np.nan)
    if np.any((vis < 0) | (vis > 1)):
        i, li = np.argwhere((vis < 0) | (vis > 1))[0]
        raise DatasetError(f"{_where(path, int(lines[i]), LANDMARK_NAMES[li] + '_v')}: visibility "
                           f"{vis[i, li]:g} is outside 0..1")

    # --- sequences
    digest = sha256_file(path)
    sequences = []
    order_keys = list(dict.fromkeys(group))
    for g in order_keys:
        idx = np.flatnonzero(np.array([k == g for k in group]))
        if "frame" in meta:
            idx = idx[np.argsort(frame[idx], kind="stable")]
            dup = np.flatnonzero(np.diff(frame[idx]) == 0)
            if dup.size:
                a, b = idx[dup[0]], idx[dup[0] + 1]
                raise DatasetError(f"{path.name}: frame {frame[a]} appears twice in "
                                   f"{'sequence ' + repr(g) if g else 'the file'} (lines {lines[a]} and {lines[b]})")
        f = np.unique(seq_fps[idx])
        if f.size > 1:
            raise DatasetError(f"{path.name}: the fps column changes within {'sequence ' + repr(g) if g else 'the file'} "
                               f"({', '.join(f'{v:g}' for v in f)})")
        name = f"{path.name}#{g}" if g else path.name
        sequences.append(Sequence(name, kps[idx], {k: v[idx] for k, v in labels.items()}, float(f[0]), lines[idx], digest))
    multilabel = bool(fault_cols)
    classes = tuple(fault_cols) if multilabel else tuple(labels)
    if faults is not None:
        classes = tuple(f for f in faults if f in classes)
    grouped = any(c in meta for c in GROUP_COLUMNS)
    info = {"path": str(path), "name": path.name, "sha256": digest, "format": "csv-" + (
        "multilabel" if multilabel else "multiclass"), "rows": n}
    return Dataset(sequences, classes, "multilabel" if multilabel else "multiclass", grouped, [info], notes, coordinates)


# ----------------------------------------------------------------------------- result documents + labels

@dataclass(frozen=True)
class RangeLabel:
    video: str | None
    fault: str
    start_frame: int | None
    end_frame: int | None
    start_s: float | None
    end_s: float | None
    where: str   # "labels.csv line 4" / "labels.json labels[3]"


def load_labels(path: str | Path, faults: Seq[str] | None = None) -> list[RangeLabel]:
    """A labels file (JSON or CSV, see the module doc) -> frame-range labels."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DatasetError(f"{path.name} is empty: expected frame ranges (video, fault, start_frame, end_frame)")
    items: list[tuple[str, dict]] = []
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in "[{":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{_where(path, exc.lineno)}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        entries = doc.get("labels") if isinstance(doc, dict) else doc
        if not isinstance(entries, list):
            raise DatasetError(f"{path.name}: expected {{\"labels\": [...]}} or a list of ranges")
        for k, e in enumerate(entries):
            where = f"{path.name} labels[{k}]"
            if not isinstance(e, dict):
                raise DatasetError(f"{where}: expected an object with fault, start_frame, end_frame")
            items.append((where, {str(a).lower(): ("" if b is None else str(b)) for a, b in e.items()}))
    else:
        rows = list(csv.reader(io.StringIO(text)))
        header = [h.strip().lower() for h in rows[0]]
        for ln, cells in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise DatasetError(f"{_where(path, ln)} has {len(cells)} fields, the header has {len(header)}")
            items.append((f"{path.name} line {ln}", dict(zip(header, cells))))
    known = {"video", "fault", "start_frame", "end_frame", "start_s", "end_s"}
    out = []
    for where, e in items:
        unknown = set(e) - known
        if unknown:
            col = sorted(unknown)[0]
            raise DatasetError(f"{where}, column {col!r}: unknown field{_suggest(col, known)}; "
                               f"expected {', '.join(sorted(known))}")
        fault = e.get("fault", "").strip().lower()
        if not fault:
            raise DatasetError(f"{where}, column 'fault': missing fault type")
        _check_fault_id(fault, faults, f"{where}, column 'fault'", "fault")

        def num(col: str, integer: bool):
            raw = e.get(col, "").strip()
            if raw == "":
                return None
            try:
                v = float(raw)
            except ValueError:
                raise DatasetError(f"{where}, column {col!r}: {raw!r} is not a number") from None
            if not math.isfinite(v) or v < 0 or (integer and v != int(v)):
                raise DatasetError(f"{where}, column {col!r}: {raw!r} is not a "
                                   f"{'frame number (a whole number >= 0)' if integer else 'time in seconds >= 0'}")
            return int(v) if integer else v

        sf, ef, ss, es = num("start_frame", True), num("end_frame", True), num("start_s", False), num("end_s", False)
        if (sf is None) != (ef is None) or (ss is None) != (es is None) or (sf is None) == (ss is None):
            raise DatasetError(f"{where}: give start_frame and end_frame, or start_s and end_s")
        if (sf is not None and sf > ef) or (ss is not None and ss > es):
            raise DatasetError(f"{where}: the range ends before it starts")
        out.append(RangeLabel(e.get("video", "").strip() or None, fault, sf, ef, ss, es, where))
    return out


def load_result(path: str | Path) -> tuple[str, float, np.ndarray, np.ndarray, np.ndarray]:
    """A result document -> (analysis id, fps, frame indices [T], times [T], keypoints [T,33,3])."""
    from pydantic import ValidationError

    from shared.result import AnalysisResult

    path = Path(path)
    try:
        doc = AnalysisResult.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise DatasetError(f"{path.name}: not a result document (shared/schemas/result.schema.json): "
                           f"{loc}: {err['msg']}") from None
    if not doc.athletes:
        raise DatasetError(f"{path.name}: the result document has no athlete")
    athlete = next((a for a in doc.athletes if a.is_target), doc.athletes[0])
    frames = sorted(athlete.frames, key=lambda f: f.index)
    kps = np.full((len(frames), NUM_LANDMARKS, 3), np.nan)
    for t, f in enumerate(frames):
        for name, v in (f.keypoints or {}).items():
            if name not in LANDMARK_INDEX:
                raise DatasetError(f"{path.name}: frame {f.index}: unknown landmark {name!r}{_suggest(name, LANDMARK_NAMES)}")
            if len(v) >= 2 and all(x is not None and math.isfinite(x) for x in v[:2]):
                kps[t, LANDMARK_INDEX[name]] = (v[0], v[1], v[2] if len(v) > 2 else 1.0)
    idx = np.array([f.index for f in frames], dtype=np.int64)
    ts = np.array([f.t_s for f in frames], dtype=np.float64)
    return doc.id, float(doc.video.fps), idx, ts, kps


def load_results(paths: Seq[str | Path], labels_path: str | Path, faults: Seq[str] | None = None) -> Dataset:
    """Result documents + a labels file of frame ranges -> Dataset (one sequence per document)."""
    ranges = load_labels(labels_path, faults)
    labels_path = Path(labels_path)
    docs = []
    for p in paths:
        p = Path(p)
        aid, fps, idx, ts, kps = load_result(p)
        docs.append((p, aid, fps, idx, ts, kps, sha256_file(p)))
    classes = tuple(dict.fromkeys([r.fault for r in ranges] if faults is None else [f for f in faults
                                                                                    if any(r.fault == f for r in ranges)]))
    names = {}
    for d in docs:
        for alias in (d[1], d[0].name, d[0].stem):
            names.setdefault(alias, d)
    per_doc: dict[str, dict[str, np.ndarray]] = {str(d[0]): {c: np.zeros(len(d[3]), bool) for c in classes} for d in docs}
    for r in ranges:
        if r.video is None:
            if len(docs) != 1:
                raise DatasetError(f"{r.where}, column 'video': required with {len(docs)} result documents "
                                   f"(an analysis id or file name: {', '.join(d[0].name for d in docs)})")
            d = docs[0]
        elif r.video in names:
            d = names[r.video]
        else:
            raise DatasetError(f"{r.where}, column 'video': {r.video!r} matches no result document given "
                               f"({', '.join(f'{d[0].name} = {d[1]}' for d in docs)})")
        path, aid, fps, idx, ts, kps, _ = d
        sel = (idx >= r.start_frame) & (idx <= r.end_frame) if r.start_frame is not None else \
              (ts >= r.start_s - 1e-6) & (ts <= r.end_s + 1e-6)
        if not sel.any():
            span = f"frames {idx.min()}-{idx.max()}" if len(idx) else "no frames"
            raise DatasetError(f"{r.where}: the range selects no frame of {path.name} ({span})")
        per_doc[str(path)][r.fault] |= sel
    seqs = [Sequence(d[1], d[5], per_doc[str(d[0])], d[2], d[3], d[6]) for d in docs]
    multi = any(np.sum(np.stack(list(s.labels.values())), axis=0).max(initial=0) > 1 for s in seqs if s.labels)
    files = [{"path": str(d[0]), "name": d[0].name, "sha256": d[6], "format": "result", "rows": len(d[3])}
             for d in docs]
    files.append({"path": str(labels_path), "name": labels_path.name, "sha256": sha256_file(labels_path),
                  "format": "labels", "rows": len(ranges)})
    notes = [f"{d[0].name}: no labelled range, all {len(d[3])} frames count as correct" for d in docs
             if not any(per_doc[str(d[0])][c].any() for c in classes)]
    return Dataset(seqs, classes, "multilabel" if multi else "multiclass", True, files, notes)


# ----------------------------------------------------------------------------- several files

def load_training_data(paths: Seq[str | Path], labels: str | Path | None = None, faults: Seq[str] | None = None,
                       fps: float = DEFAULT_FPS, label_map: dict[str, str] | None = None) -> Dataset:
    """CSV files and/or result documents (with a labels file) -> one Dataset.

    Several files are several groups for the evaluation split (a file without a sequence column
    is one sequence). Multi-label CSVs must share their fault columns: a fault column missing from
    one file would leave its frames unlabelled, not negative."""
    if not paths:
        raise DatasetError("no data files given")
    csvs, results = [], []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise DatasetError(f"{p}: no such file")
        (results if p.suffix.lower() == ".json" else csvs).append(p)
    if results and labels is None:
        raise DatasetError(f"{results[0].name} is a result document: give the frame ranges of its faults with --labels")
    if labels is not None and not results:
        raise DatasetError("--labels applies to result documents (.json); the CSV files carry their own labels")
    parts = [load_csv(p, faults, fps, label_map) for p in csvs]
    if results:
        parts.append(load_results(results, labels, faults))
    if len(parts) == 1:
        ds = parts[0]
        if len(csvs) == 1 and not results:
            return ds
        ds.grouped = True
        return ds
    ml = [p for p in parts if p.mode == "multilabel" and p.files[0]["format"] == "csv-multilabel"]
    for p in ml[1:]:
        if set(p.classes) != set(ml[0].classes):
            raise DatasetError(f"{p.files[0]['name']} has fault columns {', '.join(p.classes)} but "
                               f"{ml[0].files[0]['name']} has {', '.join(ml[0].classes)}: multi-label files must "
                               "share their fault columns")
    classes = tuple(dict.fromkeys(c for p in parts for c in p.classes))
    if ml and set(classes) != set(ml[0].classes):
        extra = sorted(set(classes) - set(ml[0].classes))
        raise DatasetError(f"{ml[0].files[0]['name']} has no column for fault(s) {', '.join(extra)} labelled in other "
                           "files: add the columns (0/1) so its frames are labelled for every fault")
    if faults is not None:
        classes = tuple(f for f in faults if f in classes)
    seqs, files, notes = [], [], []
    for p in parts:
        seqs += p.sequences
        files += p.files
        notes += p.notes
    names = [s.name for s in seqs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"two inputs are both named {dup!r}: give the files different names")
    mode = "multilabel" if any(p.mode == "multilabel" for p in parts) else "multiclass"
    coords = {p.coordinates for p in parts}
    if len(coords) > 1:
        raise DatasetError("some files have normalised coordinates without width/height, others pixels: "
                           "add width/height columns so they can be put on one scale")
    return Dataset(seqs, classes, mode, True, files, notes, coords.pop())


def parse_label_map(text: str | None) -> dict[str, str]:
    """'C=correct,L=knee_over_toe' -> {'c': 'correct', 'l': 'knee_over_toe'} (keys compared case-insensitively)."""
    out = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise DatasetError(f"--label-map: {part!r} is not VALUE=fault_id (e.g. C=correct,L=knee_over_toe)")
        k, v = (x.strip() for x in part.split("=", 1))
        out[k.lower()] = v
    return out


# ----------------------------------------------------------------------------- writing

def write_csv(path: str | Path, sequences: Seq[tuple[str, np.ndarray, dict[str, np.ndarray], float]],
              faults: Seq[str], multilabel: bool = False, landmarks: Seq[str] | None = None,
              decimals: int = 2, size: tuple[int, int] | None = None) -> Path:
    """Write (name, keypoints [T,33,3], labels {fault: [T] bool}, fps) sequences in the CSV format above.

    Multi-class needs at most one fault per frame (it raises otherwise). Missing landmarks are
    written as empty cells. size=(width, height): write coordinates normalised to 0..1 plus
    width/height columns (MediaPipe's normalised landmarks)."""
    path = Path(path)
    landmarks = list(landmarks or LANDMARK_NAMES)
    header = ["sequence", "frame", "fps"] + (["width", "height"] if size else []) + \
        (list(faults) if multilabel else ["label"])
    if size:
        decimals = max(decimals, 5)
    for lm in landmarks:
        header += [f"{lm}_x", f"{lm}_y", f"{lm}_v"]
    fmt = lambda v, d: "" if not np.isfinite(v) else f"{v:.{d}f}"  # noqa: E731
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for name, kps, labels, fps in sequences:
            for t in range(len(kps)):
                on = [f for f in faults if bool(labels[f][t])]
                if multilabel:
                    lab = ["1" if f in on else "0" for f in faults]
                else:
                    if len(on) > 1:
                        raise ValueError(f"{name} frame {t}: {', '.join(on)} at once; write it multi-label")
                    lab = [on[0] if on else "correct"]
                row = [name, str(t), f"{fps:g}"] + ([str(size[0]), str(size[1])] if size else []) + lab
                for lm in landmarks:
                    x, y, v = kps[t, LANDMARK_INDEX[lm]]
                    if size:
                        x, y = x / size[0], y / size[1]
                    ok = np.isfinite(x) and np.isfinite(y)
                    row += [fmt(x, decimals), fmt(y, decimals), fmt(v, 3)] if ok else ["", "", ""]
                w.writerow(row)
    return path
