"""Align worker (tracker service): time alignment of a finished multi-camera session, each
camera's offset on a common timeline (by motion energy and by athlete presence) and the best view
per moment.

consume `alignments` (SessionAlignmentRequested, from the gateway once every analysis of the
session is done) -> read each camera's stored source video and pose documents -> store
sessions/<sid>/alignment.json (and sessions/<sid>/status/align.json while it works). The gateway
only reads the document. It decodes every video once more (optical flow): long CPU work kept out
of the API process. A failure is stored as {"error": "alignment failed: ..."}, which the gateway
reports as a failed session; the key is deterministic, so a redelivered request rewrites the
same document.

Timeline convention: camera c's frame j shows the common-timeline time offset_s + j / fps_c,
the timeline starting (t = 0) with the earliest camera; offset_frames = offset_s * fps_c.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from services.tracker.align import align_signals, best_view, common_timeline, motion_energy
from shared.documents import ClipPosesDocument, SessionAlignment, StageStatus
from shared.messages import SessionAlignmentRequested, SessionCamera, utc_now
from shared.store import keys
from shared.worker import AnalysisFailed, Context, WorkerSpec, run_service

SERVICE = "align"


def _status(ctx: Context, sid: str, state: str, fraction: float, **extra) -> None:
    ctx.put_json(keys.session_alignment_status(sid), StageStatus(
        stage=SERVICE, state=state, fraction=round(float(fraction), 4), updated_at=utc_now(), **extra))


def _camera_signals(ctx: Context, index: int, cam: SessionCamera, tmp: Path) -> dict:
    """Motion energy from the source video, and per-frame track score and mean keypoint confidence
    from the pose documents of one camera's analysis."""
    aid, store = cam.analysis_id, ctx.store
    src = store.get_file(cam.video_key, tmp / f"{aid}.src")
    try:
        energy, fps = motion_energy(src)
    except ValueError as exc:   # not decodable: retrying cannot help; name the stored key, not our temp file
        raise AnalysisFailed(f"camera {index}: {str(exc).replace(str(src), cam.video_key)}") from None
    frames = [f for key in sorted(store.list(keys.poses_prefix(aid))) for f in ClipPosesDocument.read(store, key).frames]
    frames.sort(key=lambda f: f.index)
    score = np.array([float(f.track_score or 0.0) if f.bbox_px else 0.0 for f in frames])
    conf = np.array([np.mean([r[2] if r else 0.0 for r in f.keypoints]) if f.keypoints else 0.0 for f in frames])
    return {"energy": energy, "fps": fps, "score": score, "conf": conf}


def compute_alignment(ctx: Context, msg: SessionAlignmentRequested) -> SessionAlignment:
    """The alignment document of a session whose analyses are all done."""
    started = time.perf_counter()
    sid, cams = msg.session_id, msg.cameras
    for i, cam in enumerate(cams):   # before any decoding: a camera without poses cannot be aligned
        if not ctx.store.list(keys.poses_prefix(cam.analysis_id)):
            raise AnalysisFailed(f"camera {i}: analysis {cam.analysis_id} has no stored poses")
    sig = []
    with tempfile.TemporaryDirectory(prefix="coach-align-") as tmp:
        for i, cam in enumerate(cams):
            _status(ctx, sid, "running", i / len(cams), camera=i)   # also the deadline's sign of life
            sig.append(_camera_signals(ctx, i, cam, Path(tmp)))
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
        out = {"index": i, "analysis_id": cams[i].analysis_id, "fps": sig[i]["fps"], "frames": len(sig[i]["energy"])}
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

    return SessionAlignment(
        session_id=sid, method=chosen,
        convention="camera c's frame j is at common time offset_s + j / fps; offset_frames = offset_s * fps; "
                   "vs_camera_0: t_c = t_0 + offset_s (coach align)",
        cameras=[entry(i) for i in range(len(cams))],
        best_view={"rate_hz": rate, "criterion": "highest mean keypoint confidence", "segments": segments,
                   "per_step": per_step},
        seconds=round(time.perf_counter() - started, 3),
    )


def handle(msg: SessionAlignmentRequested, ctx: Context) -> None:
    sid = msg.session_id
    if ctx.store.exists(keys.session_alignment(sid)):
        return   # a redelivered or re-driven request after the document was stored: nothing to redo
    doc = compute_alignment(ctx, msg)
    ctx.put_json(keys.session_alignment(sid), doc)
    _status(ctx, sid, "done", 1.0, seconds=doc.seconds)


def fail(msg: SessionAlignmentRequested, ctx: Context, reason: str) -> None:
    """A request that cannot be aligned (bad input, attempts used up, deadline missed) reaches the
    user as a failed session: the gateway reports the stored error."""
    sid = msg.session_id
    ctx.put_json(keys.session_alignment(sid), SessionAlignment(session_id=sid, error=f"alignment failed: {reason}"))
    _status(ctx, sid, "failed", 0.0, error=reason)


def main() -> None:
    from shared.settings import Settings

    settings = Settings.from_env()
    run_service(WorkerSpec(SERVICE, settings.topics.alignments, SessionAlignmentRequested, handle, fail=fail), settings)


if __name__ == "__main__":
    main()
