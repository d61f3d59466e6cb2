"""What the OpenAPI spec says about errors and non-JSON answers, so that it matches what is sent.

Every error is `{"detail": "<a sentence saying what is wrong>"}`; FastAPI's own request
validation sends a list of field errors in `detail` instead. `errors(401, 404, ...)` declares
those responses on a route (checked against the real answers by tests/integration/test_fuzz_api.py).
"""
from __future__ import annotations

from typing import Any, Union

from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field


class Problem(BaseModel):
    detail: Union[str, list[dict[str, Any]]] = Field(
        description="What is wrong, in a sentence (a list of field errors when the request itself is malformed)")


_WHY = {
    400: "The multipart body cannot be parsed",
    401: "No API key, or an unknown or revoked one (keys are required unless the gateway is on loopback)",
    404: "No such analysis or session for this key (another key's look exactly like missing ones)",
    409: "The analysis is not done (yet), or it failed: `detail` says which",
    413: "The upload is larger than the size limit, or the video longer than the duration limit",
    422: "The request or the upload cannot be used: `detail` says why",
    429: "Too many uploads for this key; retry after `Retry-After` seconds",
    503: "Storage is temporarily unavailable; try again shortly",
}


def errors(*codes: int, json_route: bool = True) -> dict[int | str, dict[str, Any]]:
    """Responses for these error codes. On a route whose own answer is not JSON (CSV, event
    stream) FastAPI would give a `model` that media type: the schema is referenced explicitly."""
    if json_route:
        out: dict[int | str, dict[str, Any]] = {c: {"model": Problem, "description": _WHY[c]} for c in codes}
    else:
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        out = {c: {"description": _WHY[c], "content": ref} for c in codes}
    if 429 in out:
        out[429]["headers"] = {"Retry-After": {"description": "seconds until an upload is allowed again",
                                               "schema": {"type": "integer"}}}
    if 401 in out:
        out[401]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return out


# the /v1 routes answer these from the auth middleware, before the route runs
V1 = (401, 503)


# the event stream of /v1/analyses/{aid}/events, one event at a time (OpenAPI 3.1 SSE convention)
SSE_RESPONSE = {200: {"description": "Server-sent events: `progress` on every change, `partial` with each new "
                                     "provisional verdict while the analysis runs (its data is the partial.json "
                                     "document, shared/schemas/partial-verdict-document.schema.json), then one `end` "
                                     "(done or failed)",
                      "content": {"text/event-stream": {"schema": {
                          "type": "object", "required": ["event", "data"],
                          "properties": {"event": {"enum": ["progress", "partial", "end"]},
                                         "data": {"type": "string", "contentMediaType": "application/json",
                                                  "contentSchema": {"type": "object", "oneOf": [
                                                      {"required": ["id", "status", "progress"]},
                                                      {"required": ["schema", "analysis_id", "sequence", "faults"]}]}}}}}}}}


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


class CSVResponse(StreamingResponse):
    media_type = "text/csv"


class MetricsResponse(PlainTextResponse):
    media_type = "text/plain"
