"""Athlete switch: POST /v1/analyses/{id}/athlete {"track_id": N} makes another tracked person the athlete.

The gateway only checks and records the request (selection.json, the tracker's status) and produces
an AthleteSelected on `athlete-selections`; the tracker retargets tracking.json and re-publishes the
person's clips, and pose, judge and suggest re-run for them (services/tracker/retarget.py).
Ownership is checked by the auth middleware, as for every /v1/analyses/{id} route.
"""
from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth import caller_of
from services.gateway.deps import Deps, analysis_status, check_id, get_deps
from services.gateway.openapi import V1, errors
from shared import bus
from shared.documents import AthleteSelection, StageStatus, TrackingDocument
from shared.messages import AthleteSelected, utc_now
from shared.store import ObjectNotFound, keys
from shared.status import requested_revision

log = logging.getLogger("gateway")
router = APIRouter()


class AthleteChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    track_id: int = Field(description="One of the result's athletes[].track_id")


def _answer(aid: str, status: str, track_id: int, revision: int, previous: int | None, code: int) -> JSONResponse:
    return JSONResponse({"id": aid, "status": status, "track_id": track_id, "revision": revision,
                         "previous_track_id": previous,
                         "links": {"self": f"/v1/analyses/{aid}", "result": f"/v1/analyses/{aid}/result",
                                   "events": f"/v1/analyses/{aid}/events"}}, status_code=code)


@router.post("/v1/analyses/{aid}/athlete", status_code=202, responses={
    200: {"description": "The person is already the athlete: nothing re-runs"},
    202: {"description": "Accepted: the analysis runs again for that person (follow /events), then the result "
                         "lists them first"},
    **errors(*V1, 404, 409, 422)})
def choose_athlete(aid: str, choice: AthleteChoice, request: Request, deps: Deps = Depends(get_deps)):
    """Make another tracked person the athlete of a finished analysis (pose, judge and suggest re-run
    for them; tracking is not repeated)."""
    store = deps.store
    st = analysis_status(store, check_id(aid))   # 404 for an unknown analysis
    if st["status"] != "done":
        raise HTTPException(409, f"analysis {aid} is {st['status']}: the athlete can be switched once it is done"
                                 + (f" ({st['error']})" if st["error"] else ""))
    try:
        tracking = TrackingDocument.read(store, keys.tracking(aid))
    except ObjectNotFound:
        raise HTTPException(409, f"analysis {aid} has no tracking to switch the athlete in") from None
    ids = [a.track_id for a in tracking.athletes]
    if choice.track_id not in ids:
        raise HTTPException(422, f"track {choice.track_id} is not among the people tracked in this analysis; "
                                 f"valid track ids: {', '.join(map(str, sorted(ids))) or 'none'}")
    current, revision = tracking.athlete.track_id, tracking.revision
    if choice.track_id == current:
        return _answer(aid, "done", current, revision, None, 200)   # idempotent: already the athlete
    revision = max(revision, requested_revision(store, aid)) + 1
    msg = AthleteSelected(analysis_id=aid, track_id=choice.track_id, revision=revision, requested_at=utc_now())
    # Recorded before it is sent: the analysis reads as running from now on (shared/status.is_done),
    # and the watchdog can send the selection again if it stalls.
    store.put_json(keys.selection(aid), AthleteSelection(revision=revision, track_id=choice.track_id,
                                                         previous_track_id=current, requested_at=msg.requested_at,
                                                         by=caller_of(request), message=msg))
    store.put_json(keys.status(aid, "tracker"), StageStatus(
        stage="tracker", state="queued", fraction=0.0, updated_at=utc_now(), revision=revision,
        note=f"athlete switch from track {current} to track {choice.track_id} requested"))
    bus.send(deps.producer(), deps.settings.topics.athlete_selections, msg, aid, bus.new_trace_id()).get(timeout=30)
    log.info("athlete switch queued", extra={"analysis_id": aid})
    return _answer(aid, "running", choice.track_id, revision, current, 202)

