"""Time alignment of a finished multi-camera session: each camera's offset on a common timeline
(by motion energy and by athlete presence) and the best view per moment.

Runs in a background thread of the gateway (routes/sessions.py) from the stored source videos and
pose documents; the result is stored at sessions/<sid>/alignment.json (keys.session_alignment).

Timeline convention: camera c's frame j shows the common-timeline time offset_s + j / fps_c,
the timeline starting (t = 0) with the earliest camera; offset_frames = offset_s * fps_c.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from shared.documents import ClipPosesDocument
from shared.store import ObjectStore, keys


def _camera_signals(store: ObjectStore, cam: dict, tmp: Path) -> dict:
    """Motion energy from the source video, and per-frame track score and mean keypoint confidence
    from the pose documents of one camera's analysis."""
    from services.tracker.align import motion_energy

    aid = cam["analysis_id"]
    src = store.get_file(cam["video_key"], tmp / f"{aid}.src")
    energy, fps = motion_energy(src)
    frames = [f for key in sorted(store.list(keys.poses_prefix(aid))) for f in ClipPosesDocument.read(store, key).frames]
    frames.sort(key=lambda f: f.index)
    score = np.array([float(f.track_score or 0.0) if f.bbox_px else 0.0 for f in frames])
    conf = np.array([np.mean([r[2] if r else 0.0 for r in f.keypoints]) if f.keypoints else 0.0 for f in frames])
    return {"energy": energy, "fps": fps, "score": score, "conf": conf}


def compute_alignment(store: ObjectStore, session: dict) -> dict:
    """The alignment document of a session whose analyses are all done."""
    from services.tracker.align import align_signals, best_view, common_timeline

    started = time.perf_counter()
    cams = session["cameras"]
    with tempfile.TemporaryDirectory(prefix="coach-align-") as tmp:
        sig = [_camera_signals(store, c, Path(tmp)) for c in cams]
    ref = sig[0]
    pair: dict[str, list] = {"motion": [], "presence": []}
    for s in sig[1:]:
        pair["motion"].append(align_signals(ref["energy"], ref["fps"], s["energy"], s["fps"], "motion"))
        pair["presence"].append(align_signals(ref["score"], ref["fps"], s["score"], s["fps"], "presence"))

    def timeline(method: str) -> list[Optional[float]]:
        return common_timeline([a.offset_s for a in pair[method]])

    # motion unless it failed for some camera where presence did not
    chosen = "motion"
    if any(a.offset_s is None for a in pair["motion"]) and all(a.offset_s is not None for a in pair["presence"]):
        chosen = "presence"
    starts = {m: timeline(m) for m in pair}
    rate = max(s["fps"] for s in sig)
    per_step, segments = best_view([s["conf"] for s in sig], [s["fps"] for s in sig], starts[chosen], rate)

    def entry(i: int) -> dict:
        out = {"index": i, "analysis_id": cams[i]["analysis_id"], "fps": sig[i]["fps"], "frames": len(sig[i]["energy"])}
        for m in pair:
            st = starts[m][i]
            rel = None if i == 0 else pair[m][i - 1]
            out[m] = {"offset_s": None if st is None else round(st, 4),
                      "offset_frames": None if st is None else round(st * sig[i]["fps"], 3),
                      "confidence": 1.0 if i == 0 else round(rel.confidence, 4),
                      "vs_camera_0": None if rel is None else {
                          "offset_s": None if rel.offset_s is None else round(rel.offset_s, 4),
                          "offset_frames": None if rel.offset_frames is None else round(rel.offset_frames, 3),
                          "overlap_s": round(rel.overlap_s, 3),
                          "second_best": None if rel.second_best is None else round(rel.second_best, 4)}}
        out["offset_s"], out["offset_frames"], out["confidence"] = (out[chosen]["offset_s"], out[chosen]["offset_frames"],
                                                                    out[chosen]["confidence"])
        return out

    return {
        "schema": "coach.session-alignment/1", "session_id": session["id"], "method": chosen,
        "convention": "camera c's frame j is at common time offset_s + j / fps; offset_frames = offset_s * fps; "
                      "vs_camera_0: t_c = t_0 + offset_s (coach align)",
        "cameras": [entry(i) for i in range(len(cams))],
        "best_view": {"rate_hz": rate, "criterion": "highest mean keypoint confidence", "segments": segments,
                      "per_step": per_step},
        "seconds": round(time.perf_counter() - started, 3),
    }
