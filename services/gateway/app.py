"""Gateway: the HTTP API and the web page in front of the pipeline.

`create_app` wires the pieces; each resource's routes live in `routes/` as plain module-level
routers that get what they share (settings, store, producer, sport catalogue) from `deps.Deps`,
upload checks live in `uploads.py`, multi-camera alignment in `alignment.py`.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from services.gateway.auth import install_auth, keyless_allowed
from services.gateway.deps import HTTP_SECONDS, Deps
from services.gateway.limits import BodyLimit
from services.gateway.routes import analyses, athlete, ops, sessions, web
from shared.settings import Settings
from shared.store import ObjectStore, StoreUnavailable

log = logging.getLogger("gateway")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    store = ObjectStore(settings)
    deps = Deps(settings=settings, store=store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        deps.close()

    app = FastAPI(title="AI Coach", version="1", lifespan=lifespan,
                  description="Upload a training clip; get poses, faults and exemplar suggestions back.")
    app.state.deps = deps
    install_auth(app, store, settings)
    log.info("API keys required on every /v1 request" if not keyless_allowed(settings) else
             "keyless requests are accepted from loopback (COACH_ALLOW_KEYLESS); keys work too")

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

    # order kept from the single-module gateway, so the OpenAPI spec lists operations as before
    app.include_router(ops.router)
    app.include_router(analyses.router)
    app.include_router(web.router)
    # Result documents are megabytes of per-frame JSON (about 4 MB for 795 frames) that compress
    # ~10x; event streams are left alone by the middleware.
    app.add_middleware(GZipMiddleware, minimum_size=4096)
    app.include_router(sessions.router)
    app.include_router(athlete.router)
    # outermost: a body over the limit is refused before anything reads it (multipart overhead allowed)
    per_file = settings.max_upload_mb * 1024 * 1024
    body_limits = {"/v1/analyses": per_file + (1 << 16), "/v1/sessions": sessions.MAX_CAMERAS * per_file + (1 << 16)}
    app.add_middleware(BodyLimit, limits=body_limits.get, message=lambda path: (
        f"the upload is larger than {settings.max_upload_mb} MB" if path == "/v1/analyses" else
        f"the upload is larger than {sessions.MAX_CAMERAS} videos of {settings.max_upload_mb} MB"))
    return app
