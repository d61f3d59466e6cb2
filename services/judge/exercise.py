"""An exercise clip's report for the judge service: its repetitions (services/judge/reps.py) with
their quality and attention (the sequence model, services/judge/sequence.py) and the action score
(services/judge/score.py), as plain data for verdict.json and AnalysisVerdict.

Kept apart from reps.py so the repetition counter imports neither model (they import it): no cycle.
torch is imported only when a model file is there, so an image without it still finds repetitions.
"""
from __future__ import annotations

import numpy as np

from services.judge.reps import EXERCISES, Repetition, count, segment


def _shipped(sport: str, name: str, root=None):
    from pathlib import Path

    from services.judge.packs import PACKS_ROOT

    p = Path(root or PACKS_ROOT) / sport / name
    return p if p.is_file() else None


_MODELS: dict = {}


def _model(kind: str, path):
    """Load a sequence / score model once per file (reloaded if the file changes)."""
    key = (kind, str(path), path.stat().st_mtime_ns)
    if key not in _MODELS:
        if kind == "sequence":
            from services.judge.sequence import load
        else:
            from services.judge.score import load
        _MODELS[key] = load(path)
    return _MODELS[key]


def exercise_report(sport: str, kps: np.ndarray, fps: float, frame_index: list[int] | None = None,
                    root=None, log=None, reps: list[Repetition] | None = None) -> dict | None:
    """Repetitions (with quality and attention) and the action score of an exercise clip, as
    plain data for verdict.json and AnalysisVerdict; None for a sport without a repetition rule.

    -> {"repetitions": [{index, start_frame, end_frame, quality, attention, range_of_motion_deg,
    tempo_s: {down, hold, up}, partial}] | None (none found), "count": full repetitions, "score":
    {value, exemplars, model_version} | None, "sequence_model_version": str | None}. Frames are frame_index[t]
    (the video's frame numbers). quality / attention / score are null when the sport ships no
    sequence.pt / score.pt, or when torch is not installed (the repetitions are still found)."""
    if sport not in EXERCISES:
        return None
    idx = list(range(len(kps))) if frame_index is None else list(frame_index)
    reps = segment(kps, sport, fps) if reps is None else reps   # the caller may have them already
    judged: list = [None] * len(reps)
    seq_version, score = None, None
    try:
        path = _shipped(sport, "sequence.pt", root)
        if path is not None and reps:
            m = _model("sequence", path)
            judged, seq_version = m.judge(kps, fps, reps), m.model_version
        path = _shipped(sport, "score.pt", root)
        if path is not None and any(not r.partial for r in reps):
            from services.judge.score import clip_features

            sm = _model("score", path)
            value, ex = sm.predict(clip_features(sport, kps, fps, reps)[None])
            score = {"value": round(float(value[0]), 2), "model_version": sm.model_version,
                     "exemplars": [{**e, "title": f"{e['id']} (predicted difference {e['predicted_difference']:+.1f})"}
                                   for e in ex[0]]}
    except Exception as exc:  # noqa: BLE001 — e.g. an image without torch: repetitions without quality or score
        if log is not None:
            log(f"repetition quality / score unavailable for {sport}: {type(exc).__name__}: {exc}")
    out = []
    for r, j in zip(reps, judged):
        out.append({"index": r.index, "start_frame": int(idx[r.start]), "end_frame": int(idx[r.end]),
                    "quality": None if j is None else round(j["quality"], 4),
                    "attention": None if j is None else [round(float(a), 5) for a in j["attention"]],
                    "range_of_motion_deg": r.rom_deg, "tempo_s": {"down": r.down_s, "hold": r.hold_s, "up": r.up_s},
                    "partial": r.partial})
    # none found -> null, like a sport without repetitions (the web page then shows no empty panel)
    return {"repetitions": out or None, "count": count(reps), "score": score, "sequence_model_version": seq_version}
