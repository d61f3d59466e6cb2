"""The loop every worker service runs: consume -> process -> produce, at least once.

A message's offset is committed only after the handler returned and everything it emitted was
acknowledged by the broker (acks=all) and its objects were stored. A crash anywhere before the
commit means the message is delivered again; handlers are idempotent (deterministic object
keys), so a second delivery overwrites instead of duplicating.

A message that cannot be parsed, or whose processing keeps failing, goes to the dead-letter
topic with the error, and the loop goes on. An `AnalysisFailed` raised by a handler is not a
poison message: the analysis is marked failed with its reason and the message is done.
Transient infrastructure errors (object store or broker unreachable) are retried with backoff
for as long as they last, never dead-lettered.

A handler that makes no progress for `handler_deadline_s` (the clock restarts whenever it reports
progress with `ctx.status` or emits a message) is taken to hang: its message is dead-lettered
(acknowledged by the broker) with "handler exceeded deadline of N s", the analysis is marked
failed in the stage it was stuck in, the offset is committed, and the loop stops with
`exit_code` set. `run_service` then ends the process with that code (`os._exit`: a Python
thread cannot be killed, and a normal exit would wait for the stuck one forever), so the
supervisor or Kubernetes starts a fresh process. `coach dlq replay` re-drives the message once
its cause is fixed.
"""
from __future__ import annotations

import base64
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import ValidationError

from shared import bus
from shared.documents import StageStatus
from shared.messages import AnalysisCompleted, DeadLetter, Message, utc_now
from shared.observability import (
    ANALYSES_COMPLETED, CONSUMER_LAG, DEAD_LETTERS, ERRORS, IN_FLIGHT, MESSAGES, PROCESSING_SECONDS,
    analysis_id_var, log_fields, serve_health, setup_logging, trace_id_var,
)
from shared.settings import Settings
from shared.store import ObjectStore, StoreUnavailable, keys

TRANSIENT = (StoreUnavailable, KafkaTimeoutError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """An infrastructure outage rather than a fault of the message: the store or broker is away.

    kafka-python marks what a restarted broker causes (connection lost, no leader, request timed
    out, unknown partition while metadata refreshes) as `retriable`; a send future fails with
    those, not with the KafkaTimeoutError that `send` itself raises.
    """
    return isinstance(exc, TRANSIENT) or (isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False)))
EXIT_HANDLER_STUCK = 70   # EX_SOFTWARE: the process exits with this after a handler missed its deadline


class AnalysisFailed(Exception):
    """The analysis cannot go on (not a video, nobody in it...): fail it with this reason."""


class HandlerDeadlineExceeded(Exception):
    """The handler made no progress for the deadline; it is abandoned (its thread cannot be killed)."""


