"""Train and evaluate a sport pack on labelled data: the code behind `coach judge train` and `eval`.

Per fault, as in the paper (Sec. 6.3) and the shipped packs: StandardScaler + SVC(RBF, C=2,
gamma='scale') with Platt-scaled probabilities (5-fold CalibratedClassifierCV), on the pack's
features computed per sequence exactly as the judge service computes them. `grid=True` first
searches C x gamma on the validation split (average precision of the SVM's decision values,
fitted on a subsample), then fits the calibrated model with the winner.

Split. Frames of one clip are near-duplicates, so frames are never split at random:
  * by-sequence: when the data says which rows belong together (a sequence / video column,
    several files, result documents) and there are at least 5 sequences, whole sequences go to
    train / validation / test (60 / 20 / 20 of the sequences);
  * contiguous-blocks: otherwise the frames are cut into ~10 blocks of consecutive frames (at
    least 20 each) and whole blocks go to the splits; the report says so. Features see a few
    frames across a block edge (median filter, motion), a small optimistic bias.
Among seeded shuffles the first one that gives every fault positives in every split is kept
(else the one covering most). Thresholds: per fault, the probability in 0.2-0.8 with the best
validation F1. All reported figures are on the test split, which nothing was fitted or chosen on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from services.judge.datasets import Dataset, DatasetError
from services.judge.packs import SportPack
from shared.features import FEATURE_NAMES, frame_features
from shared.sports import MIN_PRESENT_FRAC, PACK_SPECS, Fault, PackSpec

SVM_C = 2.0                      # paper, Sec. 6.3
MAX_TRAIN_FRAMES = 8000          # SVC training is O(n^2); neighbouring frames are near-duplicates anyway
GRID_C = (0.5, 2.0, 8.0, 32.0)
GRID_GAMMA = (0.3, 1.0, 3.0)     # x 1/D, i.e. around gamma='scale' on standardised inputs
GRID_FRAMES = 3000               # subsample for the search
THRESHOLDS = np.round(np.arange(0.2, 0.801, 0.05), 2)
MIN_FRAMES = 30
MIN_SEQUENCES = 5                # fewer -> contiguous blocks
N_BLOCKS, MIN_BLOCK = 10, 20
MIN_POSITIVES = 5                # per fault in the training split (5-fold calibration needs them)
PACK_VERSION = "1.0.0"
REPORT_SCHEMA = "coach.judge-report/1"

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- per-frame table

@dataclass
class FrameTable:
    X: np.ndarray        # [N,D] pack inputs, NaN where unmeasured
    ok: np.ndarray       # [N] the frame gets a verdict (pose present, enough features)
    Y: np.ndarray        # [N,K] bool, dataset classes
    seq: np.ndarray      # [N] sequence index into ds.sequences
    pos: np.ndarray      # [N] frame position within its sequence


def frame_table(spec: PackSpec, ds: Dataset) -> FrameTable:
    Xs, oks, Ys, seqs, poss = [], [], [], [], []
    for i, s in enumerate(ds.sequences):
        X, ok = spec.design(s.keypoints, s.fps)
        Xs.append(X), oks.append(ok), Ys.append(ds.label_matrix(s))
        seqs.append(np.full(len(s), i)), poss.append(np.arange(len(s)))
    return FrameTable(np.concatenate(Xs), np.concatenate(oks), np.concatenate(Ys), np.concatenate(seqs),
                      np.concatenate(poss))


# ----------------------------------------------------------------------------- split

def split_groups(ds: Dataset) -> tuple[str, list[tuple[int, int, int]]]:
    """(kind, groups) with each group = (sequence index, first position, last position)."""
    if ds.grouped and len(ds.sequences) >= MIN_SEQUENCES:
        return "by-sequence", [(i, 0, len(s) - 1) for i, s in enumerate(ds.sequences) if len(s)]
    block = max(MIN_BLOCK, int(np.ceil(ds.frames / N_BLOCKS)))
    groups = []
    for i, s in enumerate(ds.sequences):
        n = len(s)
        k = max(1, int(round(n / block)))
        edges = np.linspace(0, n, k + 1).astype(int)
        groups += [(i, int(a), int(b) - 1) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return "contiguous-blocks", groups


def choose_split(table: FrameTable, ds: Dataset, seed: int = 0) -> tuple[np.ndarray, dict]:
    """-> part [N] in {0 train, 1 val, 2 test} and a description of the split for the report."""
    kind, groups = split_groups(ds)
    if len(groups) < 3:
        raise DatasetError(f"too little data to split into train / validation / test: {ds.frames} frames")
    member = np.full(len(table.seq), -1)
    for g, (i, a, b) in enumerate(groups):
        member[(table.seq == i) & (table.pos >= a) & (table.pos <= b)] = g
    usable = table.ok[:, None] & table.Y  # positives that get a verdict
    pos_per_group = np.stack([usable[member == g].sum(axis=0) for g in range(len(groups))])  # [G,K]
    n = len(groups)
    n_tr, n_va = max(1, int(round(0.6 * n))), max(1, int(round(0.2 * n)))
    n_va = min(n_va, n - n_tr - 1)
    rng = np.random.default_rng(seed)
    best, best_score = None, -1
    for _ in range(200):
        order = rng.permutation(n)
        parts = np.split(order, [n_tr, n_tr + n_va])
        score = sum(int((pos_per_group[p].sum(axis=0) > 0).sum()) for p in parts)
        if score > best_score:
            best, best_score = parts, score
        if score == 3 * pos_per_group.shape[1]:
            break
    part_of_group = np.empty(n, int)
    for k, p in enumerate(best):
        part_of_group[p] = k
    part = part_of_group[member]
    names = ("train", "val", "test")
    desc = {
        "kind": kind,
        "description": (f"whole sequences: {', '.join(f'{len(best[k])} {names[k]}' for k in range(3))} of {n}"
                        if kind == "by-sequence" else
                        f"no grouping of rows into sequences (or fewer than {MIN_SEQUENCES}): {n} blocks of consecutive "
                        f"frames, {', '.join(f'{len(best[k])} {names[k]}' for k in range(3))}"),
        "frames": {names[k]: int(np.sum(part == k)) for k in range(3)},
        "groups": {names[k]: [{"sequence": ds.sequences[groups[g][0]].name, "start": groups[g][1], "end": groups[g][2]}
                              for g in sorted(best[k])] for k in range(3)},
    }
    return part, desc


# ----------------------------------------------------------------------------- spec

def spec_for(sport: str, ds: Dataset, spec: PackSpec | None = None, label_source: str = "") -> tuple[PackSpec, dict]:
    """The pack layout to train: the known sport's (restricted to faults the data labels), a given
    one, or for a new sport every feature measurable on >= 70% of the posed frames."""
    dropped = {}
    if spec is None and sport in PACK_SPECS:
        spec = PACK_SPECS[sport]
    if spec is not None:
        faults = []
        for f in spec.faults:
            if f.id in ds.classes:
                faults.append(dataclasses.replace(f, criterion=f"labelled by {label_source}" if label_source else f.criterion))
            else:
                dropped[f.id] = "not labelled in the training data"
        unknown = [c for c in ds.classes if c not in spec.fault_ids]
        faults += [_new_fault(c, label_source) for c in unknown]
        return dataclasses.replace(spec, name=sport, faults=tuple(faults)), dropped
    feats = np.concatenate([frame_features(s.keypoints) for s in ds.sequences])
    posed = np.isfinite(feats).any(axis=1)
    if not posed.any():
        raise DatasetError("no frame has enough landmarks to compute any feature")
    frac = np.isfinite(feats[posed]).mean(axis=0)
    chosen = tuple(n for n, f in zip(FEATURE_NAMES, frac) if f >= 0.7)
    if len(chosen) < 2:
        raise DatasetError("fewer than 2 features can be measured on most frames: give shoulders, hips, knees and "
                           "ankles at least (features: shared/features.py)")
    return PackSpec(sport, sport.replace("_", " ").capitalize(), tuple(_new_fault(c, label_source) for c in ds.classes),
                    chosen, (), 0.2, "as in the training data", 0.17), dropped


def _new_fault(fid: str, label_source: str) -> Fault:
    title = fid.replace("_", " ").capitalize()
    return Fault(fid, title, f"{title} (a fault type defined by the training labels).", "", "", (),
                 f"labelled by {label_source}" if label_source else "labelled in the training data")


# ----------------------------------------------------------------------------- models

def make_svm(C: float = SVM_C, gamma: float | str = "scale", seed: int = 0):
    """StandardScaler + RBF SVC with Platt-scaled probabilities (what SVC(probability=True) does)."""
    svc = SVC(C=C, kernel="rbf", gamma=gamma, random_state=seed)
    return make_pipeline(StandardScaler(), CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False))


def grid_search(Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray, seed: int) -> tuple[dict, list]:
    """Best (C, gamma) by validation average precision of the raw SVM decision values."""
    rng = np.random.default_rng(seed + 7)
    sub = rng.choice(len(Xtr), size=min(GRID_FRAMES, len(Xtr)), replace=False)
    scaler = StandardScaler().fit(Xtr[sub])
    A, B = scaler.transform(Xtr[sub]), scaler.transform(Xva)
    d = Xtr.shape[1]
    scores = []
    for C in GRID_C:
        for g in GRID_GAMMA:
            svc = SVC(C=C, kernel="rbf", gamma=g / d, random_state=seed).fit(A, ytr[sub])
            scores.append({"C": C, "gamma": round(g / d, 5), "val_average_precision":
                           round(float(average_precision_score(yva, svc.decision_function(B))), 4)})
    best = max(scores, key=lambda s: s["val_average_precision"])
    return {"C": best["C"], "gamma": best["gamma"]}, scores


def _prf(y: np.ndarray, pred: np.ndarray) -> dict:
    tp, fp, fn = int(np.sum(y & pred)), int(np.sum(~y & pred)), int(np.sum(y & ~pred))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "support": int(y.sum())}


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    if not y.any():
        return 0.5
    f1s = [_prf(y, p >= t)["f1"] for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(f1s))])


def train(sport: str, ds: Dataset, spec: PackSpec | None = None, grid: bool = False, seed: int = 0,
          label_source: str = "", log: Log = print) -> tuple[SportPack, dict]:
    """Dataset -> (pack with model_version "" until written, report)."""
    t0 = time.time()
    label_source = label_source or f"user-supplied labels ({', '.join(f['name'] for f in ds.files)})"
    spec, dropped = spec_for(sport, ds, spec, label_source)
    table = frame_table(spec, ds)
    n_ok = int(table.ok.sum())
    if n_ok < MIN_FRAMES:
        need = sorted({n for f in spec.features for n in _landmarks_of(f)})
        raise DatasetError(f"only {n_ok} of {ds.frames} frames can be judged (a pose with at least "
                           f"{MIN_PRESENT_FRAC:.0%} of the pack's features measurable); the {sport} features need the "
                           f"landmarks {', '.join(need)}; need at least {MIN_FRAMES} frames")
    part, split = choose_split(table, ds, seed)
    cls_index = {c: k for k, c in enumerate(ds.classes)}
    tr, va = table.ok & (part == 0), table.ok & (part == 1)
    Xtr_raw = table.X[tr]
    impute = np.nanmedian(np.where(np.isfinite(Xtr_raw), Xtr_raw, np.nan), axis=0) if len(Xtr_raw) else np.zeros(table.X.shape[1])
    impute = np.where(np.isfinite(impute), impute, 0.0)
    fill = lambda X: np.where(np.isfinite(X), X, impute)  # noqa: E731
    Xtr, Xva = fill(Xtr_raw), fill(table.X[va])
    log(f"[{sport}] {ds.frames} frames in {len(ds.sequences)} sequence(s), {n_ok} judgeable; split {split['kind']}: "
        f"train/val/test frames {split['frames']['train']}/{split['frames']['val']}/{split['frames']['test']}; "
        f"inputs {len(spec.input_names)}")
    rng = np.random.default_rng(seed + 1)
    sub = rng.choice(len(Xtr), size=min(MAX_TRAIN_FRAMES, len(Xtr)), replace=False)

    models, thresholds, params, searches, kept = {}, {}, {}, {}, []
    for f in spec.faults:
        k = cls_index[f.id]
        ytr, yva = table.Y[tr, k], table.Y[va, k]
        npos = int(ytr[sub].sum())
        if npos < MIN_POSITIVES or len(sub) - npos < MIN_POSITIVES:
            dropped[f.id] = (f"{npos} positive / {len(sub) - npos} negative training frames "
                             f"(need at least {MIN_POSITIVES} of each)")
            log(f"[{sport}] {f.id}: dropped: {dropped[f.id]}")
            continue
        t1 = time.time()
        C, gamma = SVM_C, "scale"
        if grid and yva.any() and not yva.all():
            best, searches[f.id] = grid_search(Xtr, ytr, Xva, yva, seed)
            C, gamma = best["C"], best["gamma"]
        clf = make_svm(C, gamma, seed).fit(Xtr[sub], ytr[sub])
        thr = best_threshold(yva, clf.predict_proba(Xva)[:, 1]) if len(Xva) else 0.5
        models[f.id], thresholds[f.id], params[f.id] = clf, thr, {"C": C, "gamma": gamma}
        kept.append(f)
        log(f"[{sport}] {f.id}: C={C} gamma={gamma} threshold {thr} (train positives {npos}/{len(sub)}, "
            f"{time.time() - t1:.1f}s)")
    if not kept:
        raise DatasetError(f"no fault has enough labelled frames to train on ({'; '.join(f'{k}: {v}' for k, v in dropped.items())})")
    spec = dataclasses.replace(spec, faults=tuple(kept))
    pack = SportPack(spec, models, thresholds, impute, model_version="", info={})
    test_ranges = split["groups"]["test"]
    evaluation = evaluate(pack, ds, lambda i, s: _in_ranges(s.name, len(s), test_ranges))
    evaluation["split"] = split["kind"]
    evaluation["split_detail"] = "held-out test split of this training run: " + split["description"]
    report = {
        "schema": REPORT_SCHEMA,
        "sport": sport,
        "model_version": "",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labels": label_source,
        "data": ds.summary(),
        "split": split,
        "svm": {"kernel": "rbf", "probability": "Platt, 5-fold (CalibratedClassifierCV)", "grid": grid,
                "per_fault": params, "search": searches, "train_frames_used": int(len(sub))},
        "features": list(spec.input_names),
        "thresholds": thresholds,
        "dropped_faults": dropped,
        "evaluation": evaluation,
        "seconds": round(time.time() - t0, 1),
    }
    pack.info = {"labels": label_source, "data_fingerprint": ds.fingerprint(), "split": split["kind"],
                 "sequences": {k: len(v) for k, v in split["groups"].items()}, "train_frames_used": int(len(sub)),
                 "svm": {"C": {k: v["C"] for k, v in params.items()}, "kernel": "rbf"},
                 "test": {c: v for c, v in evaluation["per_class"].items()}, "macro_f1": evaluation["macro_f1"]}
    return pack, report


def _landmarks_of(feature: str) -> list[str]:
    from shared.features import EXTRA_QUADRUPLES, PAPER_QUADRUPLES

    for q in PAPER_QUADRUPLES + EXTRA_QUADRUPLES:
        if q[0] == feature:
            return list(q[1:])
    base = ["left_shoulder", "right_shoulder", "left_hip", "right_hip"]
    return base + ["left_knee", "right_knee", "left_ankle", "right_ankle"]


def _in_ranges(name: str, n: int, ranges: list[dict]) -> np.ndarray:
    keep = np.zeros(n, bool)
    for r in ranges:
        if r["sequence"] == name:
            keep[r["start"]: r["end"] + 1] = True
    return keep


# ----------------------------------------------------------------------------- evaluation

def evaluate(pack: SportPack, ds: Dataset, select: Callable | None = None) -> dict:
    """Judge every sequence as the service does, keep the frames select(i, seq) -> [T] bool marks,
    and score them: per class precision / recall / F1 / support, confusion, macro F1 over faults.

    multiclass data: predicted class = the most probable fault above its threshold, else
    "correct"; per_class also lists "correct"; confusion is a matrix (rows true, columns predicted).
    multilabel data: one binary decision per fault; confusion is tp/fp/fn/tn per fault.
    Frames without a verdict (no pose, too few features) are counted, not scored."""
    classes = [f for f in pack.fault_ids if f in ds.classes]
    if not classes:
        raise DatasetError(f"the data labels none of the model's faults ({', '.join(pack.fault_ids)}); "
                           f"it labels {', '.join(ds.classes) or 'nothing'}")
    cols = [pack.fault_ids.index(c) for c in classes]
    P, Y, other = [], [], []
    no_verdict = 0
    others = [c for c in ds.classes if c not in classes]
    for i, s in enumerate(ds.sequences):
        keep = np.ones(len(s), bool) if select is None else select(i, s)
        if not keep.any():
            continue
        probs = pack.judge(s.keypoints, s.fps)[:, cols]
        lab = ds.label_matrix(s)
        ok = keep & np.isfinite(probs).all(axis=1)
        no_verdict += int((keep & ~ok).sum())
        P.append(probs[ok]), Y.append(lab[ok][:, [ds.classes.index(c) for c in classes]])
        other.append(lab[ok][:, [ds.classes.index(c) for c in others]].any(axis=1) if others else np.zeros(int(ok.sum()), bool))
    if not P or sum(len(p) for p in P) == 0:
        raise DatasetError("no frame of the evaluation data can be judged (no pose or too few landmarks)")
    P, Y, other = np.concatenate(P), np.concatenate(Y), np.concatenate(other)
    thr = np.array([pack.thresholds[c] for c in classes])
    out = {"mode": ds.mode, "model_version": pack.model_version, "frames": int(len(P)) + no_verdict,
           "frames_scored": int(len(P)), "frames_without_verdict": no_verdict}
    if others:
        out["not_evaluated"] = {"classes": others, "reason": "not faults of this model",
                                "frames_dropped": int(other.sum())} if ds.mode == "multiclass" else \
                               {"classes": others, "reason": "not faults of this model"}
    if ds.mode == "multiclass":
        P, Y = P[~other], Y[~other]   # a frame whose true class the model does not know cannot be scored
        labels = classes + ["correct"]
        true = np.where(Y.any(axis=1), Y.argmax(axis=1), len(classes))
        above = P >= thr
        masked = np.where(above, P, -1.0)
        pred = np.where(above.any(axis=1), masked.argmax(axis=1), len(classes))
        matrix = np.zeros((len(labels), len(labels)), int)
        np.add.at(matrix, (true, pred), 1)
        per = {lab: {**_prf(true == k, pred == k), "prevalence": round(float(np.mean(true == k)), 4)}
               for k, lab in enumerate(labels)}
        out["confusion"] = {"labels": labels, "matrix": matrix.tolist(), "rows": "true", "columns": "predicted"}
    else:
        pred = P >= thr
        per, conf = {}, {}
        for k, c in enumerate(classes):
            y, p = Y[:, k], pred[:, k]
            per[c] = {**_prf(y, p), "prevalence": round(float(y.mean()), 4)}
            conf[c] = {"tp": int(np.sum(y & p)), "fp": int(np.sum(~y & p)), "fn": int(np.sum(y & ~p)),
                       "tn": int(np.sum(~y & ~p))}
        out["confusion"] = conf
    scored = [c for c in classes if per[c]["support"] > 0]
    out["per_class"] = per
    out["macro_f1"] = round(float(np.mean([per[c]["f1"] for c in scored])), 4) if scored else 0.0
    out["macro_over"] = scored
    out["thresholds"] = {c: pack.thresholds[c] for c in classes}
    return out


# ----------------------------------------------------------------------------- files

def write_pack(pack: SportPack, report: dict, folder: str | Path, tag: str = "data", family: str = "svm") -> str:
    """pack.json + model.joblib + report.json into folder; the version hashes the model and its settings."""
    folder = Path(folder)
    pack.save(folder)
    settings = json.dumps([pack.thresholds, [float(v) for v in pack.impute], pack.spec.input_names, pack.spec.smooth_s,
                           pack.spec.delta_lag_s, [dataclasses.asdict(f) for f in pack.faults]], sort_keys=True).encode()
    digest = hashlib.sha256((folder / "model.joblib").read_bytes() + settings).hexdigest()[:10]
    pack.model_version = f"{pack.name}-{family}-{PACK_VERSION}+{tag}.{digest}"
    pack.save(folder)
    report["model_version"] = pack.model_version
    report["evaluation"]["model_version"] = pack.model_version
    report["model_sha256"] = hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return pack.model_version
