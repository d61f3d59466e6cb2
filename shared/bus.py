"""Kafka helpers on kafka-python: topics, a safe producer, consumers tuned for the group protocol."""
from __future__ import annotations

import logging
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shared.messages import Message
from shared.settings import Settings

log = logging.getLogger(__name__)


def wait_for_broker(settings: Settings, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
            admin.close()
            return
        except (KafkaError, OSError) as exc:
            last = exc
            time.sleep(0.5)
    raise TimeoutError(f"no Kafka broker at {settings.kafka_bootstrap} after {timeout_s:.0f} s: {last}")


def broker_serves_metadata(settings: Settings, timeout_ms: int = 3000) -> bool:
    """One metadata round trip for a work topic: does the broker know its partitions?"""
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=timeout_ms)
        try:
            topics = admin.describe_topics([settings.topics.analyses])
        finally:
            admin.close()
        return bool(topics) and not topics[0].get("error_code") and bool(topics[0].get("partitions"))
    except (KafkaError, OSError, ValueError):
        return False


def ensure_topics(settings: Settings) -> list[str]:
    """Create every topic the system uses (idempotent); returns the ones created now.

    Work topics get `work_partitions` partitions so several workers of a service share the
    load; the gateway-facing and integrator topics too, keyed by analysis id.
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in settings.topics.all() if t not in existing]
        created = []
        for topic in wanted:
            try:
                admin.create_topics([NewTopic(topic, num_partitions=settings.work_partitions, replication_factor=1)])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def make_producer(settings: Settings, client_id: str) -> KafkaProducer:
    # acks=all: a message counts as sent only once the broker has it durably; retries cover
    # leader changes and broker restarts.
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, client_id=client_id, acks="all",
        retries=10, retry_backoff_ms=200, linger_ms=5, max_in_flight_requests_per_connection=1,
        request_timeout_ms=15000, max_block_ms=30000,
    )


def make_consumer(settings: Settings, group_id: str | None, topics: list[str], client_id: str,
                  max_poll_records: int = 1, auto_offset_reset: str = "earliest") -> KafkaConsumer:
    return KafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap, group_id=group_id, client_id=client_id,
        enable_auto_commit=False, auto_offset_reset=auto_offset_reset,
        max_poll_records=max_poll_records,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )


def new_trace_id() -> str:
    return uuid.uuid4().hex[:16]


def send(producer: KafkaProducer, topic: str, message: Message, key: str | None, trace_id: str | None = None):
    headers = [("schema", message.model_dump(by_alias=True)["schema"].encode())]
    if trace_id:
        headers.append(("trace_id", trace_id.encode()))
    return producer.send(topic, value=message.to_bytes(), key=key.encode() if key else None, headers=headers)
