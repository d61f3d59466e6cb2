#!/usr/bin/env python3
"""AI Coach integrator example (Python, confluent-kafka / librdkafka): subscribe to `verdicts`,
`results` or `partial-verdicts` with your own consumer group, validate each message against the published JSON Schema,
print it as one JSON line.

    pip install confluent-kafka jsonschema   # (or jsonschema-rs)
    python consume.py --bootstrap 127.0.0.1:19092 --topic verdicts --group my-app

Only depends on confluent-kafka and a JSON Schema validator: no AI Coach code is imported.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from confluent_kafka import Consumer, KafkaException

SCHEMAS = {"verdicts": "verdict.schema.json", "results": "analysis-completed.schema.json",
           "partial-verdicts": "partial-verdict.schema.json"}
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[3] / "shared" / "schemas"


def make_validator(schema: dict):
    """-> validate(doc) returning an error string or None (jsonschema, else jsonschema-rs)."""
    try:
        import jsonschema

        v = jsonschema.Draft202012Validator(schema)
        return lambda doc: next((e.message for e in v.iter_errors(doc)), None)
    except ImportError:
        import jsonschema_rs

        v = jsonschema_rs.validator_for(schema)
        return lambda doc: next((e.message for e in v.iter_errors(doc)), None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default="127.0.0.1:19092")
    p.add_argument("--topic", choices=sorted(SCHEMAS), default="verdicts")
    p.add_argument("--prefix", default="", help="topic prefix of the deployment (COACH_TOPIC_PREFIX)")
    p.add_argument("--group", default="python-integrator")
    p.add_argument("--schema-dir", type=Path, default=DEFAULT_SCHEMA_DIR)
    p.add_argument("--analysis-id", default=None, help="only this analysis")
    p.add_argument("--max", type=int, default=0, help="exit after N messages")
    args = p.parse_args(argv)

    validate = make_validator(json.loads((args.schema_dir / SCHEMAS[args.topic]).read_text()))
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap, "group.id": args.group,
        "auto.offset.reset": "earliest", "enable.auto.commit": True,
    })
    consumer.subscribe([args.prefix + args.topic])
    seen = 0
    try:
        while not args.max or seen < args.max:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            try:
                doc = json.loads(msg.value())
            except ValueError as exc:
                print(f"skipping a message that is not JSON: {exc}", file=sys.stderr)
                continue
            error = validate(doc)
            if error:
                print(f"skipping a message that does not match {SCHEMAS[args.topic]}: {error}", file=sys.stderr)
                continue
            if args.analysis_id and doc.get("analysis_id") != args.analysis_id:
                continue
            # A redelivered verdict carries the same content: keep the latest per analysis_id.
            print(json.dumps({"valid": True, "schema": doc["schema"], "message": doc}), flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
