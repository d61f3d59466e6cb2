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
import tempfile
import threading
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from services.gateway.alignment import compute_alignment
from services.gateway.auth import caller_of
from services.gateway.deps import ID_RE, REJECTED, SUBMITTED, Deps, analysis_status, get_deps
from services.gateway.openapi import V1, errors
from services.gateway.uploads import (UploadRejected, new_analysis_id, probe_video, request_record, save_upload,
                                      stored_content_type)
from shared import bus
from shared.messages import AnalysisRequested, utc_now
from shared.store import ObjectNotFound, ObjectStore, keys

log = logging.getLogger("gateway.sessions")
MAX_CAMERAS = 8
router = APIRouter()


def load_session(store: ObjectStore, sid: str) -> dict:
    if not ID_RE.match(sid):
        raise HTTPException(404, f"no session {sid[:64]}")
    try:
        return store.get_json(keys.session(sid))
    except ObjectNotFound:
        raise HTTPException(404, f"no session {sid}") from None


def align_in_background(deps: Deps, session: dict) -> None:
    """Start the alignment of a finished session once per gateway process."""
    sid, store = session["id"], deps.store
    with deps.aligning_lock:
        if sid in deps.aligning:
            return
        deps.aligning.add(sid)

    def work():
        try:
            doc = compute_alignment(store, session)
        except Exception as exc:   # noqa: BLE001 - reported to the client through the document
            log.exception("session alignment failed", extra={"session_id": sid})
            doc = {"schema": "coach.session-alignment/1", "session_id": sid, "error": f"alignment failed: {exc}"}
        try:
            store.put_json(keys.session_alignment(sid), doc)
        finally:
            with deps.aligning_lock:
                deps.aligning.discard(sid)

    threading.Thread(target=work, name=f"align-{sid[:8]}", daemon=True).start()

@router.post("/v1/sessions", status_code=202, responses=errors(*V1, 400, 413, 422, 429))
async def create_session(http_request: Request, videos: list[UploadFile] = File(...), sport: str = Form(None),
                         athlete_height_m: Optional[float] = Form(None), deps: Deps = Depends(get_deps)):
    settings, store = deps.settings, deps.store
    sport = deps.checked_sport(sport)
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
                                     session_id=sid, camera=c["index"], athlete_height_m=athlete_height_m)
            await asyncio.to_thread(store.put_json, keys.request(aid), request)
            c["video_key"] = msg.video_key
            msgs.append(msg)
    session = {"schema": "coach.session/1", "id": sid, "sport": sport, "created_at": utc_now(),
               "owner": caller_of(http_request),
               "athlete_height_m": athlete_height_m,
               "cameras": [{"index": c["index"], "analysis_id": c["analysis_id"], "filename": c["filename"],
                            "video": c["video"].model_dump(), "video_key": c["video_key"]} for c in cams]}
    await asyncio.to_thread(store.put_json, keys.session(sid), session)
    trace = bus.new_trace_id()
    for msg in msgs:
        await asyncio.to_thread(lambda m=msg: bus.send(deps.producer(), settings.topics.analyses, m, m.analysis_id, trace).get(timeout=30))
        SUBMITTED.labels(sport).inc()
    log.info("session queued", extra={"session_id": sid, "analyses": [c["analysis_id"] for c in cams]})
    return JSONResponse({"id": sid, "status": "queued",
                         "cameras": [{"index": c["index"], "analysis_id": c["analysis_id"]} for c in cams],
                         "links": {"self": f"/v1/sessions/{sid}"}}, status_code=202)

@router.get("/v1/sessions/{sid}", responses=errors(*V1, 404, 422))
def get_session(sid: str, deps: Deps = Depends(get_deps)):
    store = deps.store
    session = load_session(store, sid)
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
            alignment = store.get_json(keys.session_alignment(sid))
        except ObjectNotFound:
            alignment = None
        if alignment is None:
            status = "aligning"
            align_in_background(deps, session)
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
