"""A broker restart is an outage to wait out, never a reason to dead-letter a message or exit.

The send futures of kafka-python fail with retriable errors (connection lost, no leader) while the
broker restarts; the worker used to count those as processing failures, dead-letter the message
after three quick attempts, and die when even the dead letter could not be sent (CI saw the
judge exit during the broker-restart fault test).
"""
from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest
from kafka.errors import CommitFailedError, KafkaConnectionError, NotLeaderForPartitionError

from shared.messages import ClipPoses
from shared.settings import Settings
from shared.testing import RecordingProducer
from shared.worker import Worker, WorkerSpec, is_transient


def _flaky(failures: int) -> RecordingProducer:
    """Fails the first `failures` sends the way a restarting broker does, then acknowledges."""
    return RecordingProducer(fail_with=KafkaConnectionError("socket disconnected"), failures=failures)


class NullStore:
    def put_json(self, key, doc):
        pass


def _worker(handle, producer) -> Worker:
    """A Worker without a broker connection: only the processing path under test is used."""
    w = Worker.__new__(Worker)
    w.spec = WorkerSpec("judge", "poses", ClipPoses, handle)
    w.settings = Settings().with_(max_attempts=3)
    w.stop = threading.Event()
    w.log = logging.getLogger("test-worker")
    w.store = NullStore()
    w.producer = producer
    w.exit_code = None
    w.last_poll = 0.0
    from concurrent.futures import ThreadPoolExecutor
    w._pool = ThreadPoolExecutor(max_workers=1)
    w.consumer = SimpleNamespace(assignment=lambda: set(), pause=lambda *a: None, resume=lambda *a: None,
                                 paused=lambda: set(), poll=lambda timeout_ms=0: {})
    return w


def _record():
    return SimpleNamespace(topic="poses", partition=0, offset=7, key=b"a1", value=b"{}", headers=[])


def test_retriable_kafka_errors_count_as_outages_and_others_do_not():
    assert is_transient(KafkaConnectionError("x")) and is_transient(NotLeaderForPartitionError("x"))
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    assert not is_transient(CommitFailedError("x")) and not is_transient(ValueError("x"))


def test_a_send_failing_while_the_broker_restarts_is_retried_not_dead_lettered(monkeypatch):
    producer = _flaky(4)   # more failures than max_attempts
    calls = []

    def handle(msg, ctx):
        calls.append(1)
        ctx.emit("verdicts", _StubMessage(), key="a1")

    w = _worker(handle, producer)
    monkeypatch.setattr(Worker, "_wait_or_exit", lambda self, s, cause: None)   # no real backoff sleeps
    outcome = w._process_with_retries(_StubMessage(), _record(), {})
    assert outcome == "ok"
    assert len(calls) == 5, "each outage retry runs the handler again, without using up attempts"
    assert [t for t, _, _ in producer.sent] == ["verdicts"], "nothing was dead-lettered"


def test_a_dead_letter_waits_for_the_broker_instead_of_crashing_the_worker(monkeypatch):
    producer = _flaky(3)

    def handle(msg, ctx):
        raise ValueError("a real bug")   # not an outage: dead-lettered after max_attempts

    w = _worker(handle, producer)
    monkeypatch.setattr(Worker, "_wait_or_exit", lambda self, s, cause: None)
    monkeypatch.setattr("time.sleep", lambda s: None)
    outcome = w._process_with_retries(_StubMessage(), _record(), {})
    assert outcome == "dead_lettered"
    assert producer.sent[0][0] == w.settings.topics.dead_letters


def test_a_loop_that_only_looks_on_skips_a_bad_message_instead_of_dead_lettering_it(monkeypatch):
    """suggest's pre-render loops read `poses` / `partial-verdicts`, owned by judge / integrators: a bad
    message there is the owner's to dead-letter (a second dead letter would be replayed to the owner
    twice), and a failing pre-render never fails the analysis."""
    producer = RecordingProducer()
    failed = []

    def handle(msg, ctx):
        raise ValueError("a real bug")

    w = _worker(handle, producer)
    w.spec = WorkerSpec("suggest", "poses", ClipPoses, handle, dead_letter=False,
                        fail=lambda msg, ctx, reason: failed.append(reason))
    monkeypatch.setattr("time.sleep", lambda s: None)
    w._handle_record(SimpleNamespace(topic="poses", partition=0), SimpleNamespace(**{**vars(_record()), "value": b"junk"}))
    assert w._process_with_retries(_StubMessage(), _record(), {}) == "dead_lettered"   # attempts used up
    assert producer.sent == [] and len(failed) == 1


def test_a_stop_during_an_outage_leaves_the_message_uncommitted():
    producer = _flaky(100)
    w = _worker(lambda msg, ctx: ctx.emit("verdicts", _StubMessage(), key="a1"), producer)
    w.stop.set()
    with pytest.raises(SystemExit):
        w._process_with_retries(_StubMessage(), _record(), {})


class _StubMessage:
    """Just enough of a Message for bus.send and the failure path."""
    analysis_id = None

    def model_dump(self, by_alias=True):
        return {"schema": "test/1"}

    def to_bytes(self) -> bytes:
        return b"{}"


class _Consumer:
    """The slice of KafkaConsumer the rejoin rule uses."""

    def __init__(self, assigned=(), partitions=(0, 1)):
        self.assigned, self.partitions, self.rejoins = set(assigned), set(partitions), 0

    def assignment(self):
        return self.assigned

    def partitions_for_topic(self, topic):
        return self.partitions

    def unsubscribe(self):
        self.rejoins += 1

    def subscribe(self, topics):
        pass


def _starved_worker(consumer) -> Worker:
    w = _worker(lambda msg, ctx: None, RecordingProducer())
    w.settings = Settings().with_(rejoin_empty_s=30.0)
    w.consumer, w._empty_since, w._next_rejoin = consumer, None, 0.0
    return w


def test_a_worker_left_without_partitions_after_a_broker_hiccup_rejoins_its_group():
    """The object-store outage test saw the judge poll an empty assignment for 10 minutes (its group
    leader had assigned while the broker had no metadata for `poses`): the analysis stalled."""
    c = _Consumer()
    w = _starved_worker(c)
    assert not w._rejoin_if_starved(now=0.0) and not w._rejoin_if_starved(now=29.0)
    assert w._rejoin_if_starved(now=31.0) and c.rejoins == 1
    # still nothing (more members than partitions is legitimate): the next try waits 10x as long
    assert not w._rejoin_if_starved(now=100.0) and w._rejoin_if_starved(now=400.0) and c.rejoins == 2


def test_a_worker_with_partitions_or_a_topic_without_any_never_rejoins():
    busy = _Consumer(assigned={("poses", 0)})
    w = _starved_worker(busy)
    assert not any(w._rejoin_if_starved(now=t) for t in (0.0, 100.0, 1000.0)) and busy.rejoins == 0
    bare = _Consumer(partitions=())
    w = _starved_worker(bare)
    assert not any(w._rejoin_if_starved(now=t) for t in (0.0, 100.0, 1000.0)) and bare.rejoins == 0


def test_an_unknown_error_answered_to_a_poll_is_waited_out():
    from kafka.errors import UnknownError

    assert Worker._broker_side(UnknownError()) and not Worker._broker_side(CommitFailedError())
