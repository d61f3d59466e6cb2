"""Sport packs: which faults a sport has, how they are measured, and one RBF SVM per fault.

A pack on disk is a folder services/judge/packs/<sport>/ with
    pack.json     metadata: faults, feature set, thresholds, imputation medians, model version, eval
    model.joblib  {fault_id: sklearn Pipeline(StandardScaler, Platt-calibrated SVC(C=2, kernel='rbf'))}
Packs are written by `python -m services.judge.bootstrap` (classifiers bootstrapped from synthetic poses;
synthetic=true) or, for lunge, bicep_curl, plank and the squat phase model (phase.joblib), by
`python -m services.judge.train_real_packs` (human labels; one multi-class model stored under the
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

from services.judge.features import (FEATURE_INDEX, PAPER_FEATURES, frame_features, moving_median, named_features,
                                     temporal_deltas)

PACKS_ROOT = Path(__file__).resolve().parent / "packs"
MIN_PRESENT_FRAC = 0.5  # fewer measurable base features than this -> no verdict for the frame
VIEWS = ("front", "side", "oblique")
SIDE_VIEWS = ("side", "oblique")
MULTICLASS = "__multiclass__"  # model.joblib key of one multi-class model (real-label packs) instead of one per fault


@dataclass(frozen=True)
class Fault:
    id: str
    title: str
    description: str  # what the athlete should see / do
    measure: str  # the angle (features.ANGLE_NAMES) or feature it concerns
    standard: str  # correct value or range, in words
    standard_range: tuple[float, float]  # correct range of `measure` (deg for angles)
    criterion: str  # the exact rule that labelled the bootstrap data
    views: tuple[str, ...] = VIEWS  # camera views the fault can be judged from (subset of VIEWS)


@dataclass(frozen=True)
class PackSpec:
    """Everything about a pack except the trained models."""
    name: str
    title: str
    faults: tuple[Fault, ...]
    features: tuple[str, ...]  # subset of features.FEATURE_NAMES
    delta_features: tuple[str, ...] = ()  # features whose temporal change is appended
    delta_lag_s: float = 0.2
    camera: str = ""  # the view the pack expects
    smooth_s: float = 0.17  # centred NaN-aware moving median of the features over ~this many seconds (5 frames at 30 fps)
    coordinates: str = "pixels"  # "normalized": trained on MediaPipe 0..1 coordinates; judge divides pixels by the frame size
    min_confidence: float = 0.3  # landmarks below this visibility count as missing

    @property
    def fault_ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.faults)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.features + tuple(f"d_{n}" for n in self.delta_features)

    def design(self, kps: np.ndarray, fps: float = 30.0,
               frame_size: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [T,33,3] -> classifier inputs X [T,D] (NaN where unmeasured) and verdict mask [T].

        frame_size=(width, height) in pixels: a "normalized" pack divides x by width and y by height,
        reproducing MediaPipe's normalised landmarks it was trained on (angles then carry the frame's
        aspect ratio exactly as in training). Without it the pixels are used as they are (square pixels);
        the features are scale-invariant, so that only differs where the aspect ratio is not 1."""
        kps = normalize_keypoints(kps, frame_size) if self.coordinates == "normalized" else np.asarray(kps)
        if all(n in FEATURE_INDEX for n in self.features + self.delta_features) and self.min_confidence == 0.3:
            allf, index = frame_features(kps), FEATURE_INDEX  # [T,F]
        else:
            names = tuple(dict.fromkeys(self.features + self.delta_features))
            allf, index = named_features(kps, names, self.min_confidence), {n: i for i, n in enumerate(names)}
        if self.smooth_s > 0:
            allf = moving_median(allf, max(1, int(round(self.smooth_s * fps))) // 2)
        base = allf[:, [index[n] for n in self.features]]  # [T,F']
        cols = [base]
        if self.delta_features:
            lag = max(1, int(round(self.delta_lag_s * fps)))
            cols.append(temporal_deltas(allf[:, [index[n] for n in self.delta_features]], lag))
        X = np.concatenate(cols, axis=1)  # [T,D]
        has_pose = np.any(np.isfinite(kps[..., 2]), axis=1)
        enough = np.mean(np.isfinite(base), axis=1) >= MIN_PRESENT_FRAC
        return X, has_pose & enough


# Normalised coordinates stretch a body by the frame's shape (x / width, y / height), so a pack
# trained on them knows the shape of its training videos. The Exercise-Correction files do not say
# it; their videos are landscape, and 16:9 is assumed (a portrait clip divided by its own size had
# every correct plank flagged as sagging). Other frames are mapped as if pillar- or letterboxed into
# 16:9, which keeps a body's proportions in normalised units what they were in training.
NORMALIZED_ASPECT = 16 / 9


def normalize_keypoints(kps: np.ndarray, frame_size: tuple[float, float] | None,
                        aspect: float | None = NORMALIZED_ASPECT) -> np.ndarray:
    """Pixel keypoints [T,33,3] -> MediaPipe-style normalised coordinates of a frame of `aspect`
    (width / height) holding the video's frame: x / width, y / height for a 16:9 video (visibility kept)."""
    kps = np.array(kps, dtype=np.float64)
    if frame_size is not None:
        w, h = float(frame_size[0]), float(frame_size[1])
        if not (w > 0 and h > 0):
            raise ValueError(f"frame_size must be positive (width, height), got {frame_size}")
        if aspect:
            h = max(h, w / aspect)   # the canvas of that shape that holds the frame
            w = h * aspect
        kps[..., 0] /= w
        kps[..., 1] /= h
    return kps


def _hip_faults(criteria: dict[str, str]) -> tuple[Fault, Fault]:
    return (
        Fault("sagging_hips", "Sagging hips", "Hips drop below the line from shoulders to ankles; brace the core and squeeze the glutes.",
              "body_line", "body straight: hips within 15 deg of the shoulder-ankle line", (-15.0, 15.0), criteria["sagging_hips"],
              SIDE_VIEWS),
        Fault("piked_hips", "Piked hips", "Hips rise above the line from shoulders to ankles; lower them until the body is one straight line.",
              "body_line", "body straight: hips within 15 deg of the shoulder-ankle line", (-15.0, 15.0), criteria["piked_hips"],
              SIDE_VIEWS),
    )


def _specs() -> dict[str, PackSpec]:
    from services.judge.synth import FAULT_CRITERIA as C  # criteria text lives next to the labelling code

    sag, pike = _hip_faults(C["pushup"])
    psag, ppike = _hip_faults(C["plank"])
    return {
        "ski_aerials": PackSpec(
            "ski_aerials", "Freestyle skiing aerials",
            (
                Fault("bent_hips", "Bent hips", "The body folds at the hips in the air; keep trunk and legs in one line (layout).",
                      "hip_l/hip_r", "hip flexion 0-30 deg", (0.0, 30.0), C["ski_aerials"]["bent_hips"]),
                Fault("crossed_skis", "Crossed skis", "The skis cross or splay in the air; keep them parallel and together.",
                      "skis", "angle between skis 0-20 deg", (0.0, 20.0), C["ski_aerials"]["crossed_skis"]),
                Fault("bent_knees", "Bent knees", "The knees bend in the air; keep the legs straight and locked.",
                      "knee_l/knee_r", "knee flexion 0-30 deg", (0.0, 30.0), C["ski_aerials"]["bent_knees"]),
            ),
            features=PAPER_FEATURES,  # exactly the paper's 8 Table-1 cosines
            camera="side of the kicker (+-40 deg); somersaults and twists allowed",
        ),
        "squat": PackSpec(
            "squat", "Bodyweight squat",
            (
                Fault("shallow_depth", "Shallow squat", "The squat stops short: lower until the hips reach knee height (thighs parallel).",
                      "knee_l/knee_r", "thighs at least parallel to the floor at the bottom (knee flexion ~100 deg or more)",
                      (100.0, 160.0), C["squat"]["shallow_depth"], SIDE_VIEWS),
                Fault("knees_caving", "Knees caving in", "The knees fall inward; push them out so they track over the toes.",
                      "knee_width_ratio", "knees at least as far apart as the ankles (ratio >= 0.85)", (0.85, 3.0),
                      C["squat"]["knees_caving"], ("front", "oblique")),
            ),
            features=("hip_above_knee", "knee_width_ratio", "cos_knee_l", "cos_knee_r", "cos_hip_flex_l",
                      "cos_hip_flex_r", "cos_trunk_vertical"),
            delta_features=("hip_above_knee",),
            camera="oblique (45-60 deg off facing the camera) shows both faults; from the front only knees caving, from the side only depth is judged",
        ),
        "pushup": PackSpec(
            "pushup", "Push-up",
            (
                sag, pike,
                Fault("shallow_depth", "Shallow push-up", "The push-up stops short: bend the elbows to at least 90 deg at the bottom.",
                      "elbow_l/elbow_r", "elbow flexion >= 80-90 deg at the bottom", (80.0, 150.0), C["pushup"]["shallow_depth"],
                      SIDE_VIEWS),
            ),
            features=("body_line_offset", "cos_hip_flex_l", "cos_hip_flex_r", "cos_elbow_l", "cos_elbow_r",
                      "cos_trunk_vertical", "cos_knee_l", "cos_knee_r"),
            delta_features=("cos_elbow_l", "cos_elbow_r", "cos_trunk_vertical"),
            camera="side view (+-30 deg)",
        ),
        "plank": PackSpec(
            "plank", "Plank (forearm or high)",
            (psag, ppike),
            features=("body_line_offset", "cos_hip_flex_l", "cos_hip_flex_r", "cos_knee_l", "cos_knee_r",
                      "cos_trunk_vertical"),
            camera="side view (+-30 deg)",
        ),
    }


PACK_SPECS: dict[str, PackSpec] = _specs()


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
        return _describe(self.spec, self.thresholds, self.model_version, self.synthetic, self.label_source,
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


def _describe(spec: PackSpec, thresholds: dict[str, float], model_version: str, synthetic: bool = False,
              label_source: str = "", phase: dict | None = None) -> dict:
    return {
        "name": spec.name,
        "title": spec.title,
        "faults": [{"id": f.id, "title": f.title, "description": f.description, "measure": f.measure,
                    "standard": f.standard, "standard_range": list(f.standard_range),
                    "threshold": thresholds[f.id], "views": list(f.views)} for f in spec.faults],
        "model_version": model_version,
        "camera": spec.camera,
        "synthetic": bool(synthetic),
        "label_source": label_source,
        "coordinates": spec.coordinates,
        "phase": ({"classes": list(phase["classes"]), "positive": phase["positive"],
                   "label_source": phase.get("label_source", "")} if phase else None),
    }


def spec_from_meta(meta: dict) -> PackSpec:
    """The PackSpec recorded in a pack.json (or a --spec file of the same shape)."""
    faults = tuple(Fault(**{**f, "standard_range": tuple(f.get("standard_range", ())),
                            "views": tuple(f.get("views", VIEWS))}) for f in meta["faults"])
    bad = [v for f in faults for v in f.views if v not in VIEWS]
    if bad:
        raise ValueError(f"unknown camera view(s) {bad}: use a subset of {list(VIEWS)}")
    return PackSpec(meta["name"], meta.get("title", meta["name"]), faults, tuple(meta["features"]),
                    tuple(meta.get("delta_features", ())), float(meta.get("delta_lag_s", 0.2)), meta.get("camera", ""),
                    float(meta.get("smooth_s", 0.0)), meta.get("coordinates", "pixels"),
                    float(meta.get("min_confidence", 0.3)))


def _synthetic(meta: dict) -> bool:
    return bool(meta.get("synthetic", "+synth." in meta.get("model_version", "")))


def describe_meta(meta: dict) -> dict:
    """describe() from a pack.json alone (no models loaded): what the gateway lists."""
    return _describe(spec_from_meta(meta), {k: float(v) for k, v in meta["thresholds"].items()}, meta["model_version"],
                     _synthetic(meta), meta.get("label_source", meta.get("info", {}).get("labels", "")), meta.get("phase"))


def available_packs(root: str | Path | None = None) -> list[str]:
    """Names of packs with both files present under root (default: the shipped packs)."""
    root = Path(root) if root else PACKS_ROOT
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "pack.json").is_file() and (p / "model.joblib").is_file())


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
                     float(meta.get("nominal_fps", 30.0)), meta.get("info", {}), _synthetic(meta),
                     meta.get("label_source", meta.get("info", {}).get("labels", "")), phase)
