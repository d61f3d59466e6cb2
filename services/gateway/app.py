"""Gateway: the HTTP API (and later the web page) in front of the pipeline.

POST /v1/analyses validates the upload *before* anything is queued, stores it and produces an
AnalysisRequested. Status is read from the per-stage status objects the services write, so any
number of gateway replicas agree without sharing memory.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

import cv2
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from services.gateway.auth import caller_of, install_auth, keyless_allowed, owner_of
from services.gateway.limits import BodyLimit
from services.gateway.openapi import SSE_RESPONSE, V1, EventStreamResponse, MetricsResponse, errors
from services.gateway.web import web_router
from shared import bus
from shared.messages import AnalysisRequested, VideoInfo, utc_now
from shared.settings import Settings
from shared.store import ObjectNotFound, ObjectStore, StoreUnavailable, keys
from shared.watchdog import is_done

log = logging.getLogger("gateway")
STAGES = ("tracker", "pose", "judge", "suggest")
ID_RE = re.compile(r"^[a-f0-9]{32}$")

SUBMITTED = Counter("coach_analyses_submitted_total", "Analyses accepted and queued", ["sport"])
REJECTED = Counter("coach_uploads_rejected_total", "Uploads refused before queueing", ["reason"])
HTTP_SECONDS = Histogram("coach_http_request_seconds", "Gateway request seconds", ["route", "method", "code"])


class UploadRejected(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def new_analysis_id() -> str:
    """Time-ordered (listing the store returns newest last) and unguessable."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def probe_video(path: Path, settings: Settings) -> VideoInfo:
    """Decode enough of the file to know it is a usable video; raise UploadRejected otherwise."""
    if path.stat().st_size == 0:
        raise UploadRejected(422, "empty", "the uploaded file is empty")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UploadRejected(422, "not_video", "the file is not a video we can decode (supported: MP4, MOV, AVI, MKV, WebM with common codecs)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise UploadRejected(422, "no_frames", "the video has no decodable frame (is it truncated or empty?)")
        h, w = frame.shape[:2]
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count == 1 or (count <= 0 and not cap.read()[0]):
            raise UploadRejected(422, "single_image", "this is a single image, not a video")
        if not (0 < fps < 1000):
            raise UploadRejected(422, "no_frame_rate", "the video has no usable frame rate")
        if w * h > settings.max_pixels:
            raise UploadRejected(422, "too_many_pixels", f"{w}x{h} is larger than the {settings.max_pixels} pixels allowed per frame")
        if min(w, h) < settings.min_frame_side_px:
            raise UploadRejected(422, "too_small", f"{w}x{h} is too small: each side needs at least {settings.min_frame_side_px} pixels")
        if max(w, h) > settings.max_aspect_ratio * min(w, h):
            raise UploadRejected(422, "bad_aspect", f"{w}x{h} is too elongated: at most {settings.max_aspect_ratio:g}:1 is accepted")
        if count > 0 and count / fps > settings.max_duration_s:
            raise UploadRejected(413, "too_long", f"the video lasts {count / fps:.0f} s; at most {settings.max_duration_s:.0f} s is accepted")
        return VideoInfo(fps=round(fps, 4), width=w, height=h, frames=count if count > 0 else None)
    finally:
        cap.release()


def parse_bbox(text: Optional[str], info: VideoInfo) -> Optional[list[float]]:
    if text is None or text.strip() == "":
        return None
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if not all(math.isfinite(v) for v in box):   # "nan" and "inf" parse as floats and defeat every comparison
        box = []
    if len(box) != 4 or box[2] <= 1 or box[3] <= 1 or box[0] < 0 or box[1] < 0 \
            or box[0] + box[2] > info.width + 1 or box[1] + box[3] > info.height + 1:
        raise UploadRejected(422, "bad_bbox", f"target_bbox must be x,y,w,h in pixels inside the {info.width}x{info.height} first frame")
    return box


# What a stored video is served as (presigned URLs): decided by the extension we kept (a known
# video one, the content being probed as a video), never by the client's Content-Type (a video
# sent as "text/html" must not be served as a page).
VIDEO_TYPES = {"mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "avi": "video/x-msvideo",
               "mkv": "video/x-matroska", "webm": "video/webm", "mpg": "video/mpeg", "mpeg": "video/mpeg",
               "3gp": "video/3gpp", "wmv": "video/x-ms-wmv", "flv": "video/x-flv", "ts": "video/mp2t",
               "mts": "video/mp2t", "m2ts": "video/mp2t", "ogv": "video/ogg", "mjpeg": "video/x-motion-jpeg"}
VIDEO_EXTENSIONS = frozenset(VIDEO_TYPES)


def stored_content_type(ext: str) -> str:
    return VIDEO_TYPES.get(ext, "application/octet-stream")


async def save_upload(video: UploadFile, directory: Path, stem: str, settings: Settings,
                      what: str = "the upload") -> tuple[Path, str, int]:
    """Stream an upload to directory/stem.<ext>, refusing it (413) past the size limit.

    The extension is kept only when it is one of the known video extensions ("bin" otherwise):
    a file name is never trusted further (it never reaches an object key)."""
    limit = settings.max_upload_mb * 1024 * 1024
    suffix = Path(video.filename or "").suffix.lower().lstrip(".")
    ext = suffix if suffix in VIDEO_EXTENSIONS else "bin"
    path = directory / f"{stem}.{ext}"
    size = 0
    with open(path, "wb") as out:
        while chunk := await video.read(1 << 20):
            size += len(chunk)
            if size > limit:
                REJECTED.labels("too_large").inc()
                raise HTTPException(413, f"{what} is larger than {settings.max_upload_mb} MB")
            out.write(chunk)
    return path, ext, size


def request_record(msg: AnalysisRequested, filename: str | None, size: int, owner: str, **extra) -> dict:
    """analyses/<id>/request.json: what was asked, by whom, and the message to re-drive it with."""
    return {"analysis_id": msg.analysis_id, "sport": msg.sport, "submitted_at": msg.submitted_at,
            "video": msg.video.model_dump(), "filename": (filename or "")[:200], "size_bytes": size,
            "target_bbox_px": msg.target_bbox_px,
            "message": msg.model_dump(mode="json", by_alias=True),   # lets the watchdog re-drive a stalled analysis
            "owner": owner, **extra}


def analysis_status(store: ObjectStore, aid: str) -> dict:
    """Combine the per-stage status objects into the status a client sees."""
    try:
        request = store.get_json(keys.request(aid))
    except ObjectNotFound:
        raise HTTPException(404, f"no analysis {aid}") from None
    stages = {}
    for key in store.list(keys.status_prefix(aid)):
        doc = store.get_json(key)
        stages[doc["stage"]] = doc
    progress = {st: float(stages[st]["fraction"]) if st in stages else 0.0 for st in STAGES}
    failed = [d for d in stages.values() if d["state"] == "failed"]
    if failed:
        status, error = "failed", failed[0].get("error") or "failed"
    elif is_done(store, aid, stages):   # also while a redelivered message is processed again
        status, error = "done", None
        progress = {st: 1.0 for st in STAGES}
    elif stages:
        status, error = "running", None
    else:
        status, error = "queued", None
    return {"id": aid, "status": status, "progress": progress, "error": error, "sport": request["sport"],
            "submitted_at": request["submitted_at"], "video": request["video"]}


def _fresh_urls(store: ObjectStore, result: dict) -> dict:
    """Presigned URLs expire: sign them again on every read."""
    for art in result.get("artifacts", {}).values():
        art["url"] = store.presigned_url(art["key"])
    for fault in result.get("faults", []):
        for sug in fault.get("suggestions", []):
            sug["url"] = store.presigned_url(sug["video_key"])
    return result


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    state: dict = {"producer": None, "sports": None}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if state["producer"] is not None:
            state["producer"].close(timeout=5)
            state["producer"] = None   # a later request (app started again, as in tests) makes a new one

    app = FastAPI(title="AI Coach", version="1", lifespan=lifespan,
                  description="Upload a training clip; get poses, faults and exemplar suggestions back.")
    store = ObjectStore(settings)
    install_auth(app, store, settings)
    log.info("API keys required on every /v1 request" if not keyless_allowed(settings) else
             "keyless requests are accepted from loopback (COACH_ALLOW_KEYLESS); keys work too")

    def producer():
        if state["producer"] is None:
            state["producer"] = bus.make_producer(settings, client_id="gateway")
        return state["producer"]

    def sports() -> dict[str, dict]:
        # The judge's model registry (models/<sport>/current.json), re-read at most every 10 s so a
        # `coach judge publish` shows here without a restart; shipped packs for sports it lacks, and
        # the last answer (or the shipped packs) while the store is unreachable.
        now = time.monotonic()
        if state["sports"] is None or now - state.get("sports_read_at", 0.0) > 10.0:
            from services.judge.registry import ModelRegistry
            try:
                state["sports"] = ModelRegistry(store).describe_all()
            except StoreUnavailable:
                if state["sports"] is None:
                    from services.judge.packs import available_packs, load_pack
                    state["sports"] = {name: load_pack(name).describe() for name in available_packs()}
            state["sports_read_at"] = now
        return state["sports"]

    def check_id(aid: str) -> str:
        if not ID_RE.match(aid):
            raise HTTPException(404, f"no analysis {aid[:64]}")
        return aid

    @app.middleware("http")
    async def timing(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        HTTP_SECONDS.labels(getattr(route, "path", "other"), request.method, str(response.status_code)).observe(
            time.perf_counter() - started)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # The form parser's 400 says only "Invalid multipart data.": say what usually causes it.
        if exc.status_code == 400 and request.method == "POST":
            detail = ("the upload is not valid multipart/form-data (send the file as the `video` field; a part's "
                      "headers, the file name included, may not exceed 4 KB)")
            return JSONResponse({"detail": detail}, status_code=400)
        return await http_exception_handler(request, exc)

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable):
        return JSONResponse({"detail": "storage is temporarily unavailable; try again shortly"}, status_code=503)

    @app.get("/healthz", responses={503: {"description": "The object store is unreachable (same body, ok: false)"}})
    def healthz():
        ok = store.ping()
        return JSONResponse({"ok": ok, "service": "gateway", "object_store": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=MetricsResponse)
    def metrics():
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/sports", responses=errors(*V1))
    def list_sports():
        return {"sports": list(sports().values())}

    @app.post("/v1/analyses", status_code=202, responses=errors(*V1, 400, 413, 422, 429))
    async def create_analysis(request: Request, video: UploadFile = File(...), sport: str = Form(None),
                              target_bbox: Optional[str] = Form(None)):
        sport = sport or settings.default_sport
        if sport not in sports():
            REJECTED.labels("unknown_sport").inc()
            raise HTTPException(422, f"unknown sport {sport!r}; choose one of: {', '.join(sports())}")
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
        await asyncio.to_thread(lambda: bus.send(producer(), settings.topics.analyses, msg, aid, bus.new_trace_id()).get(timeout=30))
        SUBMITTED.labels(sport).inc()
        log.info("analysis queued", extra={"analysis_id": aid})
        return JSONResponse({"id": aid, "status": "queued", "links": {
            "self": f"/v1/analyses/{aid}", "result": f"/v1/analyses/{aid}/result", "events": f"/v1/analyses/{aid}/events"}},
            status_code=202)

    @app.get("/v1/analyses", responses=errors(*V1, 422))
    def list_analyses(request: Request, limit: int = 50):
        """The caller's analyses, newest first (the 500 most recent analyses are searched)."""
        me = caller_of(request)
        ids = [p.rstrip("/").split("/")[-1] for p in store.iter_prefixes("analyses/")]
        out = []
        for aid in reversed([i for i in ids if ID_RE.match(i)][-500:]):   # ids are time-ordered
            if len(out) >= max(1, min(limit, 500)):
                break
            if owner_of(store, "analysis", aid) != me:
                continue
            try:
                out.append(analysis_status(store, aid))
            except HTTPException:
                continue
        return {"analyses": out}

    @app.get("/v1/analyses/{aid}", responses=errors(*V1, 404, 422))
    def get_analysis(aid: str):
        return analysis_status(store, check_id(aid))

    @app.get("/v1/analyses/{aid}/result", responses=errors(*V1, 404, 409, 422))
    def get_result(aid: str):
        st = analysis_status(store, check_id(aid))
        if st["status"] != "done":
            raise HTTPException(409, f"analysis {aid} is {st['status']}" + (f": {st['error']}" if st["error"] else ""))
        return _fresh_urls(store, store.get_json(keys.result(aid)))

    @app.get("/v1/analyses/{aid}/video", status_code=307, response_class=RedirectResponse,
             responses={307: {"description": "Redirect to a presigned URL of the annotated video (MP4, H.264)",
                              "headers": {"Location": {"schema": {"type": "string"}}}}, **errors(*V1, 404, 422)})
    def get_annotated_video(aid: str):
        check_id(aid)
        if not store.exists(keys.annotated_video(aid)):
            raise HTTPException(404, "no annotated video (yet)")
        return RedirectResponse(store.presigned_url(keys.annotated_video(aid)), status_code=307)

    @app.get("/v1/analyses/{aid}/events", response_class=EventStreamResponse,
             responses={**SSE_RESPONSE, **errors(*V1, 404, 422, json_route=False)})
    async def events(aid: str, request: Request):
        """Server-sent events: a `progress` event on every change, `end` when done or failed."""
        check_id(aid)
        first = await asyncio.to_thread(analysis_status, store, aid)   # 404 before the stream starts

        async def stream():
            last, st = None, first
            while True:
                body = json.dumps(st)
                if body != last:
                    yield f"event: progress\ndata: {body}\n\n"
                    last = body
                if st["status"] in ("done", "failed"):
                    yield f"event: end\ndata: {body}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.5)
                st = await asyncio.to_thread(analysis_status, store, aid)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(web_router(store, settings))
    # Result documents are megabytes of per-frame JSON (about 4 MB for 795 frames) that compress
    # ~10x; event streams are left alone by the middleware.
    app.add_middleware(GZipMiddleware, minimum_size=4096)
    from services.gateway.sessions import MAX_CAMERAS, sessions_router  # imports this module's helpers: late import
    app.include_router(sessions_router(store, settings, producer, sports))
    # outermost: a body over the limit is refused before anything reads it (multipart overhead allowed)
    per_file = settings.max_upload_mb * 1024 * 1024
    body_limits = {"/v1/analyses": per_file + (1 << 16), "/v1/sessions": MAX_CAMERAS * per_file + (1 << 16)}
    app.add_middleware(BodyLimit, limits=body_limits.get, message=lambda path: (
        f"the upload is larger than {settings.max_upload_mb} MB" if path == "/v1/analyses" else
        f"the upload is larger than {MAX_CAMERAS} videos of {settings.max_upload_mb} MB"))
    return app
