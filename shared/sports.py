"""The sport catalogue: which sports exist, their faults, and how a pack's inputs are measured.

What every service may know about a sport, without the trained models:

- `Fault` and `PackSpec`: a fault's definition (title, the measure it concerns, its correct
  range, the camera views it can be judged from, the criterion that labelled its bootstrap data)
  and a pack's feature layout (`PackSpec.design`: keypoints -> classifier inputs, on
  shared/features.py);
- `PACK_SPECS`: the built-in sports (ski aerials, squat, push-up, plank), with `FAULT_CRITERIA`,
  the documented rules that label their synthetic training data;
- `spec_from_meta` / `describe_meta`: a pack's spec and its public description (GET /v1/sports)
  from its pack.json alone;
- `SportCatalog`: the model registry in object storage read without loading a model (sports,
  versions, the current version, a version's pack.json) plus the shipped packs' pack.json for
  sports the registry does not have yet: what the gateway lists and accepts.

The trained models (model.joblib and friends), their loading and the registry's writing side
belong to the judge (services/judge/packs.py, services/judge/registry.py). The shipped packs are
data the judge owns (services/judge/packs/<sport>/); this module reads only their pack.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.features import FEATURE_INDEX, PAPER_FEATURES, frame_features, moving_median, named_features, temporal_deltas
from shared.store import ObjectNotFound, keys

SHIPPED_PACKS = Path(__file__).resolve().parents[1] / "services" / "judge" / "packs"  # pack folders shipped with the judge
MIN_PRESENT_FRAC = 0.5  # fewer measurable base features than this -> no verdict for the frame
VIEWS = ("front", "side", "oblique")
SIDE_VIEWS = ("side", "oblique")
SPORT_RE = keys.SPORT_RE      # a sport's name: lower case letters, digits, _
VERSION_RE = keys.VERSION_RE  # a model version's name


class RegistryError(ValueError):
    pass


def check_names(sport: str, version: str | None = None) -> None:
    """RegistryError (in words) unless sport (and version) are names the registry accepts."""
    if not SPORT_RE.match(sport or ""):
        raise RegistryError(f"not a sport name: {sport!r} (lower case letters, digits, _)")
    if version is not None and not VERSION_RE.match(version or ""):
        raise RegistryError(f"not a model version: {version!r}")


# ---------------------------------------------------------------------------- faults and packs

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


# ---------------------------------------------------------------------------- the built-in sports

# Thresholds of the labelling criteria (degrees unless noted); FAULT_CRITERIA says how each is used.
# The synthetic-data generator (services/judge/synth.py) labels its clips with exactly these.
BENT_KNEE_DEG = 30.0
BENT_HIP_DEG = 30.0
CROSSED_SKI_DEG = 20.0
SQUAT_DEPTH_RATIO = 0.17  # hip joint may stay at most 0.17 thigh lengths above the knee (thigh ~10 deg above horizontal)
KNEE_CAVE_RATIO = 0.85
KNEE_CAVE_MIN_FLEX = 30.0
HIP_LINE_DEG = 15.0
PUSHUP_DEPTH_DEG = 80.0
BOTTOM_BAND = 0.15  # bottom of a repetition: lowest 15% of its height range

FAULT_CRITERIA: dict[str, dict[str, str]] = {
    "ski_aerials": {
        "bent_knees": f"knee flexion (3D angle between thigh and shank) > {BENT_KNEE_DEG:g} deg on either leg",
        "bent_hips": f"hip flexion (3D angle between trunk and thigh) > {BENT_HIP_DEG:g} deg on either side",
        "crossed_skis": f"3D angle between the two ski (heel -> toe) directions > {CROSSED_SKI_DEG:g} deg",
    },
    "squat": {
        "shallow_depth": (f"at the bottom of a repetition (lowest {BOTTOM_BAND:.0%} of its hip travel) the hip joints stay "
                          f"more than {SQUAT_DEPTH_RATIO:g} thigh lengths above the knees (thighs > ~10 deg above horizontal)"),
        "knees_caving": (f"with knee flexion > {KNEE_CAVE_MIN_FLEX:g} deg, the knees are closer together than "
                         f"{KNEE_CAVE_RATIO:g} x the ankle separation (across the frontal axis)"),
    },
    "pushup": {
        "sagging_hips": f"hips below the shoulder-ankle line, bend at the hips > {HIP_LINE_DEG:g} deg",
        "piked_hips": f"hips above the shoulder-ankle line, bend at the hips > {HIP_LINE_DEG:g} deg",
        "shallow_depth": (f"at the bottom of a repetition (lowest {BOTTOM_BAND:.0%} of its shoulder travel) the "
                          f"elbows are flexed less than {PUSHUP_DEPTH_DEG:g} deg"),
    },
    "plank": {
        "sagging_hips": f"hips below the shoulder-ankle line, bend at the hips > {HIP_LINE_DEG:g} deg",
        "piked_hips": f"hips above the shoulder-ankle line, bend at the hips > {HIP_LINE_DEG:g} deg",
    },
}


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
    C = FAULT_CRITERIA
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


# ---------------------------------------------------------------------------- pack.json

def describe(spec: PackSpec, thresholds: dict[str, float], model_version: str, synthetic: bool = False,
             label_source: str = "", phase: dict | None = None) -> dict:
    """A pack as plain data for GET /v1/sports."""
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


def is_synthetic(meta: dict) -> bool:
    """Whether a pack.json's labels came from criteria on synthetic poses (packs written before the
    field existed say "+synth." in their version)."""
    return bool(meta.get("synthetic", "+synth." in meta.get("model_version", "")))


def label_source_of(meta: dict) -> str:
    return meta.get("label_source", meta.get("info", {}).get("labels", ""))


def describe_meta(meta: dict) -> dict:
    """describe() from a pack.json alone (no models loaded): what the gateway lists."""
    return describe(spec_from_meta(meta), {k: float(v) for k, v in meta["thresholds"].items()}, meta["model_version"],
                    is_synthetic(meta), label_source_of(meta), meta.get("phase"))


def shipped_sports(root: str | Path | None = None) -> list[str]:
    """Names of the packs with both files present under root (default: the shipped packs)."""
    root = Path(root) if root else SHIPPED_PACKS
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "pack.json").is_file() and (p / "model.joblib").is_file())


def shipped_meta(sport: str, root: str | Path | None = None) -> dict:
    """The pack.json of a shipped pack."""
    return json.loads(((Path(root) if root else SHIPPED_PACKS) / sport / "pack.json").read_text())


def shipped_descriptions(root: str | Path | None = None) -> dict[str, dict]:
    """sport -> description of every shipped pack (the catalogue while the store is unreachable)."""
    return {sport: describe_meta(shipped_meta(sport, root)) for sport in shipped_sports(root)}


# ---------------------------------------------------------------------------- the registry, read

class SportCatalog:
    """The model registry in object storage, read without loading a model.

        models/<sport>/<version>/pack.json    a version's metadata (written last: a version with one is complete)
        models/<sport>/current.json           {"sport", "version", "published_at", "previous"}

    Keys: shared.store.keys (model_file, model_current). The judge's ModelRegistry adds loading,
    uploading and publishing."""

    def __init__(self, store, shipped_root: Path | None = None):
        self.store = store
        self.shipped_root = Path(shipped_root) if shipped_root else SHIPPED_PACKS
        self._meta_cache: dict[tuple[str, str], dict] = {}  # versions are immutable

    def sports(self) -> list[str]:
        """Sports with at least one version in the store (none while the bucket does not exist)."""
        out = []
        for p in self.store.iter_prefixes(keys.models_prefix()):
            name = p[len(keys.models_prefix()):].strip("/")
            if SPORT_RE.match(name):
                out.append(name)
        return sorted(out)

    def versions(self, sport: str) -> list[str]:
        check_names(sport)
        prefix = keys.model_versions_prefix(sport)
        names = [p[len(prefix):].strip("/") for p in self.store.iter_prefixes(prefix)]
        return sorted(v for v in names if VERSION_RE.match(v) and self.store.exists(keys.model_file(sport, v, "pack.json")))

    def current(self, sport: str) -> dict | None:
        check_names(sport)
        try:
            return self.store.get_json(keys.model_current(sport))
        except ObjectNotFound:
            return None

    def current_version(self, sport: str) -> str | None:
        cur = self.current(sport)
        return cur["version"] if cur else None

    def meta(self, sport: str, version: str) -> dict:
        check_names(sport, version)
        key = (sport, version)
        if key not in self._meta_cache:
            try:
                self._meta_cache[key] = self.store.get_json(keys.model_file(sport, version, "pack.json"))
            except ObjectNotFound:
                raise RegistryError(f"no version {version!r} of {sport!r} in the registry; "
                                    f"have {', '.join(self.versions(sport)) or 'none'}") from None
        return self._meta_cache[key]

    def describe_all(self) -> dict[str, dict]:
        """sport -> description of its current version (no models loaded); shipped packs for
        sports the registry does not have yet."""
        out = {}
        for sport in self.sports():
            version = self.current_version(sport)
            if version:
                out[sport] = describe_meta(self.meta(sport, version))
        for sport in shipped_sports(self.shipped_root):
            if sport not in out:
                out[sport] = describe_meta(shipped_meta(sport, self.shipped_root))
        return dict(sorted(out.items()))
