"""Multi-camera sessions: several videos of one performance, analysed each, aligned in time.

    POST /v1/sessions        multipart: `videos` (2-8 files), `sport`, optional `athlete_height_m`
                             -> 202 {"id", "status", "cameras": [{"index", "analysis_id"}], "links"}
    GET  /v1/sessions/{sid}  each camera's analysis id and status; once every analysis is done, the
                             alignment: each camera's offset on a common timeline (by motion and by
                             presence), and which camera shows the athlete best when

Every video becomes an ordinary analysis, created exactly as POST /v1/analyses does (same upload
checks, same request.json plus `session_id` / `camera` / `athlete_height_m`, same
AnalysisRequested on `analyses`), so the pipeline knows nothing about sessions. The session
document lives at sessions/<sid>/session.json. The alignment needs the videos decoded once more
(optical flow, services/tracker/align.py); the first GET that finds every analysis done starts
that in a background thread of the gateway and answers "aligning"; the result is stored at
sessions/<sid>/alignment.json (deterministic key: a second gateway replica computing it too just
writes the same document again).

Timeline convention: camera c's frame j shows the common-timeline time offset_s + j / fps_c,
the timeline starting (t = 0) with the earliest camera; offset_frames = offset_s * fps_c.
"""
from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from services.gateway.openapi import V1, errors
from shared import bus
from shared.messages import AnalysisRequested, utc_now
from shared.settings import Settings
from shared.store import ObjectNotFound, ObjectStore, keys

log = logging.getLogger("gateway.sessions")
MAX_CAMERAS = 8
_SID = re.compile(r"^[a-f0-9]{32}$")


def session_key(sid: str) -> str:
    if not _SID.match(sid):
        raise ValueError(f"not a session id: {sid!r}")
    return f"sessions/{sid}/session.json"


def alignment_key(sid: str) -> str:
    return session_key(sid).rsplit("/", 1)[0] + "/alignment.json"


# ---------------------------------------------------------------- alignment of a finished session

def _camera_signals(store: ObjectStore, cam: dict, tmp: Path) -> dict:
    """Motion energy from the source video, and per-frame track score and mean keypoint confidence
    from the pose documents of one camera's analysis."""
    from services.tracker.align import motion_energy

    aid = cam["analysis_id"]
    src = store.get_file(cam["video_key"], tmp / f"{aid}.src")
    energy, fps = motion_energy(src)
    frames: list[dict] = []
    for key in sorted(store.list(keys.poses_prefix(aid))):
        frames.extend(store.get_json(key)["frames"])
    frames.sort(key=lambda f: f["index"])
    score = np.array([float(f.get("track_score") or 0.0) if f.get("bbox_px") else 0.0 for f in frames])
    conf = np.array([np.mean([r[2] if r else 0.0 for r in f["keypoints"]]) if f.get("keypoints") else 0.0
                     for f in frames])
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


# ---------------------------------------------------------------- router

