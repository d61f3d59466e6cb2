"""The judge and suggest handlers on in-memory infrastructure (shared/testing.py): what they store
and emit for a stored clip, without a broker or an object store. The same chain runs on the real
stack in tests/integration/test_reps_e2e.py."""
from __future__ import annotations

import pytest
from synthetic_squat import store_synthetic_squat

from services.judge.worker import JudgeStage
from services.suggest.worker import SuggestStage
from shared.messages import AnalysisCompleted, AnalysisVerdict
from shared.result import AnalysisResult
from shared.store import ObjectNotFound, keys
from shared.testing import MemoryStore, handler_context
from shared.worker import AnalysisFailed


@pytest.fixture(scope="module")
def judged():
    """Synthetic shallow squats (filmed at 60 deg) stored as pose would have stored them, then judged."""
    store = MemoryStore()
    aid, n_reps, message = store_synthetic_squat(store, faults={"shallow_depth": 65.0}, camera_yaw_deg=60.0)
    ctx = handler_context("judge", store)
    JudgeStage(ctx.settings, store).handle(message, ctx)
    return store, aid, n_reps, ctx


def test_judge_stores_the_verdict_and_emits_it_once(judged):
    store, aid, n_reps, ctx = judged
    [(topic, key, verdict)] = ctx.emitted()
    assert topic == ctx.settings.topics.verdicts and key == aid
    assert isinstance(verdict, AnalysisVerdict) and verdict.verdict_key == keys.verdict(aid)
    assert verdict.synthetic is True          # the squat fault pack is criteria-based: said so
    assert verdict.finding is None and verdict.frames_performing > 0
    assert len(verdict.repetitions) == n_reps
    assert "shallow_depth" in {f.type for f in verdict.faults}
    stored = store.get_json(keys.verdict(aid))
    assert len(stored["frames"]) == verdict.video.frames
    assert store.get_json(keys.status(aid, "judge"))["state"] == "done"


def test_judge_waits_for_the_missing_clips():
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store)
    tracking = store.get_json(keys.tracking(aid))
    store.put_json(keys.tracking(aid), {**tracking, "clip_count": 2})   # one of two clips posed so far
    ctx = handler_context("judge", store)
    JudgeStage(ctx.settings, store).handle(message, ctx)
    assert ctx.emitted(ctx.settings.topics.verdicts) == []      # only a provisional one (test_judge_partial.py)
    [(_, _, provisional)] = ctx.emitted(ctx.settings.topics.partial_verdicts)
    assert (provisional.clips_posed, provisional.clip_count) == (1, 2)
    with pytest.raises(ObjectNotFound):
        store.get_json(keys.verdict(aid))
    status = store.get_json(keys.status(aid, "judge"))
    assert (status["state"], status["clips_posed"], status["clip_count"]) == ("waiting", 1, 2)


def test_judge_fails_an_analysis_with_no_pose_in_any_frame():
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store)
    doc = store.get_json(keys.clip_poses(aid, 0))
    store.put_json(keys.clip_poses(aid, 0), {**doc, "frames": [{**f, "keypoints": None} for f in doc["frames"]]})
    ctx = handler_context("judge", store)
    with pytest.raises(AnalysisFailed, match="no body pose"):
        JudgeStage(ctx.settings, store).handle(message, ctx)
    assert ctx.emitted() == []


def test_suggest_writes_the_result_and_announces_it(judged):
    judge_store, aid, n_reps, judge_ctx = judged
    store = MemoryStore()
    store.objects.update(judge_store.objects)          # what the judge left, on its own copy
    [(_, _, verdict)] = judge_ctx.emitted()
    ctx = handler_context("suggest", store)
    SuggestStage(store).handle(verdict, ctx)
    [(topic, key, done)] = ctx.emitted()
    assert topic == ctx.settings.topics.results and key == aid
    assert isinstance(done, AnalysisCompleted) and done.status == "done"
    result = AnalysisResult.model_validate(store.get_json(done.result_key))
    assert result.id == aid and len(result.repetitions) == n_reps
    assert {f.type for f in result.faults} == {f.type for f in verdict.faults}
    assert all(f.suggestions for f in result.faults)   # each fault comes with exemplars of correct form
    assert store.get_bytes(keys.annotated_video(aid))[4:8] == b"ftyp"   # an MP4 a browser can play


def test_the_memory_store_keeps_the_object_store_interface():
    """A handler tested on MemoryStore must run on the real store: same public methods, same arguments."""
    import inspect

    from shared.store import ObjectStore

    def api(cls):
        return {n: list(inspect.signature(f).parameters) for n, f in inspect.getmembers(cls, inspect.isfunction)
                if not n.startswith("_")}

    assert api(MemoryStore) == api(ObjectStore)


def test_the_handler_context_acknowledges_or_refuses_sends_as_the_broker_would(judged):
    """The worker loop commits only after ctx.flush(): it must pass when the broker acknowledged
    everything, and raise the broker's error when it did not."""
    from kafka.errors import KafkaConnectionError

    from shared.testing import RecordingProducer

    _, _, _, ctx = judged
    ctx.flush()
    [(_, _, verdict)] = ctx.emitted()
    down = handler_context("judge")
    down.producer = RecordingProducer(fail_with=KafkaConnectionError("broker away"))
    down.emit(down.settings.topics.verdicts, verdict, key=verdict.analysis_id)
    with pytest.raises(KafkaConnectionError):
        down.flush()
    assert down.emitted() == []
