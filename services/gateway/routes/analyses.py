"""Analyses: submit a clip, follow its progress, fetch its result and annotated video.

POST /v1/analyses validates the upload *before* anything is queued, stores it and produces an
AnalysisRequested. Status is read from the per-stage status objects the services write, so any
number of gateway replicas agree without sharing memory.
"""
from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import Literal, Optional

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from services.gateway.auth import caller_of, owner_of
from services.gateway.deps import (ID_RE, REJECTED, SUBMITTED, Deps, analysis_status, check_id, done_status,
                                   get_deps)
from services.gateway.openapi import SSE_RESPONSE, V1, EventStreamResponse, errors
from services.gateway.uploads import (UploadRejected, new_analysis_id, parse_bbox, probe_video, request_record,
                                      save_upload, stored_content_type)
from shared import bus, result_pages
from shared.documents import MalformedDocument, PartialVerdictDocument
from shared.messages import AnalysisRequested, utc_now
from shared.result import ResultFrames
from shared.status import requested_revision
from shared.store import ObjectNotFound, ObjectStore, keys

log = logging.getLogger("gateway")
router = APIRouter()


def _fresh_urls(store: ObjectStore, result: dict) -> dict:
    """Presigned URLs expire: sign them again on every read."""
    for art in result.get("artifacts", {}).values():
        art["url"] = store.presigned_url(art["key"])
    for fault in result.get("faults", []):
        for sug in fault.get("suggestions", []):
            sug["url"] = store.presigned_url(sug["video_key"])
    return result


@router.post("/v1/analyses", status_code=202, responses=errors(*V1, 400, 413, 422, 429))
async def create_analysis(request: Request, video: UploadFile = File(...), sport: str = Form(None),
                          target_bbox: Optional[str] = Form(None), deps: Deps = Depends(get_deps)):
    settings, store = deps.settings, deps.store
    sport = deps.checked_sport(sport)
    with tempfile.TemporaryDirectory(prefix="coach-upload-") as tmp:
        path, ext, size = await save_upload(video, Path(tmp), "upload", settings)
        try:
            info = await asyncio.to_thread(probe_video, path, settings)
            bbox = parse_bbox(target_bbox, info)
        except UploadRejected as rej:
            REJECTED.labels(rej.reason).inc()
            raise HTTPException(rej.status, rej.message) from None
        aid = new_analysis_id()
        msg = AnalysisRequested(analysis_id=aid, sport=sport, video_key=keys.source(aid, ext), video=info,
                                target_bbox_px=bbox, submitted_at=utc_now())
        await asyncio.to_thread(store.put_file, msg.video_key, path, stored_content_type(ext))
    await asyncio.to_thread(store.put_json, keys.request(aid),
                            request_record(msg, video.filename, size, caller_of(request)))
    await asyncio.to_thread(lambda: bus.send(deps.producer(), settings.topics.analyses, msg, aid,
                                             bus.new_trace_id()).get(timeout=30))
    SUBMITTED.labels(sport).inc()
    log.info("analysis queued", extra={"analysis_id": aid})
    return JSONResponse({"id": aid, "status": "queued", "links": {
        "self": f"/v1/analyses/{aid}", "result": f"/v1/analyses/{aid}/result", "events": f"/v1/analyses/{aid}/events"}},
        status_code=202)


@router.get("/v1/analyses", responses=errors(*V1, 422))
def list_analyses(request: Request, limit: int = 50, deps: Deps = Depends(get_deps)):
    """The caller's analyses, newest first (the 500 most recent analyses are searched)."""
    store = deps.store
    me = caller_of(request)
    out = []
    for aid in reversed([i for i in store.analysis_ids() if ID_RE.match(i)][-500:]):   # ids are time-ordered
        if len(out) >= max(1, min(limit, 500)):
            break
        if owner_of(store, "analysis", aid) != me:
            continue
        try:
            out.append(analysis_status(store, aid))
        except HTTPException:
            continue
    return {"analyses": out}


@router.get("/v1/analyses/{aid}", responses=errors(*V1, 404, 422))
def get_analysis(aid: str, deps: Deps = Depends(get_deps)):
    return analysis_status(deps.store, check_id(aid))


def _partial_verdict(store: ObjectStore, aid: str) -> Optional[dict]:
    """The judge's latest provisional verdict (partial.json) for the athlete revision the analysis
    is working on; None when there is none (yet) or it belongs to an earlier athlete."""
    try:
        doc = PartialVerdictDocument.read(store, keys.partial_verdict(aid))
    except (ObjectNotFound, MalformedDocument):
        return None
    if doc.revision < requested_revision(store, aid):
        return None
    return doc.model_dump(by_alias=True)


