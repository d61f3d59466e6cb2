"""The status a client sees, combined from the stages' status objects in the real object store."""
from __future__ import annotations

import uuid

import pytest

from shared.documents import AnalysisRequest, StageStatus
from shared.messages import VideoInfo, utc_now
from shared.store import ObjectStore, keys

pytestmark = pytest.mark.integration


@pytest.fixture
def store(infra):
    s = ObjectStore(infra.settings)
    s.ensure_bucket()
    return s


def _stage(store, aid, stage, state, fraction, updated_at=None, **extra):
    store.put_json(keys.status(aid, stage), StageStatus(stage=stage, state=state, fraction=fraction,
                                                        updated_at=updated_at or utc_now(), **extra))


def _request(store, aid):
    store.put_json(keys.request(aid), AnalysisRequest(analysis_id=aid, sport="squat", submitted_at="2026-11-21T00:00:00Z",
                                                      video=VideoInfo(fps=25.0, width=64, height=48)))


def test_a_done_analysis_stays_done_while_a_redelivered_message_is_processed_again(store):
    """At-least-once: after a worker restart a verdict can be delivered twice, and suggest then
    writes "running" over its "done". A client that saw done must still get done, and its result."""
    from services.gateway.deps import analysis_status

    aid = uuid.uuid4().hex
    _request(store, aid)
    for stage in ("tracker", "pose", "judge"):
        _stage(store, aid, stage, "done", 1.0)
    _stage(store, aid, "suggest", "running", 0.3)
    assert analysis_status(store, aid)["status"] == "running", "no result yet: still running"
    store.put_json(keys.result(aid), {"id": aid})
    _stage(store, aid, "suggest", "done", 1.0)
    assert analysis_status(store, aid)["status"] == "done"
    _stage(store, aid, "suggest", "running", 0.1)          # the duplicate run starts
    st = analysis_status(store, aid)
    assert st["status"] == "done" and st["progress"]["suggest"] == 1.0, st
    _stage(store, aid, "judge", "failed", 0.5, error="boom")  # a real failure still shows
    assert analysis_status(store, aid)["status"] == "failed"


def test_the_watchdog_leaves_a_done_analysis_alone_while_it_is_processed_again(store):
    from coach.watchdog import inspect

    aid = uuid.uuid4().hex
    _request(store, aid)
    for stage in ("tracker", "pose", "judge"):
        _stage(store, aid, stage, "done", 1.0, updated_at="2026-11-21T00:01:00Z")
    _stage(store, aid, "suggest", "running", 0.1, updated_at="2026-11-21T00:01:00Z")
    stuck = inspect(store, aid)
    assert stuck is not None and stuck["stage"] == "suggest", "no result: a stalled suggest is the watchdog's business"
    store.put_json(keys.result(aid), {"id": aid})
    assert inspect(store, aid) is None, "a done analysis must never be re-driven or failed by the watchdog"
