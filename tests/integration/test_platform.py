"""The platform on the real broker and object store: the at-least-once loop, dead letters, restarts."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from shared import bus
from shared.messages import AnalysisCompleted, DeadLetter
from shared.store import ObjectStore
from shared.worker import Context, Worker, WorkerSpec

pytestmark = pytest.mark.integration


def _echo_spec(settings, seen: list):
    """A tiny service: reads AnalysisCompleted from its own input topic (the test's `poses` topic,
    since the real failure notices go to `results`), writes an object and emits to `verdicts`."""

    def handle(msg: AnalysisCompleted, ctx: Context) -> None:
        seen.append(msg.analysis_id)
        if msg.error == "explode":
            raise RuntimeError("this message always fails")
        if msg.error == "needs-fix" and not ctx.store.exists(f"test/fixed/{msg.analysis_id}"):
            raise RuntimeError("fails until an operator fixes its cause")
        ctx.store.put_json(f"test/{msg.analysis_id}/out.json", {"echo": msg.analysis_id})
        ctx.emit(settings.topics.verdicts, msg, msg.analysis_id)

    return WorkerSpec("echo", settings.topics.poses, AnalysisCompleted, handle)


@pytest.fixture
def echo_worker(isolated_settings):
    seen: list[str] = []
    stop = threading.Event()
    worker = Worker(_echo_spec(isolated_settings, seen), isolated_settings.with_(max_attempts=2), stop)
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    yield isolated_settings, seen
    stop.set()
    t.join(timeout=20)
    assert not t.is_alive(), "worker did not stop on request"


def test_loop_consumes_stores_and_produces_once_per_input(echo_worker, read_topic):
    s, seen = echo_worker
    producer = bus.make_producer(s, "test")
    aid = uuid.uuid4().hex
    msg = AnalysisCompleted(analysis_id=aid, status="done")
    # the same input delivered twice (a producer retry, a redelivery after a crash)
    bus.send(producer, s.topics.poses, msg, aid).get(10)
    bus.send(producer, s.topics.poses, msg, aid).get(10)
    out = read_topic(s, s.topics.verdicts, AnalysisCompleted, 2)
    assert [m.analysis_id for m in out] == [aid, aid]
    store = ObjectStore(s)
    assert store.list(f"test/{aid}/") == [f"test/{aid}/out.json"], "a duplicate must overwrite, not add"
    assert store.get_json(f"test/{aid}/out.json") == {"echo": aid}


def test_poison_messages_are_dead_lettered_and_the_loop_goes_on(echo_worker, read_topic):
    s, seen = echo_worker
    producer = bus.make_producer(s, "test")
    good = uuid.uuid4().hex
    producer.send(s.topics.poses, b"{not json at all", key=b"junk").get(10)                     # unparseable
    bad = AnalysisCompleted(analysis_id=uuid.uuid4().hex, status="failed", error="explode")        # always fails
    bus.send(producer, s.topics.poses, bad, bad.analysis_id).get(10)
    bus.send(producer, s.topics.poses, AnalysisCompleted(analysis_id=good, status="done"), good).get(10)

    letters = read_topic(s, s.topics.dead_letters, DeadLetter, 2)
    assert len(letters) == 2
    by_key = {d.key: d for d in letters}
    assert by_key["junk"].value == "{not json at all" and "malformed" in by_key["junk"].error
    failing = by_key[bad.analysis_id]
    assert "this message always fails" in failing.error and failing.attempts == 2
    assert failing.source_topic == s.topics.poses
    # ...and the message after the poison ones was still processed
    out = read_topic(s, s.topics.verdicts, AnalysisCompleted, 1)
    assert [m.analysis_id for m in out] == [good]
    # the failing analysis is marked failed for the gateway, with the reason
    status = ObjectStore(s).get_json(f"analyses/{bad.analysis_id}/status/echo.json")
    assert status["state"] == "failed" and "always fails" in status["error"]


def test_stack_restart_loses_nothing(tmp_path, read_topic):
    """Produce, stop the whole embedded stack, start it on the same data dir, consume everything."""
    from coach.stack import EmbeddedStack, StackPorts

    stack = EmbeddedStack(tmp_path / "data", StackPorts.free(), workers={}, with_gateway=False)
    stack.start()
    s = stack.settings
    ids = [uuid.uuid4().hex for _ in range(20)]
    try:
        producer = bus.make_producer(s, "test")
        for aid in ids:
            bus.send(producer, s.topics.results, AnalysisCompleted(analysis_id=aid, status="done"), aid)
        producer.flush(10)
        producer.close()
        ObjectStore(s).put_json("test/kept.json", {"n": len(ids)})
    finally:
        stack.stop()

    again = EmbeddedStack(tmp_path / "data", stack.ports, workers={}, with_gateway=False)
    again.start()
    try:
        got = read_topic(again.settings, s.topics.results, AnalysisCompleted, len(ids))
        assert sorted(m.analysis_id for m in got) == sorted(ids)
        assert ObjectStore(again.settings).get_json("test/kept.json") == {"n": 20}
    finally:
        again.stop()


def test_second_stack_on_taken_ports_refuses_and_names_them(infra, tmp_path):
    from coach.stack import EmbeddedStack, PortInUse

    other = EmbeddedStack(tmp_path / "other", infra.ports, workers={}, with_gateway=False)
    with pytest.raises(PortInUse) as err:
        other.start()
    assert str(infra.ports.broker) in str(err.value) and "Kafka broker" in str(err.value)
    other.stop()


def test_dead_letters_can_be_listed_and_replayed_after_a_fix(echo_worker, read_topic):
    from coach.dlq import read_dead_letters, replay

    s, _ = echo_worker
    producer = bus.make_producer(s, "test")
    aid = uuid.uuid4().hex
    bus.send(producer, s.topics.poses, AnalysisCompleted(analysis_id=aid, status="done", error="needs-fix"), aid).get(10)
    letters = read_topic(s, s.topics.dead_letters, DeadLetter, 1)
    assert letters[0].key == aid

    listed = [(pos, d) for pos, d in read_dead_letters(s) if d.key == aid]
    assert len(listed) == 1 and ":" in listed[0][0]
    ObjectStore(s).put_json(f"test/fixed/{aid}", {"by": "operator"})
    assert replay(s, listed) == 1
    out = read_topic(s, s.topics.verdicts, AnalysisCompleted, 1)
    assert [m.analysis_id for m in out] == [aid], "the replayed message was processed"
    assert ObjectStore(s).get_json(f"test/{aid}/out.json") == {"echo": aid}


def test_presigned_urls_are_signed_for_the_public_address_and_expire(infra):
    """Clients may reach the store at another address than the workers (COACH_S3_PUBLIC_URL): the
    URL names that address, works there, and stops working once it has expired."""
    import httpx

    s = infra.settings
    store = ObjectStore(s)
    store.ensure_bucket()
    key = f"test/presign/{uuid.uuid4().hex}.bin"
    store.put_bytes(key, b"clip bytes")
    host, port = s.s3_endpoint.split(":")
    assert host == "127.0.0.1"
    public = ObjectStore(s.with_(s3_public_url=f"http://localhost:{port}"))   # the same store, by another name
    url = public.presigned_url(key)
    assert url.startswith(f"http://localhost:{port}/"), url
    assert httpx.get(url).content == b"clip bytes"
    stale = public.presigned_url(key, expiry_s=1)
    time.sleep(2.5)
    assert httpx.get(stale).status_code == 403, "an expired URL must be refused"
    with pytest.raises(ValueError, match="COACH_S3_PUBLIC_URL"):
        ObjectStore(s.with_(s3_public_url="media.example.com/videos"))
