"""The JSON Schemas published for integrators (shared/schemas/, `coach schemas` rewrites them):
every topic's message, the result document and the documents services hand each other through the
store. Apart from shared/messages.py, which the result and document models import: no cycle."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from shared.documents import DOCUMENT_MODELS  # stored documents are versioned the same way
from shared.messages import (
    AnalysisCompleted, AnalysisRequested, AnalysisVerdict, AthleteSelected, ClipPoses, DeadLetter, ModelPublished,
    PartialVerdict, SessionAlignmentRequested, TrackedClip,
)
from shared.result import AnalysisResult, ResultFrames, ResultSummary

SCHEMA_DIR = Path(__file__).parent / "schemas"


def published_schemas() -> dict[str, dict]:
    """File name -> JSON Schema, for every message model, the result document and the documents the
    services hand each other through the store (shared/documents.py)."""
    models: list[type[BaseModel]] = [
        AnalysisRequested, TrackedClip, ClipPoses, AnalysisVerdict, AnalysisCompleted, DeadLetter, ModelPublished,
        AthleteSelected, SessionAlignmentRequested, PartialVerdict, AnalysisResult, ResultSummary, ResultFrames,
        *DOCUMENT_MODELS,
    ]
    out = {}
    for m in models:
        schema = m.model_json_schema(by_alias=True)
        name = schema["properties"]["schema"]["default"].split("/")[0].removeprefix("coach.")
        out[f"{name}.schema.json"] = schema
    return out


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in published_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