@dataclass
class Context:
    """What a handler may use: settings, the store, and a way to emit messages."""

    service: str
    settings: Settings
    store: ObjectStore
    producer: object
    log: logging.Logger
    trace_id: Optional[str] = None
    _sent: list = field(default_factory=list)
    progress_at: float = field(default_factory=time.monotonic)   # last sign of life (deadline clock)
    abandoned: bool = False   # set when the handler missed its deadline: it may write nothing more

    def _alive(self) -> None:
        if self.abandoned:
            raise HandlerDeadlineExceeded("this handler was abandoned after its deadline; its outputs are refused")
        self.progress_at = time.monotonic()

    def emit(self, topic: str, message: Message, key: str | None) -> None:
        self._alive()
        self._sent.append(bus.send(self.producer, topic, message, key, self.trace_id))

    def put_json(self, key: str, doc) -> None:
        """Store a document as this handler's output; counts as progress, refused once abandoned."""
        self._alive()
        self.store.put_json(key, doc)

    def status(self, analysis_id: str, state: str, fraction: float, **extra) -> None:
        """Record this stage's progress for the gateway (one object per stage, overwritten)."""
        self._alive()
        self.store.put_json(keys.status(analysis_id, self.service), StageStatus(
            stage=self.service, state=state, fraction=round(float(fraction), 4), updated_at=utc_now(), **extra))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every emitted message is acknowledged; raise if one failed."""
        self.producer.flush(timeout=timeout_s)
        sent, self._sent = self._sent, []
        for fut in sent:
            fut.get(timeout=timeout_s)


Handler = Callable[[Message, Context], None]


@dataclass
class WorkerSpec:
    service: str
    topic: str                        # the topic consumed
    model: type[Message]              # the one model of that topic
    handle: Handler
    health: Callable[[], dict] = field(default_factory=lambda: dict)
    deadline_s: Optional[float] = None  # no-progress deadline; None: settings.handler_deadline_s
    group: Optional[str] = None         # consumer group; None: coach-<service> (a second loop of a service needs its own)
    # How a message that cannot be processed (AnalysisFailed, attempts used up, deadline missed)
    # reaches the user: fail(msg, ctx, reason). None: the message's analysis is marked failed.
    fail: Optional[Callable[[Message, Context, str], None]] = None
    # False for a loop that only looks on at a topic another service owns (suggest's pre-render on
    # `poses` and `partial-verdicts`): a message it cannot use is logged and skipped, not dead-lettered
    # (the owner dead-letters a bad one; a replayed dead letter would reach the owner a second time)
    dead_letter: bool = True


class Worker:
    def __init__(self, spec: WorkerSpec, settings: Settings, stop: threading.Event | None = None):
        self.spec = spec
        self.settings = settings
        self.stop = stop or threading.Event()
        self.log = logging.getLogger(spec.service)
        self.store = ObjectStore(settings)
        self.producer = bus.make_producer(settings, client_id=spec.service)
        self.consumer = None
        self.last_poll = time.monotonic()
        self.processed = 0
        self.exit_code: int | None = None   # set when the loop stopped because a handler hung
        self._lag_reported: set[tuple[str, int]] = set()   # (topic, partition) with a lag series
        self._empty_since: float | None = None   # since when the consumer holds no partition
        self._next_rejoin = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{spec.service}-work")

    # -- health -------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        # Healthy while the loop polls; a loop stuck for a minute is reported unhealthy so an
        # orchestrator restarts it.
        stalled = time.monotonic() - self.last_poll > 60
        return (not stalled, {"service": self.spec.service, "processed": self.processed, **self.spec.health()})

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> None:
        topic, service = self.spec.topic, self.spec.service
        group = self.spec.group or f"coach-{service}"
        self.consumer = bus.make_consumer(self.settings, group, [topic], client_id=service)
        self.log.info("consuming", extra=log_fields(topic=topic, group=group))
        try:
            while not self.stop.is_set():
                self.last_poll = time.monotonic()
                try:
                    batch = self.consumer.poll(timeout_ms=500)
                    self._forget_moved_partitions()
                    self._rejoin_if_starved()
                except KafkaError as exc:
                    if not is_transient(exc) and not self._broker_side(exc):
                        raise
                    # The broker is restarting: the consumer reconnects by itself; nothing was taken.
                    ERRORS.labels(service, "transient").inc()
                    self.log.warning("poll failed; broker unavailable, retrying", extra=log_fields(error=_short(exc)))
                    self.stop.wait(1.0)
                    continue
                for tp, records in batch.items():
                    for i, rec in enumerate(records):
                        if self.stop.is_set():
                            # Not processed: rewind so this worker (or another) gets it again.
                            self.consumer.seek(tp, rec.offset)
                            break
                        self._handle_record(tp, rec)
                        self._commit(tp, rec.offset + 1)
                        self._record_lag(tp, rec.offset + 1)
                        if self.exit_code is not None:
                            # A handler hung: its thread is lost. Stop here (later records stay
                            # uncommitted and are redelivered) so a fresh process takes over.
                            return
        finally:
            self.consumer.close()
            self.producer.close(timeout=10)
            self._pool.shutdown(wait=False)
            self.log.info("stopped")

    @staticmethod
    def _broker_side(exc: KafkaError) -> bool:
        """An error the broker answered a poll with (e.g. UnknownError while the embedded broker's own
        store is away): wait and poll again like a lost connection, instead of exiting the worker."""
        return type(exc).__name__ in ("UnknownError", "KafkaUnavailableError", "CoordinatorNotAvailableError",
                                      "NodeNotReadyError", "GroupCoordinatorNotAvailableError")

    def _rejoin_if_starved(self, now: float | None = None) -> bool:
        """kafka-python can come out of a broker hiccup with no partition: the group leader assigned
        while it had no metadata for the topic ("No partition metadata for topic ...") and it never
        rejoins, so the worker would poll an empty assignment forever while its topic fills up. After
        `rejoin_empty_s` without a partition, while the topic has partitions, leave and rejoin the group.
        An empty assignment is also legitimate (more members than partitions): then the rejoin gives
        nothing and the next one waits ten times as long. Returns True when it rejoined."""
        now = time.monotonic() if now is None else now
        if self.consumer.assignment():
            self._empty_since = None
            return False
        if self._empty_since is None:
            self._empty_since = now
            return False
        limit = self.settings.rejoin_empty_s
        if limit <= 0 or now - self._empty_since < limit or now < self._next_rejoin:
            return False
        if not self.consumer.partitions_for_topic(self.spec.topic):
            return False   # nothing to be assigned (yet)
        self.log.warning("no partition assigned for a while; rejoining the consumer group",
                         extra=log_fields(topic=self.spec.topic, empty_s=round(now - self._empty_since, 1)))
        ERRORS.labels(self.spec.service, "rejoin_empty_assignment").inc()
        self.consumer.unsubscribe()
        self.consumer.subscribe([self.spec.topic])
        self._empty_since, self._next_rejoin = now, now + 10 * limit
        return True

    def _record_lag(self, tp: TopicPartition, position: int) -> None:
        high = self.consumer.highwater(tp)
        if high is not None:
            CONSUMER_LAG.labels(self.spec.service, tp.topic, str(tp.partition)).set(max(0, high - position))
            self._lag_reported.add((tp.topic, tp.partition))

    def _forget_moved_partitions(self) -> None:
        """A partition a rebalance gave to another member is its to report: drop our stale series."""
        if not self._lag_reported:
            return
        owned = {(t.topic, t.partition) for t in self.consumer.assignment()}
        for topic, partition in self._lag_reported - owned:
            CONSUMER_LAG.remove(self.spec.service, topic, str(partition))
        self._lag_reported &= owned

    def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            self.consumer.commit({tp: OffsetAndMetadata(offset, None, -1)})
        except (CommitFailedError, KafkaError) as exc:
            # The partition moved to another member during processing (rebalance), or the broker
            # is restarting: the message will be delivered again, which our idempotent handlers
            # tolerate. Never let a failed commit take the worker down.
            ERRORS.labels(self.spec.service, "commit_failed").inc()
            self.log.warning("commit failed; the message will be redelivered", extra=log_fields(
                topic=tp.topic, partition=tp.partition, offset=offset - 1, error=type(exc).__name__))

    @property
    def deadline_s(self) -> float:
        return self.spec.deadline_s if self.spec.deadline_s is not None else self.settings.handler_deadline_s

    def _poll_while(self, fut, ctx: Context | None = None) -> None:
        """Keep group membership while work runs: poll with every partition paused.

        kafka-python leaves the group when poll() is not called within max_poll_interval_ms,
        which must stay short with Tansu (it is also the join wait). Records returned by a
        rebalance into new, unpaused partitions are rewound so none is skipped. Raises
        HandlerDeadlineExceeded when the handler shows no progress for the deadline (partitions
        stay paused: the loop stops after that message).
        """
        deadline = self.deadline_s
        while not fut.done():
            if ctx is not None and deadline > 0 and time.monotonic() - ctx.progress_at > deadline:
                raise HandlerDeadlineExceeded(f"{self.spec.service} handler exceeded deadline of {deadline:g} s "
                                              "(no progress reported for that long)")
            self.last_poll = time.monotonic()
            try:
                self.consumer.pause(*self.consumer.assignment())
                got = self.consumer.poll(timeout_ms=200)
            except KafkaError as exc:
                if not is_transient(exc):
                    raise
                time.sleep(0.2)   # broker restarting: the handler runs on; membership is rejoined later
                continue
            for tp, records in got.items():
                self.consumer.seek(tp, records[0].offset)
        self.consumer.resume(*self.consumer.paused())

    def _handle_record(self, tp: TopicPartition, rec) -> None:
        service, topic = self.spec.service, tp.topic
        headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for k, v in (rec.headers or [])}
        trace_token = trace_id_var.set(headers.get("trace_id"))
        try:
            try:
                msg = self.spec.model.from_bytes(rec.value)
            except (ValidationError, ValueError, TypeError) as exc:
                ERRORS.labels(service, "malformed").inc()
                self._dead_letter(rec, headers, f"malformed {self.spec.model.__name__}: {_short(exc)}", 0)
                MESSAGES.labels(service, topic, "dead_lettered").inc()
                return
            aid = getattr(msg, "analysis_id", None)
            aid_token = analysis_id_var.set(aid)
            try:
                outcome = self._process_with_retries(msg, rec, headers)
            finally:
                analysis_id_var.reset(aid_token)
            MESSAGES.labels(service, topic, outcome).inc()
            self.processed += 1
        finally:
            trace_id_var.reset(trace_token)

    def _process_with_retries(self, msg: Message, rec, headers: dict) -> str:
        service = self.spec.service
        attempt, backoff = 0, 0.5
        while True:
            attempt += 1
            ctx = Context(service, self.settings, self.store, self.producer, self.log, headers.get("trace_id"))
            IN_FLIGHT.labels(service).inc()
            started = time.perf_counter()
            try:
                fut = self._pool.submit(self._run_handler, msg, ctx)
                self._poll_while(fut, ctx)
                fut.result()
                return "ok"
            except HandlerDeadlineExceeded as exc:
                ctx.abandoned = True   # a late status or message from the stuck thread is refused
                return self._abandon(msg, rec, headers, str(exc), attempt)
            except AnalysisFailed as exc:
                ERRORS.labels(service, "analysis_failed").inc()
                self._fail_analysis(msg, ctx, str(exc))
                return "analysis_failed"
            except Exception as exc:  # noqa: BLE001 — outages are waited out; other failures retried, then dead-lettered
                if is_transient(exc):
                    ERRORS.labels(service, "transient").inc()
                    self.log.warning("transient error, retrying", extra=log_fields(error=_short(exc), backoff_s=backoff))
                    attempt -= 1  # infrastructure outages do not use up the message's attempts
                    self._wait_or_exit(backoff, exc)
                    backoff = min(backoff * 2, 15.0)
                    continue
                ERRORS.labels(service, "processing").inc()
                self.log.exception("processing failed", extra=log_fields(attempt=attempt))
                if attempt >= self.settings.max_attempts:
                    reason = f"{service} failed after {attempt} attempts: {_short(exc)}"
                    self._dead_letter(rec, headers, reason, attempt)
                    self._fail_analysis(msg, ctx, reason)
                    return "dead_lettered"
                time.sleep(0.2 * attempt)
            finally:
                IN_FLIGHT.labels(service).dec()
                PROCESSING_SECONDS.labels(service, self.spec.topic).observe(time.perf_counter() - started)

    def _wait_or_exit(self, seconds: float, cause: BaseException) -> None:
        if self.stop.wait(seconds):
            raise SystemExit("stopping during a transient outage; message stays uncommitted") from cause

    def _abandon(self, msg: Message, rec, headers: dict, reason: str, attempt: int) -> str:
        """A hung handler: dead-letter its message (acknowledged before the caller commits), fail
        the analysis with the reason, and ask the loop to stop so the process can be replaced."""
        service = self.spec.service
        ERRORS.labels(service, "deadline_exceeded").inc()
        self.log.error("handler exceeded its deadline; dead-lettering the message and exiting for a restart",
                       extra=log_fields(analysis_id=getattr(msg, "analysis_id", None), deadline_s=self.deadline_s,
                                        topic=rec.topic, partition=rec.partition, offset=rec.offset, attempt=attempt))
        # If the dead letter cannot be acknowledged this raises: nothing is committed and the
        # process dies, so the message is redelivered rather than lost.
        self._dead_letter(rec, headers, reason, attempt)
        # A fresh context: the stuck handler's one may still be written to by its thread.
        fresh = Context(service, self.settings, self.store, self.producer, self.log, headers.get("trace_id"))
        self._fail_analysis(msg, fresh, reason)
        self.exit_code = EXIT_HANDLER_STUCK
        return "deadline_exceeded"

    def _run_handler(self, msg: Message, ctx: Context) -> None:
        self.spec.handle(msg, ctx)
        ctx.flush()

    def _fail_analysis(self, msg: Message, ctx: Context, reason: str) -> None:
        aid = getattr(msg, "analysis_id", None)
        if not aid and self.spec.fail is None:
            return
        self.log.warning("analysis failed" if self.spec.fail is None else "message failed", extra=log_fields(reason=reason))
        try:
            if self.spec.fail is not None:
                self.spec.fail(msg, ctx, reason)
                return
            ctx.status(aid, "failed", 0.0, error=reason)
            ctx.emit(self.settings.topics.results, AnalysisCompleted(analysis_id=aid, status="failed", error=reason), aid)
            ctx.flush()
            ANALYSES_COMPLETED.labels(self.spec.service, "failed").inc()
        except Exception as exc:  # noqa: BLE001 — the dead letter (or the failed stage) already says it
            if not is_transient(exc):
                raise
            self.log.exception("could not record the failure")

    def _dead_letter(self, rec, headers: dict, error: str, attempts: int) -> None:
        if not self.spec.dead_letter:
            self.log.warning("message skipped (this loop only looks on: the topic's owner dead-letters)",
                             extra=log_fields(topic=rec.topic, offset=rec.offset, error=error))
            return
        try:
            value, enc = rec.value.decode("utf-8"), "utf-8"
        except (UnicodeDecodeError, AttributeError):
            value, enc = base64.b64encode(rec.value or b"").decode(), "base64"
        dl = DeadLetter(
            service=self.spec.service, source_topic=rec.topic, partition=rec.partition, offset=rec.offset,
            key=rec.key.decode(errors="replace") if rec.key else None, value=value, value_encoding=enc,
            headers=headers, error=error, attempts=attempts,
        )
        backoff = 0.5
        while True:
            try:
                bus.send(self.producer, self.settings.topics.dead_letters, dl, dl.key).get(timeout=30)
                break
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    raise
                # The broker is away: nothing is committed until the dead letter is acknowledged.
                self.log.warning("dead letter not acknowledged; broker unavailable, retrying",
                                 extra=log_fields(error=_short(exc), backoff_s=backoff))
                self._wait_or_exit(backoff, exc)
                backoff = min(backoff * 2, 15.0)
        DEAD_LETTERS.labels(self.spec.service, rec.topic).inc()
        self.log.error("dead-lettered", extra=log_fields(topic=rec.topic, offset=rec.offset, error=error))


def _short(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "…"


def run_service(spec: WorkerSpec, settings: Settings | None = None, also: tuple[WorkerSpec, ...] = ()) -> None:
    """Entry point of a worker process: logs, /metrics + /healthz, SIGTERM -> graceful stop.
    `also`: more loops of the same service on other topics (each its own thread, consumer group and
    one-message-at-a-time loop), stopped with the main one; the process is healthy while all poll."""
    settings = settings or Settings.from_env()
    setup_logging(spec.service, settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bus.wait_for_broker(settings, timeout_s=60)
    worker = Worker(spec, settings, stop)
    extra = [Worker(s, settings, stop) for s in also]

    def health() -> tuple[bool, dict]:
        ok, info = worker.health()
        for w in extra:
            ok_w, info_w = w.health()
            ok, info = ok and ok_w, {**info, f"processed_{w.spec.topic}": info_w["processed"]}
        return ok, info

    def run_extra(w: Worker) -> None:
        try:
            w.run()
        finally:
            stop.set()   # one loop gone: stop the process so the supervisor restarts all of it
            if w.exit_code is not None:
                worker.exit_code = w.exit_code

    threads = [threading.Thread(target=run_extra, args=(w,), name=f"{w.spec.service}-{w.spec.topic}", daemon=True)
               for w in extra]
    for th in threads:
        th.start()
    server = serve_health(settings.metrics_port, health if extra else worker.health, host=settings.metrics_host)
    logging.getLogger(spec.service).info(
        "started", extra=log_fields(metrics_port=server.server_port, topic=spec.topic))
    worker.run()
    stop.set()
    for th in threads:
        th.join(timeout=15)
    server.shutdown()
    if worker.exit_code is not None:
        # The hung handler's thread cannot be stopped, and interpreter shutdown would join it
        # forever: leave now (everything was acknowledged and committed) for a fresh process.
        logging.getLogger(spec.service).error("exiting so that a fresh process takes over",
                                              extra=log_fields(exit_code=worker.exit_code))
        logging.shutdown()
        os._exit(worker.exit_code)
