"""The gateway's side of partial verdicts (issue 17), on an in-memory store: `GET .../result?partial=1`
answers the provisional verdict while the analysis runs and the result once done, and the event
stream announces each new partial. The real stack: tests/integration/test_partial_verdicts.py."""
from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import HTTPException

from services.gateway.deps import Deps
from services.gateway.routes.analyses import events, get_result
from shared.documents import AnalysisRequest, AthleteSelection, PartialVerdictDocument, StageStatus
from shared.messages import VideoInfo, utc_now
from shared.settings import Settings
from shared.store import keys
from shared.testing import MemoryStore

AID = "0123456789abcdef" * 2


def _running() -> tuple[MemoryStore, Deps]:
    store = MemoryStore()
    store.put_json(keys.request(AID), AnalysisRequest(analysis_id=AID, sport="squat", submitted_at=utc_now(),
                                                      video=VideoInfo(fps=30, width=640, height=480, frames=300)))
    for stage, state in (("tracker", "running"), ("pose", "running"), ("judge", "waiting")):
        store.put_json(keys.status(AID, stage), StageStatus(stage=stage, state=state, fraction=0.3, updated_at=utc_now()))
    return store, Deps(Settings(), store)


def _partial(sequence: int, revision: int = 0) -> PartialVerdictDocument:
    return PartialVerdictDocument(analysis_id=AID, sport="squat", model_version="squat-1", revision=revision,
                                  sequence=sequence, clips_posed=sequence, frames_posed=32 * sequence,
                                  frames_total=300, posed_until_s=1.067 * sequence, safe_until_s=0.067,
                                  faults=[], fault_types=["shallow_depth"], synthetic=True)


def _finish(store: MemoryStore) -> None:
    store.put_json(keys.result(AID), {"schema": "coach.result/2", "id": AID, "artifacts": {}, "faults": []})
    store.put_json(keys.status(AID, "suggest"), StageStatus(stage="suggest", state="done", fraction=1.0,
                                                            updated_at=utc_now()))


def _status(call) -> int:
    with pytest.raises(HTTPException) as exc:
        call()
    return exc.value.status_code


def test_result_with_partial_answers_the_provisional_verdict_while_running_then_the_result():
    store, deps = _running()
    assert _status(lambda: get_result(AID, frames="all", partial=False, deps=deps)) == 409          # as before
    assert _status(lambda: get_result(AID, frames="all", partial=True, deps=deps)) == 409           # no partial yet
    assert _status(lambda: get_result("f" * 32, frames="all", partial=True, deps=deps)) == 404
    store.put_json(keys.partial_verdict(AID), _partial(2))
    doc = get_result(AID, frames="all", partial=True, deps=deps)
    assert doc["schema"] == "coach.partial-verdict-document/1" and doc["sequence"] == 2
    assert _status(lambda: get_result(AID, frames="all", partial=False, deps=deps)) == 409          # the plain route waits
    _finish(store)
    for flag in (True, False):   # the finished result is answered as stored JSON (no per-frame re-encoding)
        resp = get_result(AID, frames="all", partial=flag, deps=deps)
        assert json.loads(resp.body)["schema"] == "coach.result/2"


def test_a_partial_of_the_athlete_before_a_switch_is_not_answered():
    store, deps = _running()
    store.put_json(keys.partial_verdict(AID), _partial(3, revision=0))
    store.put_json(keys.selection(AID), AthleteSelection(revision=1, track_id=4, requested_at=utc_now()))
    assert _status(lambda: get_result(AID, frames="all", partial=True, deps=deps)) == 409
    store.put_json(keys.partial_verdict(AID), _partial(1, revision=1))
    assert get_result(AID, frames="all", partial=True, deps=deps)["revision"] == 1


class _Client:
    async def is_disconnected(self) -> bool:
        return False


def test_the_event_stream_sends_each_new_partial_once_then_ends():
    store, deps = _running()
    store.put_json(keys.partial_verdict(AID), _partial(1))

    async def collect() -> list[tuple[str, str]]:
        response = await events(AID, _Client(), deps)
        out, polls = [], 0
        async for chunk in response.body_iterator:
            name = chunk.split("\n", 1)[0].removeprefix("event: ")
            out.append((name, chunk))
            polls += 1
            if name == "partial" and '"sequence": 1' in chunk:
                store.put_json(keys.partial_verdict(AID), _partial(2))
            elif name == "partial":
                _finish(store)
            assert polls < 20
        return out

    got = asyncio.run(collect())
    names = [n for n, _ in got]
    assert names[0] == "progress" and names[-1] == "end"
    partials = [c for n, c in got if n == "partial"]
    assert len(partials) == 2 and '"sequence": 1' in partials[0] and '"sequence": 2' in partials[1]


def test_coach_tail_reads_the_partial_verdicts_topic_as_one_line_each():
    from coach.tail import summarize
    from shared.messages import FaultSegment, PartialVerdict, topic_models

    assert topic_models(Settings().topics)["partial-verdicts"] is PartialVerdict
    doc = _partial(2).model_copy(update={"withheld": 1, "repetitions": 1, "faults": [FaultSegment(
        type="shallow_depth", start_frame=49, end_frame=64, start_s=1.633, end_s=2.133, peak_probability=0.9)]})
    line = summarize(PartialVerdict(**doc.model_dump(exclude={"schema_"}), partial_key=keys.partial_verdict(AID)))
    assert line.startswith(f"partial  {AID}  squat  #2  clips 2") and "shallow_depth×1" in line
    assert "(1 withheld)" in line and "reps=1" in line
