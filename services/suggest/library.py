"""The exemplar library on disk: DIR/manifest.json plus DIR/<sport>/<id>.{mp4,npz}.

The starter library shipped in services/suggest/exemplars/ holds rendered stick-figure clips of
correct form, not real footage (docs/suggest.md). It is built by lab code,
`python -m lab.exemplars build --out services/suggest/exemplars`, from fixed seeds
(a rebuild reproduces it); the service only loads a built library, shipped or replaced by an
operator (same layout).

manifest.json: {"version", "note", "feature_names", "angle_names", "exemplars": [{"id", "sport",
"title", "description", "fps", "frames", "duration_s", "width", "height", "video": "<sport>/<id>.mp4",
"data": "<sport>/<id>.npz", "bytes"}]}; each npz holds keypoints [T,33,3] in the video's pixels,
features [T,F] (shared.features.frame_features), angles [T,A] and fps.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from services.suggest.retrieval import Exemplar

DEFAULT_ROOT = Path(__file__).resolve().parent / "exemplars"  # the built starter library shipped in the repo


def load_library(root: str | Path | None = None) -> list[Exemplar]:
    """Exemplars listed in root/manifest.json (default: the shipped starter library).

    video_key stays relative to root, as it will be in object storage."""
    root = Path(root) if root else DEFAULT_ROOT
    manifest = json.loads((root / "manifest.json").read_text())
    out = []
    for e in manifest["exemplars"]:
        with np.load(root / e["data"]) as z:
            out.append(Exemplar(e["id"], e["sport"], e["title"], float(e["fps"]), z["features"].astype(np.float64),
                                z["keypoints"], e["video"]))
    return out
