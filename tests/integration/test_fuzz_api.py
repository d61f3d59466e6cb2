"""Fuzz the gateway's HTTP API from its own OpenAPI spec (schemathesis), in process.

The app is the real gateway (`create_app`) on the real object store and broker of the test
session (the `infra` fixture), bound as if beyond loopback so every /v1 request needs a key:
the fuzzer sends a valid one. Every operation is fuzzed with schema-valid ("positive") and
schema-violating ("negative") requests, and the operations with an id in the path once more
with the id of an analysis / session that exists and belongs to the key (so the code behind
the 404 is reached too, with fuzzed query parameters). Each response must not be a 5xx and must
match the spec: status code declared, content type, body schema and headers as declared.

Bounded and reproducible: EXAMPLES requests per (operation, mode), derandomized (the same
requests on every run), no example database.
"""
from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.generation.modes import GenerationMode

pytestmark = pytest.mark.integration
EXAMPLES = 50   # per operation and mode
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]


def _operations() -> list[tuple[str, str, bool]]:
    """(METHOD, path, takes input) of every operation in the spec (needs no running services)."""
    from services.gateway.app import create_app
    from shared.settings import Settings

    spec = create_app(Settings()).openapi()
    return [(m.upper(), p, bool(op.get("requestBody") or any(x["in"] != "path" for x in op.get("parameters", []))))
            for p, ops in spec["paths"].items() for m, op in ops.items()]


# Negative requests need something that can violate the schema: a query parameter or a body (the
# path parameters are free-form strings; a malformed id is just a missing one, 404).
CASES = [(m, p, mode) for m, p, takes_input in _operations()
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input or mode.is_positive]
WITH_IDS = sorted({(m, p) for m, p, _ in CASES if "{" in p})


@pytest.fixture(scope="module")
def fuzz_target(infra):
    """(schema bound to the app, auth headers, {path parameter: id of an existing object})."""
    from services.gateway.app import create_app
    from services.gateway.auth import KeyRing
    from shared import bus
    from shared.store import ObjectStore

    s = infra.settings.with_(topic_prefix=f"fz{uuid.uuid4().hex[:8]}-", work_partitions=1, gateway_host="0.0.0.0",
                             uploads_per_minute=100_000, max_upload_mb=5)
    bus.ensure_topics(s)
    store = ObjectStore(s)
    key_id, key = KeyRing(store).create("fuzzer")
    ids = _seed(store, key_id)
    app = create_app(s)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema, {"Authorization": f"Bearer {key}"}, ids


def _seed(store, owner: str) -> dict[str, str]:
    """A finished analysis (request, stage statuses, result, annotated video) and a session of it."""
    from shared.store import keys

    aid, sid = uuid.uuid4().hex, uuid.uuid4().hex
    video = {"fps": 10.0, "width": 64, "height": 48, "frames": 2}
    store.put_json(keys.request(aid), {"analysis_id": aid, "sport": "squat", "submitted_at": "2026-01-01T00:00:00Z",
                                       "video": video, "filename": "a.mp4", "size_bytes": 1, "owner": owner})
    for stage in ("tracker", "pose", "judge", "suggest"):
        store.put_json(keys.status(aid, stage), {"stage": stage, "state": "done", "fraction": 1.0,
                                                 "updated_at": "2026-01-01T00:01:00Z"})
    kp = {"nose": [10.0, 20.0, 0.9]}
    store.put_json(keys.result(aid), {"schema": "coach.result/2", "id": aid, "artifacts": {}, "faults": [],
                                      "athletes": [{"track_id": 3, "is_target": True, "frames": [
                                          {"index": 0, "t_s": 0.0, "bbox_px": [1, 2, 3, 4], "keypoints": kp,
                                           "angles_deg": {"knee_l": 12.5}, "faults": {}},
                                          {"index": 1, "t_s": 0.1, "bbox_px": None, "keypoints": None,
                                           "angles_deg": {}, "faults": {}}]}]})
    store.put_bytes(keys.annotated_video(aid), b"\x00" * 64, "video/mp4")
    store.put_json(keys.session(sid), {
        "schema": "coach.session/1", "id": sid, "sport": "squat", "created_at": "2026-01-01T00:00:00Z", "owner": owner,
        "athlete_height_m": None, "cameras": [{"index": 0, "analysis_id": aid, "filename": "a.mp4", "video": video,
                                               "video_key": keys.source(aid, "mp4")}]})
    store.put_json(keys.session_alignment(sid), {"schema": "coach.session-alignment/1", "session_id": sid,
                                                      "cameras": []})
    return {"aid": aid, "sid": sid}


def _fuzz(schema, headers, method, path, mode, path_parameters=None, examples=EXAMPLES, expect=None, tweak=None):
    operation = schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy.map(tweak) if tweak else strategy)
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        # not following redirects: /video answers 307 to a presigned URL of the object store
        response = case.call_and_validate(headers=headers, checks=CHECKS, allow_redirects=False)
        if expect is not None:
            assert response.status_code == expect, (case.path, response.status_code, response.text[:200])

    run()


@pytest.mark.parametrize("method,path,mode", CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_fuzzed_requests_get_no_5xx_and_answers_match_the_spec(fuzz_target, method, path, mode):
    schema, headers, _ = fuzz_target
    _fuzz(schema, headers, method, path, mode)


@pytest.mark.parametrize("method,path", WITH_IDS, ids=[f"{m} {p}" for m, p in WITH_IDS])
def test_fuzzed_requests_on_existing_objects(fuzz_target, method, path):
    schema, headers, ids = fuzz_target
    fixed = {name: ids[name] for name in ("aid", "sid") if "{" + name + "}" in path}
    _fuzz(schema, headers, method, path, GenerationMode.POSITIVE, fixed)


def _known_sport(case):
    if isinstance(case.body, dict):
        case.body["sport"] = "squat"
    return case


UPLOADS = [(m, p) for m, p, mode in CASES if m == "POST" and mode.is_positive]


@pytest.mark.parametrize("method,path", UPLOADS, ids=[f"{m} {p}" for m, p in UPLOADS])
def test_fuzzed_uploads_for_a_known_sport(fuzz_target, method, path):
    """With a random sport nearly every upload stops at "unknown sport": here the sport is known,
    so the fuzzed files, file names, content types, boxes and heights reach the upload checks."""
    schema, headers, _ = fuzz_target
    _fuzz(schema, headers, method, path, GenerationMode.POSITIVE, tweak=_known_sport)


V1_OPERATIONS = sorted({(m, p) for m, p, _ in CASES if p.startswith("/v1/")})


@pytest.mark.parametrize("method,path", V1_OPERATIONS, ids=[f"{m} {p}" for m, p in V1_OPERATIONS])
def test_without_a_key_every_v1_request_is_refused(fuzz_target, method, path):
    """Bound beyond loopback, a request without a key gets 401 whatever else it carries, even for
    an analysis or session that exists."""
    schema, _, ids = fuzz_target
    fixed = {name: ids[name] for name in ("aid", "sid") if "{" + name + "}" in path}
    _fuzz(schema, {}, method, path, GenerationMode.POSITIVE, fixed, examples=10, expect=401)
