"""`coach tail TOPIC`: follow a topic's messages as readable one-line summaries.

For operators and integrators debugging a deployment: each message is parsed with its typed
model (shared/messages.py) and printed as `partition:offset  summary`; `--json` prints the
validated message instead. It reads without a consumer group (nothing is committed, no group
is left behind), from the end of the topic unless `--from-beginning`.
"""
from __future__ import annotations

import json
import sys
from collections import Counter

from shared.messages import (
    AnalysisCompleted, AnalysisRequested, AnalysisVerdict, AthleteSelected, ClipPoses, DeadLetter, Message,
    ModelPublished, PartialVerdict, SessionAlignmentRequested, TrackedClip, topic_models,
)
from shared.settings import Settings


def summarize(m: Message) -> str:
    """One line a person can read: analysis id, sport, fault counts or status."""
    if isinstance(m, AnalysisVerdict):
        counts = Counter(f.type for f in m.faults)
        faults = ", ".join(f"{t}×{n}" for t, n in sorted(counts.items())) or (
            f"none — {m.finding}" if m.finding else "no faults")
        line = (f"verdict  {m.analysis_id}  {m.sport}  model={m.model_version}  "
                f"frames={m.frames_judged}  faults: {faults}")
        if m.repetitions is not None:
            line += f"  reps={sum(1 for r in m.repetitions if not r.partial)}"
        if m.score is not None:
            line += f"  score={m.score.value:.0f}"
        if m.synthetic:
            line += "  (criteria-based models)"
        if m.revision:
            line += f"  athlete=track {m.track_id} (switch {m.revision})"
        return line
    if isinstance(m, PartialVerdict):
        counts = Counter(f.type for f in m.faults)
        faults = ", ".join(f"{t}×{n}" for t, n in sorted(counts.items())) or (
            f"none — {m.finding}" if m.finding else "none so far")
        of = f"/{m.clip_count}" if m.clip_count is not None else ""
        line = (f"partial  {m.analysis_id}  {m.sport}  #{m.sequence}  clips {m.clips_posed}{of}  "
                f"0-{m.posed_until_s:.1f} s  faults to {m.safe_until_s:.1f} s: {faults}")
        if m.withheld:
            line += f"  ({m.withheld} withheld)"
        if m.repetitions is not None:
            line += f"  reps={m.repetitions}"
        return line
    if isinstance(m, AnalysisCompleted):
        tail = m.result_key if m.status == "done" else f"error: {m.error}"
        return f"result  {m.analysis_id}  {m.status}  {tail or ''}".rstrip()
    if isinstance(m, AnalysisRequested):
        v = m.video
        return f"request  {m.analysis_id}  {m.sport}  {v.width}x{v.height}@{v.fps:g}fps  {m.video_key}"
    if isinstance(m, TrackedClip):
        return (f"clip  {m.analysis_id}  {m.sport}  clip={m.clip_index}  frames {m.frames[0].index}-"
                f"{m.frames[-1].index}{'  last' if m.is_last else ''}")
    if isinstance(m, ClipPoses):
        return (f"poses  {m.analysis_id}  {m.sport}  clip={m.clip_index}  "
                f"posed {m.frames_with_pose}/{m.frame_count}  {m.pose_model}+{m.refiner}")
    if isinstance(m, DeadLetter):
        return f"dead-letter  {m.service}  from {m.source_topic} {m.partition}:{m.offset}  attempts={m.attempts}  {m.error}"
    if isinstance(m, AthleteSelected):
        return f"athlete  {m.analysis_id}  track={m.track_id}  revision={m.revision}"
    if isinstance(m, SessionAlignmentRequested):
        return f"align  session {m.session_id}  cameras={len(m.cameras)}"
    if isinstance(m, ModelPublished):
        return f"model  {m.sport}  version={m.version}"
    return m.model_dump_json(by_alias=True)


def cmd_tail(args) -> int:
    from kafka import KafkaConsumer

    settings = Settings.from_env(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    names = {f: getattr(settings.topics, f) for f in settings.topics.__dataclass_fields__}
    by_name = {n.removeprefix(settings.topic_prefix): n for n in names.values()}
    topic = by_name.get(args.topic) or names.get(args.topic.replace("-", "_"))
    if topic is None:
        print(f"coach tail: unknown topic {args.topic!r}; one of: {', '.join(by_name)}", file=sys.stderr)
        return 2
    model = topic_models(settings.topics)[topic]
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None, client_id="coach-tail",
        enable_auto_commit=False, auto_offset_reset="earliest" if args.from_beginning else "latest",
        consumer_timeout_ms=int(args.idle_timeout * 1000) if args.idle_timeout else float("inf"),
    )
    seen = 0
    try:
        for rec in consumer:
            try:
                m = model.from_bytes(rec.value)
            except ValueError as exc:
                first = str(exc).splitlines()[0]
                line = f"unparseable as {model.__name__}: {first}"
                print(json.dumps({"partition": rec.partition, "offset": rec.offset, "error": line})
                      if args.json else f"{rec.partition}:{rec.offset}  {line}", flush=True)
            else:
                print(m.model_dump_json(by_alias=True) if args.json
                      else f"{rec.partition}:{rec.offset}  {summarize(m)}", flush=True)
            seen += 1
            if args.max and seen >= args.max:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("tail", help="follow a topic's messages as readable lines (verdicts, results, …)")
    p.add_argument("topic", help="verdicts, partial-verdicts, results, analyses, clips, poses, dead-letters, control, "
                                    "athlete-selections or alignments")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest message, not the newest")
    p.add_argument("--json", action="store_true", help="print each validated message as one JSON line")
    p.add_argument("--max", type=int, default=0, help="stop after N messages")
    p.add_argument("--idle-timeout", type=float, default=0, help="stop after S seconds without a message")
    p.add_argument("--bootstrap", default=None, help="broker host:port (default COACH_KAFKA_BOOTSTRAP)")
    p.set_defaults(fn=cmd_tail)
