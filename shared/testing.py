"""Run a worker's handler without a broker or an object store (in the manner of bytewax.testing).

    store = MemoryStore()
    store.put_json(keys.tracking(aid), TrackingDocument(...))   # shared/documents.py
    ctx = handler_context("judge", store)
    stage.handle(message, ctx)
    [(topic, key, verdict)] = ctx.emitted()

`MemoryStore` has the public methods of `shared.store.ObjectStore` and the same error for a
missing key (`ObjectNotFound`); `handler_context` gives the `Context` the worker loop would, with
a producer that keeps what was sent and decodes it back into the topic's message model. Integration
tests stay on the real broker and store (tests/integration); this is for a handler's own logic.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.messages import Message, topic_models
from shared.settings import Settings
from shared.store import ObjectNotFound, encode_json, keys
from shared.worker import Context


class MemoryStore:
    """A dict of key -> bytes behind the ObjectStore interface."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}

    def ensure_bucket(self) -> None:
        pass

    def ping(self) -> bool:
        return True

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = bytes(data)
        self.content_types[key] = content_type

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFound(key) from None

    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, encode_json(obj), "application/json")   # what readers would see in production

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        self.put_bytes(key, Path(path).read_bytes(), content_type)

    def get_file(self, key: str, path: Path) -> Path:
        Path(path).write_bytes(self.get_bytes(key))
        return Path(path)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def analysis_ids(self) -> list[str]:
        return [keys.analysis_id_of(p) for p in self.iter_prefixes(keys.analyses_prefix())]

    def iter_prefixes(self, prefix: str) -> Iterator[str]:
        seen = set()
        for k in self.list(prefix):
            rest = k[len(prefix):]
            if "/" in rest:
                sub = prefix + rest.split("/", 1)[0] + "/"
                if sub not in seen:
                    seen.add(sub)
                    yield sub

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.content_types.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        names = self.list(prefix)
        for n in names:
            self.delete(n)
        return len(names)

    def presigned_url(self, key: str, expiry_s: int | None = None) -> str:
        return f"memory://{key}"


class _Ack:
    """A send's future as kafka-python gives it: get() returns, or raises why the broker refused."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class RecordingProducer:
    """Keeps every record the broker acknowledged; each send is acknowledged at once, as acks=all
    would be. With `fail_with`, the first `failures` sends (all of them when None) fail with that
    error instead, the way an unreachable or restarting broker fails them, and are not kept."""

    def __init__(self, fail_with: BaseException | None = None, failures: int | None = None) -> None:
        self.records: list[dict] = []
        self.fail_with, self.failures = fail_with, failures

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> _Ack:
        if self.fail_with is not None and (self.failures is None or self.failures > 0):
            if self.failures is not None:
                self.failures -= 1
            return _Ack(self.fail_with)
        self.records.append({"topic": topic, "value": value, "key": key, "headers": dict(headers or [])})
        return _Ack()

    @property
    def sent(self) -> list[tuple[str, bytes, bytes | None]]:
        """(topic, value, key) of each acknowledged record, in order."""
        return [(r["topic"], r["value"], r["key"]) for r in self.records]

    def flush(self, timeout: float | None = None) -> None:
        pass


class TestContext(Context):
    """A worker Context over a MemoryStore and a RecordingProducer."""

    __test__ = False   # not a pytest test class

    def emitted(self, topic: str | None = None) -> list[tuple[str, str | None, Message]]:
        """(topic, key, message) of every message the handler emitted, decoded by its topic's model."""
        models = topic_models(self.settings.topics)
        out = []
        for r in self.producer.records:
            if topic is not None and r["topic"] != topic:
                continue
            out.append((r["topic"], r["key"].decode() if r["key"] else None, models[r["topic"]].from_bytes(r["value"])))
        return out


def handler_context(service: str, store: MemoryStore | None = None, settings: Settings | None = None) -> TestContext:
    """The Context a worker's loop would hand its handler, on in-memory infrastructure."""
    return TestContext(service=service, settings=settings or Settings.from_env(), store=store or MemoryStore(),
                       producer=RecordingProducer(), log=logging.getLogger(f"coach.{service}.test"))
