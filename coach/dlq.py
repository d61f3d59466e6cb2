"""`coach dlq`: inspect dead letters and replay them to the topic they came from.

Reading never commits: `list` and `show` use a throwaway consumer group and read the topic
from the beginning. `replay` re-produces the original bytes (key and headers kept, plus a
`replayed_from` header) to the source topic; a replayed message that fails again is
dead-lettered again, so nothing is lost either way.
"""
from __future__ import annotations

import base64
import json
import sys
import time
import uuid

from shared import bus
from shared.messages import DeadLetter
from shared.settings import Settings


def read_dead_letters(settings: Settings, idle_s: float = 3.0, limit: int = 10_000) -> list[tuple[str, DeadLetter]]:
    """Every dead letter, oldest first per partition, as (position "partition:offset", letter).

    Reads until nothing new arrives for `idle_s` (end offsets are not trusted: see INFRA notes)."""
    consumer = bus.make_consumer(settings, f"dlq-reader-{uuid.uuid4().hex[:8]}", [settings.topics.dead_letters],
                                 "dlq-reader", max_poll_records=500)
    out: list[tuple[str, DeadLetter]] = []
    last_new = time.monotonic()
    give_up = last_new + 60
    try:
        while len(out) < limit and time.monotonic() < give_up:
            batch = consumer.poll(timeout_ms=500)
            if not consumer.assignment():
                last_new = time.monotonic()   # joining the group (can take seconds): not idle yet
                continue
            if not batch and time.monotonic() - last_new > idle_s:
                break
            for recs in batch.values():
                for r in recs:
                    try:
                        out.append((f"{r.partition}:{r.offset}", DeadLetter.from_bytes(r.value)))
                    except ValueError:
                        continue  # not a dead letter (someone wrote junk here): skip it
                    last_new = time.monotonic()
    finally:
        consumer.close()
    return out


def replay(settings: Settings, letters: list[tuple[str, DeadLetter]]) -> int:
    producer = bus.make_producer(settings, "dlq-replay")
    try:
        for pos, dl in letters:
            value = base64.b64decode(dl.value) if dl.value_encoding == "base64" else dl.value.encode()
            headers = [(k, v.encode()) for k, v in dl.headers.items() if k != "replayed_from"]
            headers.append(("replayed_from", f"{settings.topics.dead_letters}:{pos}".encode()))
            producer.send(dl.source_topic, value=value, key=dl.key.encode() if dl.key else None, headers=headers)
        producer.flush(30)
    finally:
        producer.close(timeout=10)
    return len(letters)


def _select(letters, ids: list[str] | None, service: str | None):
    if ids:
        letters = [(p, d) for p, d in letters if p in ids]
    if service:
        letters = [(p, d) for p, d in letters if d.service == service]
    return letters


def cmd_dlq(args) -> int:
    settings = Settings.from_env()
    letters = _select(read_dead_letters(settings), args.ids, args.service)
    if args.action == "list":
        if args.json:
            print(json.dumps([{"id": p, **d.model_dump(by_alias=True, exclude={"value"})} for p, d in letters], indent=1))
        else:
            for p, d in letters:
                print(f"{p:<10} {d.failed_at}  {d.service:<8} {d.source_topic}#{d.offset}  key={d.key}  {d.error[:120]}")
            print(f"{len(letters)} dead letter(s)", file=sys.stderr)
        return 0
    if args.action == "show":
        for p, d in letters:
            print(json.dumps({"id": p, **d.model_dump(by_alias=True)}, indent=1))
        return 0 if letters else 1
    if not args.ids and not args.all:
        print("coach dlq replay: name the letters to replay (IDS from `coach dlq list`) or pass --all", file=sys.stderr)
        return 2
    print(f"replayed {replay(settings, letters)} message(s)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("dlq", help="inspect and replay dead-lettered messages")
    p.add_argument("action", choices=["list", "show", "replay"])
    p.add_argument("ids", nargs="*", help="partition:offset ids from `coach dlq list`")
    p.add_argument("--service", help="only letters from this service")
    p.add_argument("--all", action="store_true", help="replay every (selected) letter")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_dlq)
