"""The final verdict is published once per posed sequence: when the last clips are stored before the
judge handles their messages, every one of those messages finds the analysis complete."""
from __future__ import annotations

from synthetic_squat import store_synthetic_squat

from services.judge.worker import JudgeStage
from shared.store import keys
from shared.testing import MemoryStore, handler_context


def _judge(store, message):
    ctx = handler_context("judge", store)
    JudgeStage(ctx.settings, store).handle(message, ctx)
    return ctx.emitted(ctx.settings.topics.verdicts)


def test_a_second_message_finding_the_same_complete_analysis_publishes_nothing():
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store, faults={"shallow_depth": 65.0}, camera_yaw_deg=60.0)
    [(_, _, first)] = _judge(store, message)
    verdict_doc = store.get_json(keys.verdict(aid))
    # the other last clip's message (or a redelivery of this one) after the verdict was acknowledged
    assert _judge(store, message) == []
    assert store.get_json(keys.verdict(aid)) == verdict_doc
    status = store.get_json(keys.status(aid, "judge"))
    assert status["state"] == "done" and status["poses_sha1"]
    assert first.faults   # the one verdict published is the real one, with its faults


def test_the_verdict_is_published_again_when_it_may_not_have_been():
    """A worker that died after storing verdict.json but before its 'done' status (so possibly before
    the broker had the verdict) leaves a status that does not match: the redelivery publishes."""
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store)
    [(_, _, first)] = _judge(store, message)
    status = store.get_json(keys.status(aid, "judge"))
    store.put_json(keys.status(aid, "judge"), {**status, "state": "waiting", "poses_sha1": None})
    [(_, _, again)] = _judge(store, message)
    def content(v):
        return v.model_dump(exclude={"produced_at"})
    assert content(again) == content(first)


def test_a_clip_posed_again_is_judged_again():
    """A re-driven analysis poses its clips again (another pose run): its verdict is published anew."""
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store)
    assert len(_judge(store, message)) == 1
    doc = store.get_json(keys.clip_poses(aid, 0))
    store.put_json(keys.clip_poses(aid, 0), {**doc, "seconds": doc["seconds"] + 0.5})
    assert len(_judge(store, message)) == 1