@router.get("/v1/analyses/{aid}/result", responses={200: {"description": (
    "The result document (shared/schemas/result.schema.json); with `frames=none` the result without its "
    "per-frame arrays (shared/schemas/result-summary.schema.json): `athletes[].frames` and "
    "`biomechanics.series` are left out, `frame_paging` says where the frames are (GET .../frames). "
    "With `partial=1` while the analysis runs: the latest provisional verdict instead "
    "(shared/schemas/partial-verdict-document.schema.json, `schema` coach.partial-verdict-document/1); "
    "once done, the result as without it")},
    **errors(*V1, 404, 409, 422)})
def get_result(aid: str, frames: Literal["all", "none"] = Query(
        "all", description="`none`: leave out the per-frame arrays (kilobytes instead of megabytes)"),
        partial: bool = Query(False, description="While the analysis runs, answer its latest provisional verdict "
                                                 "(409 until the judge has made one)"),
        deps: Deps = Depends(get_deps)):
    check_id(aid)
    if partial:
        st = analysis_status(deps.store, aid)
        if st["status"] in ("queued", "running"):
            doc = _partial_verdict(deps.store, aid)
            if doc is None:
                raise HTTPException(409, f"analysis {aid} is {st['status']}: no partial verdict yet")
            return doc
    done_status(deps.store, aid)
    if frames == "none":
        return JSONResponse(_fresh_urls(deps.store, result_pages.read_summary(deps.store, aid)))
    # JSONResponse: the document is JSON already; FastAPI's encoder would walk every frame (~2 s for vtest)
    return JSONResponse(_fresh_urls(deps.store, deps.store.get_json(keys.result(aid))))


@router.get("/v1/analyses/{aid}/frames", response_model=None, responses={
    200: {"model": ResultFrames, "description": "Frames [start, start + count) of the athlete (and of everybody "
          "else followed) as columns: entry i of every list is one frame (shared/schemas/result-frames.schema.json)"},
    **errors(*V1, 404, 409, 422)})
def get_frames(aid: str, start: int = Query(0, ge=0, le=10**9, description="First frame index"),
               count: int = Query(result_pages.CHUNK_FRAMES, ge=1, le=10**9, description=(
                   f"Frame indices to cover, at most {result_pages.MAX_PAGE_FRAMES}")),
               deps: Deps = Depends(get_deps)):
    """The per-frame part of the result in pages, served from the columnar chunks suggest stores
    (chunk_frames frame indices each, see the result's `frame_paging`)."""
    if count > result_pages.MAX_PAGE_FRAMES:
        raise HTTPException(422, f"count is at most {result_pages.MAX_PAGE_FRAMES} frames per request; "
                                 f"ask for the next page with start={start + result_pages.MAX_PAGE_FRAMES}")
    done_status(deps.store, check_id(aid))
    return JSONResponse(result_pages.read_frames(deps.store, aid, start, count))


@router.get("/v1/analyses/{aid}/video", status_code=307, response_class=RedirectResponse,
            responses={307: {"description": "Redirect to a presigned URL of the annotated video (MP4, H.264)",
                             "headers": {"Location": {"schema": {"type": "string"}}}}, **errors(*V1, 404, 422)})
def get_annotated_video(aid: str, deps: Deps = Depends(get_deps)):
    check_id(aid)
    if not deps.store.exists(keys.annotated_video(aid)):
        raise HTTPException(404, "no annotated video (yet)")
    return RedirectResponse(deps.store.presigned_url(keys.annotated_video(aid)), status_code=307)


@router.get("/v1/analyses/{aid}/events", response_class=EventStreamResponse,
            responses={**SSE_RESPONSE, **errors(*V1, 404, 422, json_route=False)})
async def events(aid: str, request: Request, deps: Deps = Depends(get_deps)):
    """Server-sent events: a `progress` event on every change, a `partial` event with each new
    provisional verdict (the partial.json document) while the analysis runs, `end` when done or failed."""
    check_id(aid)
    store = deps.store
    first = await asyncio.to_thread(analysis_status, store, aid)   # 404 before the stream starts

    async def stream():
        last, st, shown = None, first, None
        while True:
            body = json.dumps(st)
            if body != last:
                yield f"event: progress\ndata: {body}\n\n"
                last = body
            if st["status"] in ("queued", "running"):
                doc = await asyncio.to_thread(_partial_verdict, store, aid)
                if doc is not None and (doc["revision"], doc["sequence"]) != shown:
                    shown = (doc["revision"], doc["sequence"])
                    yield f"event: partial\ndata: {json.dumps(doc)}\n\n"
            if st["status"] in ("done", "failed"):
                yield f"event: end\ndata: {body}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.5)
            st = await asyncio.to_thread(analysis_status, store, aid)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
