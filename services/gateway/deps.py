"""What every route of the gateway shares, built once per app by `create_app` and handed to the
routes as a FastAPI dependency (`deps: Deps = Depends(get_deps)`), so routers are plain modules
with no closure state.

Also the gateway's metrics and the combined analysis status, which several routers answer with.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Optional

from fastapi import HTTPException, Request
from prometheus_client import Counter, Histogram

from shared import bus
from shared.documents import AnalysisRequest
from shared.settings import Settings
from shared.sports import SportCatalog, shipped_descriptions
from shared.status import is_done, stage_statuses
from shared.store import ObjectNotFound, ObjectStore, StoreUnavailable, keys

STAGES = ("tracker", "pose", "judge", "suggest")
ID_RE = re.compile(r"^[a-f0-9]{32}$")

SUBMITTED = Counter("coach_analyses_submitted_total", "Analyses accepted and queued", ["sport"])
REJECTED = Counter("coach_uploads_rejected_total", "Uploads refused before queueing", ["reason"])
HTTP_SECONDS = Histogram("coach_http_request_seconds", "Gateway request seconds", ["route", "method", "code"])

SPORTS_CACHE_S = 10.0


@dataclass
class Deps:
    settings: Settings
    store: ObjectStore
    _producer: Any = None
    _sports: Optional[dict[str, dict]] = None
    _sports_read_at: float = 0.0

    def producer(self):
        if self._producer is None:
            self._producer = bus.make_producer(self.settings, client_id="gateway")
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None   # a later request (app started again, as in tests) makes a new one

    def sports(self) -> dict[str, dict]:
        """{sport: description}: the sport catalogue as the model registry has it (the current
        version of each sport, models/<sport>/current.json), re-read at most every 10 s so a `coach
        judge publish` shows here without a restart; shipped packs for sports it lacks, and the last
        answer (or the shipped packs) while the store is unreachable. No model is loaded."""
        now = time.monotonic()
        if self._sports is None or now - self._sports_read_at > SPORTS_CACHE_S:
            try:
                self._sports = SportCatalog(self.store).describe_all()
            except StoreUnavailable:
                if self._sports is None:
                    self._sports = shipped_descriptions()
            self._sports_read_at = now
        return self._sports

    def checked_sport(self, sport: Optional[str]) -> str:
        """The requested sport (the default when none is named); 422 for one we have no pack for."""
        sport = sport or self.settings.default_sport
        if sport not in self.sports():
            REJECTED.labels("unknown_sport").inc()
            raise HTTPException(422, f"unknown sport {sport!r}; choose one of: {', '.join(self.sports())}")
        return sport


def get_deps(request: Request) -> Deps:
    return request.app.state.deps


def check_id(aid: str) -> str:
    if not ID_RE.match(aid):
        raise HTTPException(404, f"no analysis {aid[:64]}")
    return aid


def analysis_status(store: ObjectStore, aid: str) -> dict:
    """Combine the per-stage status objects into the status a client sees."""
    try:
        request = AnalysisRequest.read(store, keys.request(aid))
    except ObjectNotFound:
        raise HTTPException(404, f"no analysis {aid}") from None
    stages = stage_statuses(store, aid)
    progress = {st: float(stages[st].fraction) if st in stages else 0.0 for st in STAGES}
    failed = [d for d in stages.values() if d.state == "failed"]
    if failed:
        status, error = "failed", failed[0].error or "failed"
    elif is_done(store, aid, stages):   # also while a redelivered message is processed again
        status, error = "done", None
        progress = {st: 1.0 for st in STAGES}
    elif stages:
        status, error = "running", None
    else:
        status, error = "queued", None
    return {"id": aid, "status": status, "progress": progress, "error": error, "sport": request.sport,
            "submitted_at": request.submitted_at, "video": request.video.model_dump()}


def done_status(store: ObjectStore, aid: str) -> dict:
    """The status of an analysis that must be done for the route to answer (409 otherwise)."""
    st = analysis_status(store, aid)
    if st["status"] != "done":
        raise HTTPException(409, f"analysis {aid} is {st['status']}" + (f": {st['error']}" if st["error"] else ""))
    return st