def sessions_router(store: ObjectStore, settings: Settings, producer: Callable, sports: Callable[[], dict]) -> APIRouter:
    """producer: () -> the gateway's Kafka producer; sports: () -> {sport: description}."""
    from services.gateway.app import (ID_RE, REJECTED, SUBMITTED, UploadRejected, analysis_status, new_analysis_id,
                                      probe_video, request_record, save_upload, stored_content_type)
    from services.gateway.auth import caller_of

    router = APIRouter()
    aligning: set[str] = set()
    lock = threading.Lock()

    def load_session(sid: str) -> dict:
        if not ID_RE.match(sid):
            raise HTTPException(404, f"no session {sid[:64]}")
        try:
            return store.get_json(session_key(sid))
        except ObjectNotFound:
            raise HTTPException(404, f"no session {sid}") from None

    def align_in_background(session: dict) -> None:
        sid = session["id"]
        with lock:
            if sid in aligning:
                return
            aligning.add(sid)

        def work():
            try:
                doc = compute_alignment(store, session)
            except Exception as exc:   # noqa: BLE001 - reported to the client through the document
                log.exception("session alignment failed", extra={"session_id": sid})
                doc = {"schema": "coach.session-alignment/1", "session_id": sid, "error": f"alignment failed: {exc}"}
            try:
                store.put_json(alignment_key(sid), doc)
            finally:
                with lock:
                    aligning.discard(sid)

        threading.Thread(target=work, name=f"align-{sid[:8]}", daemon=True).start()

    @router.post("/v1/sessions", status_code=202, responses=errors(*V1, 400, 413, 422, 429))
    async def create_session(http_request: Request, videos: list[UploadFile] = File(...), sport: str = Form(None),
                             athlete_height_m: Optional[float] = Form(None)):
        sport = sport or settings.default_sport
        if sport not in sports():
            REJECTED.labels("unknown_sport").inc()
            raise HTTPException(422, f"unknown sport {sport!r}; choose one of: {', '.join(sports())}")
        if not 2 <= len(videos) <= MAX_CAMERAS:
            raise HTTPException(422, f"a session needs 2 to {MAX_CAMERAS} videos (`videos` fields); got {len(videos)}")
        if athlete_height_m is not None and not 0.5 <= athlete_height_m <= 2.6:
            raise HTTPException(422, "athlete_height_m must be the athlete's height in metres (0.5-2.6)")
        sid = new_analysis_id()
        cams: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="coach-session-") as tmp:
            # every upload is checked before anything is stored or queued
            for i, video in enumerate(videos):
                path, ext, size = await save_upload(video, Path(tmp), f"camera{i}", settings,
                                                    what=f"video {i + 1} ({video.filename})")
                try:
                    info = await asyncio.to_thread(probe_video, path, settings)
                except UploadRejected as rej:
                    REJECTED.labels(rej.reason).inc()
                    raise HTTPException(rej.status, f"video {i + 1} ({video.filename}): {rej.message}") from None
                cams.append({"index": i, "analysis_id": new_analysis_id(), "filename": (video.filename or "")[:200],
                             "video": info, "path": path, "ext": ext, "size": size,
                             "content_type": stored_content_type(ext)})
            msgs = []
            for c in cams:
                aid = c["analysis_id"]
                msg = AnalysisRequested(analysis_id=aid, sport=sport, video_key=keys.source(aid, c["ext"]), video=c["video"],
                                        target_bbox_px=None, submitted_at=utc_now())
                await asyncio.to_thread(store.put_file, msg.video_key, c["path"], c["content_type"])
                request = request_record(msg, c["filename"], c["size"], caller_of(http_request),
                                         session_id=sid, camera=c["index"])
                if athlete_height_m is not None:
                    request["athlete_height_m"] = athlete_height_m
                await asyncio.to_thread(store.put_json, keys.request(aid), request)
                c["video_key"] = msg.video_key
                msgs.append(msg)
        session = {"schema": "coach.session/1", "id": sid, "sport": sport, "created_at": utc_now(),
                   "owner": caller_of(http_request),
                   "athlete_height_m": athlete_height_m,
                   "cameras": [{"index": c["index"], "analysis_id": c["analysis_id"], "filename": c["filename"],
                                "video": c["video"].model_dump(), "video_key": c["video_key"]} for c in cams]}
        await asyncio.to_thread(store.put_json, session_key(sid), session)
        trace = bus.new_trace_id()
        for msg in msgs:
            await asyncio.to_thread(lambda m=msg: bus.send(producer(), settings.topics.analyses, m, m.analysis_id, trace).get(timeout=30))
            SUBMITTED.labels(sport).inc()
        log.info("session queued", extra={"session_id": sid, "analyses": [c["analysis_id"] for c in cams]})
        return JSONResponse({"id": sid, "status": "queued",
                             "cameras": [{"index": c["index"], "analysis_id": c["analysis_id"]} for c in cams],
                             "links": {"self": f"/v1/sessions/{sid}"}}, status_code=202)

    @router.get("/v1/sessions/{sid}", responses=errors(*V1, 404, 422))
    def get_session(sid: str):
        session = load_session(sid)
        cameras, states = [], []
        for c in session["cameras"]:
            st = analysis_status(store, c["analysis_id"])
            states.append(st)
            cameras.append({"index": c["index"], "analysis_id": c["analysis_id"], "filename": c["filename"],
                            "status": st["status"], "progress": st["progress"], "error": st["error"],
                            "fps": c["video"]["fps"], "frames": c["video"]["frames"],
                            "links": {"analysis": f"/v1/analyses/{c['analysis_id']}",
                                      "result": f"/v1/analyses/{c['analysis_id']}/result"}})
        alignment, error = None, None
        failed = [(c, s) for c, s in zip(session["cameras"], states) if s["status"] == "failed"]
        if failed:
            status = "failed"
            error = "; ".join(f"camera {c['index']} ({c['filename']}): {s['error']}" for c, s in failed)
        elif all(s["status"] == "done" for s in states):
            try:
                alignment = store.get_json(alignment_key(sid))
            except ObjectNotFound:
                alignment = None
            if alignment is None:
                status = "aligning"
                align_in_background(session)
            elif "error" in alignment:
                status, error, alignment = "failed", alignment["error"], None
            else:
                status = "done"
        elif all(s["status"] == "queued" for s in states):
            status = "queued"
        else:
            status = "running"
        return {"id": sid, "status": status, "error": error, "sport": session["sport"],
                "created_at": session["created_at"], "athlete_height_m": session.get("athlete_height_m"),
                "cameras": cameras, "alignment": alignment}

    return router
