"""Operations and catalogue: health, Prometheus metrics, the sports the judge knows."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.gateway.deps import Deps, get_deps
from services.gateway.openapi import V1, MetricsResponse, errors

router = APIRouter()


@router.get("/healthz", responses={503: {"description": "The object store is unreachable (same body, ok: false)"}})
def healthz(deps: Deps = Depends(get_deps)):
    ok = deps.store.ping()
    return JSONResponse({"ok": ok, "service": "gateway", "object_store": ok}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=MetricsResponse)
def metrics():
    return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/sports", responses=errors(*V1))
def list_sports(deps: Deps = Depends(get_deps)):
    return {"sports": list(deps.sports().values())}
