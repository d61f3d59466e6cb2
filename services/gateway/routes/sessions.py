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
(optical flow), long CPU work that stays out of the gateway: the first GET that finds every
analysis done publishes a SessionAlignmentRequested on `alignments` and answers "aligning"; the
tracker's align worker (services/tracker/align_worker.py) stores sessions/<sid>/alignment.json,
which the gateway only reads. The request is recorded (sessions/<sid>/alignment-request.json); one
that shows no progress for COACH_STALL_TIMEOUT_S is published again, COACH_MAX_REDRIVES times, then
the session fails with the stage it was stuck in, so no session stays "aligning" forever.

Timeline convention: camera c's frame j shows the common-timeline time offset_s + j / fps_c,
the timeline starting (t = 0) with the earliest camera; offset_frames = offset_s * fps_c.
"""
from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from services.gateway.auth import caller_of
from services.gateway.deps import ID_RE, REJECTED, SUBMITTED, Deps, analysis_status, get_deps
from services.gateway.openapi import V1, errors
from services.gateway.uploads import (UploadRejected, new_analysis_id, probe_video, request_record, save_upload,
                                      stored_content_type)
from shared import bus
from shared.documents import SessionAlignment, StageStatus
from shared.messages import AnalysisRequested, SessionAlignmentRequested, SessionCamera, utc_now
from shared.store import ObjectNotFound, ObjectStore, keys
from shared.worker import is_transient

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


def _get(store: ObjectStore, key: str) -> Optional[dict]:
    try:
        return store.get_json(key)
    except ObjectNotFound:
        return None


def _ts(text: str) -> float:
    t = datetime.fromisoformat(text)
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def _alignment(store: ObjectStore, sid: str) -> Optional[SessionAlignment]:
    try:
        return SessionAlignment.read(store, keys.session_alignment(sid))
    except ObjectNotFound:
        return None


def _align_status(store: ObjectStore, sid: str) -> Optional[StageStatus]:
    try:
        return StageStatus.read(store, keys.session_alignment_status(sid))
    except ObjectNotFound:
        return None


def request_alignment(deps: Deps, session: dict) -> Optional[SessionAlignment]:
    """Ask the align worker for a finished session's alignment: once, then again only when the
    request shows no progress for stall_timeout_s (max_redrives times), then fail the session
    (returns the failed alignment document it stored). Two replicas asking at once cost a second
    identical computation, nothing else."""
    sid, store, s = session["id"], deps.store, deps.settings
    record = _get(store, keys.session_alignment_request(sid))
    if record is not None:
        worker = _align_status(store, sid)
        last = max([_ts(r["at"]) for r in record["requests"]] + ([_ts(worker.updated_at)] if worker else []))
        idle = round(time.time() - last)
        if idle < s.stall_timeout_s:
            return None
        if len(record["requests"]) > s.max_redrives:
            stage = "the align worker" if worker else "the alignments queue"
            failed = SessionAlignment(session_id=sid, error=f"alignment failed: stalled in {stage}: no progress for "
                                                            f"{idle} s after {len(record['requests']) - 1} re-drive(s)")
            store.put_json(keys.session_alignment(sid), failed)
            log.error("session alignment stalled; failed", extra={"session_id": sid})
            return failed
    msg = SessionAlignmentRequested(session_id=sid, cameras=[
        SessionCamera(analysis_id=c["analysis_id"], video_key=c["video_key"]) for c in session["cameras"]])
    try:
        bus.send(deps.producer(), s.topics.alignments, msg, sid, bus.new_trace_id()).get(timeout=30)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # the broker is away: nothing is recorded, so the next GET asks again
        log.warning("alignment request not acknowledged; the next GET retries", extra={"session_id": sid})
        return None
    record = record or {"requests": []}
    record["requests"].append({"at": utc_now()})
    store.put_json(keys.session_alignment_request(sid), record)
    log.info("session alignment requested", extra={"session_id": sid, "request": len(record["requests"])})
    return None

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
        doc = _alignment(store, sid) or request_alignment(deps, session)
        if doc is None:
            status = "aligning"
        elif doc.error is not None:
            status, error = "failed", doc.error
        else:
            # as stored (what was not written stays out), without the unset error
            status, alignment = "done", doc.model_dump(by_alias=True, exclude_unset=True, exclude={"error"})
    elif all(s["status"] == "queued" for s in states):
        status = "queued"
    else:
        status = "running"
    return {"id": sid, "status": status, "error": error, "sport": session["sport"],
            "created_at": session["created_at"], "athlete_height_m": session.get("athlete_height_m"),
            "cameras": cameras, "alignment": alignment}
