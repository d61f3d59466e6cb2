"""Trained sport packs: a sport's spec (shared/sports.py: its faults and how they are measured)
with one RBF SVM per fault, thresholds and imputation medians.

A pack on disk is a folder services/judge/packs/<sport>/ with
    pack.json     metadata: faults, feature set, thresholds, imputation medians, model version, eval
    model.joblib  {fault_id: sklearn Pipeline(StandardScaler, Platt-calibrated SVC(C=2, kernel='rbf'))}
Packs are written by `python -m services.judge.lab.bootstrap` (classifiers bootstrapped from synthetic poses;
synthetic=true) or, for lunge, bicep_curl, plank and the squat phase model (phase.joblib), by
`python -m services.judge.lab.train_real_packs` (human labels; one multi-class model stored under the
MULTICLASS key; coordinates "normalized": judge() needs the frame size to match MediaPipe's 0..1 output).

The paper (Sec. 6.3) trains one binary SVM (RBF, C=2) per error type on per-frame features;
we do the same, per sport, after a 5-frame moving median of the features (keypoint jitter is
nearly independent from frame to frame; on the synthetic test clips the median raised
crossed-skis F1 from 0.44 to ~0.6 and helped the other faults too). A frame with no pose, or
with fewer than half of the pack's features measurable, gets no verdict (NaN); other missing
features are imputed with the training median, so one hidden ankle does not silence the judge.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from shared.sports import (SHIPPED_PACKS, Fault, PackSpec, describe, is_synthetic, label_source_of, shipped_sports,
                           spec_from_meta)

PACKS_ROOT = SHIPPED_PACKS  # services/judge/packs: the shipped packs
MULTICLASS = "__multiclass__"  # model.joblib key of one multi-class model (real-label packs) instead of one per fault


@dataclass
class SportPack:
    spec: PackSpec
    models: dict[str, Any]  # fault id -> fitted Pipeline with predict_proba, or {MULTICLASS: one multi-class model}
    thresholds: dict[str, float]  # fault id -> probability above which a frame is flagged
    impute: np.ndarray  # [D] per-input training medians
    model_version: str
    nominal_fps: float = 30.0
    info: dict = field(default_factory=dict)  # training / evaluation summary
    synthetic: bool = False  # labels came from criteria on synthetic poses (bootstrap), not people
    label_source: str = ""
    phase: dict | None = None  # optional phase model: {"meta": pack.json "phase" entry, "model": fitted classifier}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def faults(self) -> tuple[Fault, ...]:
        return self.spec.faults

    @property
    def fault_ids(self) -> tuple[str, ...]:
        return self.spec.fault_ids

    def threshold_list(self) -> list[float]:
        return [self.thresholds[f] for f in self.fault_ids]

    def judge(self, kps: np.ndarray, fps: float | None = None,
              frame_size: tuple[float, float] | None = None) -> np.ndarray:
        """Keypoints [T,33,3] -> fault probabilities [T, n_faults] (fault_ids order); NaN rows = no verdict.

        frame_size=(width, height) of the video: needed by packs trained on normalised coordinates
        (spec.coordinates == "normalized"), ignored by pixel packs."""
        X, ok = self.spec.design(kps, fps or self.nominal_fps, frame_size)  # [T,D], [T]
        out = np.full((X.shape[0], len(self.fault_ids)), np.nan)
        if not ok.any():
            return out
        Xi = np.where(np.isfinite(X), X, self.impute)[ok]
        if MULTICLASS in self.models:  # one model over correct + faults: each fault's column of predict_proba
            m = self.models[MULTICLASS]
            P = m.predict_proba(Xi)
            classes = [str(c) for c in m.classes_]
            for j, fid in enumerate(self.fault_ids):
                out[ok, j] = P[:, classes.index(fid)]
            return out
        for j, fid in enumerate(self.fault_ids):
            out[ok, j] = self.models[fid].predict_proba(Xi)[:, 1]
        return out

    def phase_probs(self, kps: np.ndarray, fps: float | None = None,
                    frame_size: tuple[float, float] | None = None) -> np.ndarray | None:
        """Keypoints [T,33,3] -> [T] probability of the phase model's positive class (squat: "down",
        the bottom), NaN where no pose; None when the pack has no phase model."""
        if not self.phase:
            return None
        meta, m = self.phase["meta"], self.phase["model"]
        spec = phase_spec(meta)
        X, ok = spec.design(kps, fps or self.nominal_fps, frame_size)
        out = np.full(X.shape[0], np.nan)
        if ok.any():
            Xi = np.where(np.isfinite(X), X, np.asarray(meta["impute"], dtype=np.float64))[ok]
            out[ok] = m.predict_proba(Xi)[:, [str(c) for c in m.classes_].index(meta["positive"])]
        return out

    def flags(self, probs: np.ndarray) -> np.ndarray:
        """probs [T,n] -> bool [T,n]: above each fault's threshold (NaN -> False)."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(probs, nan=-1.0) >= np.asarray(self.threshold_list())

    def describe(self) -> dict:
        """Plain data for GET /v1/sports."""
        return describe(self.spec, self.thresholds, self.model_version, self.synthetic, self.label_source,
                        self.phase["meta"] if self.phase else None)

    # ------------------------------------------------------------ files

    def save(self, folder: str | Path, models: bool = True) -> dict[str, int]:
        """Write pack.json + model.joblib (+ phase.joblib); returns {file: bytes}.
        models=False keeps an existing model.joblib byte for byte (adding a phase model to a pack)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if models or not (folder / "model.joblib").is_file():
            joblib.dump(self.models, folder / "model.joblib", compress=3)
        meta = {
            "name": self.name,
            "title": self.title,
            "model_version": self.model_version,
            "synthetic": self.synthetic,
            "label_source": self.label_source,
            "faults": [asdict(f) for f in self.faults],
            "features": list(self.spec.features),
            "delta_features": list(self.spec.delta_features),
            "delta_lag_s": self.spec.delta_lag_s,
            "smooth_s": self.spec.smooth_s,
            "coordinates": self.spec.coordinates,
            "min_confidence": self.spec.min_confidence,
            "camera": self.spec.camera,
            "inputs": list(self.spec.input_names),
            "impute": [float(v) for v in self.impute],
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "nominal_fps": self.nominal_fps,
            "info": self.info,
        }
        if self.phase:
            joblib.dump(self.phase["model"], folder / self.phase["meta"].get("file", "phase.joblib"), compress=3)
            meta["phase"] = self.phase["meta"]
        (folder / "pack.json").write_text(json.dumps(meta, indent=1) + "\n")
        return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


def phase_spec(meta: dict) -> PackSpec:
    """The feature layout of a pack.json "phase" entry (same keys as a pack's)."""
    return PackSpec("phase", "phase", (), tuple(meta["features"]), (), 0.2, "", float(meta.get("smooth_s", 0.0)),
                    meta.get("coordinates", "pixels"), float(meta.get("min_confidence", 0.3)))


def available_packs(root: str | Path | None = None) -> list[str]:
    """Names of packs with both files present under root (default: the shipped packs)."""
    return shipped_sports(root or PACKS_ROOT)


def load_pack(sport: str, root: str | Path | None = None) -> SportPack:
    folder = (Path(root) if root else PACKS_ROOT) / sport
    if not (folder / "pack.json").is_file():
        raise KeyError(f"no pack {sport!r} under {folder.parent}; have {available_packs(root)}")
    return load_pack_dir(folder)


def load_pack_dir(folder: str | Path) -> SportPack:
    """A pack from one folder holding pack.json + model.joblib (what `coach judge train --out` writes)."""
    folder = Path(folder)
    if not (folder / "pack.json").is_file() or not (folder / "model.joblib").is_file():
        raise FileNotFoundError(f"{folder} is not a sport pack: it needs pack.json and model.joblib")
    meta = json.loads((folder / "pack.json").read_text())
    spec = spec_from_meta(meta)
    models = joblib.load(folder / "model.joblib")
    phase = None
    if meta.get("phase"):
        phase = {"meta": meta["phase"], "model": joblib.load(folder / meta["phase"].get("file", "phase.joblib"))}
    return SportPack(spec, models, {k: float(v) for k, v in meta["thresholds"].items()},
                     np.asarray(meta["impute"], dtype=np.float64), meta["model_version"],
                     float(meta.get("nominal_fps", 30.0)), meta.get("info", {}), is_synthetic(meta),
                     label_source_of(meta), phase)
