"""Pure platform logic: settings, message models and their published schemas, object keys."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.messages import AnalysisRequested, VideoInfo
from shared.schema_catalog import SCHEMA_DIR, published_schemas
from shared.settings import Settings
from shared.store import keys


def test_published_schemas_match_the_models():
    """Fails when a model changes without `coach schemas` being rerun (integrators read these files)."""
    for name, schema in published_schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{name} not published; run `coach schemas`"
        assert json.loads(path.read_text()) == schema, f"{name} drifted from its model; run `coach schemas`"


def test_messages_round_trip_with_versioned_schema_field():
    msg = AnalysisRequested(analysis_id="ab" * 16, sport="squat", video_key="analyses/x/source.mp4",
                            video=VideoInfo(fps=25, width=640, height=480))
    raw = json.loads(msg.to_bytes())
    assert raw["schema"] == "coach.analysis-requested/1"
    assert AnalysisRequested.from_bytes(msg.to_bytes()) == msg


def test_unknown_schema_version_and_extra_fields_are_rejected():
    raw = json.loads(AnalysisRequested(analysis_id="ab" * 16, sport="squat", video_key="k",
                                       video=VideoInfo(fps=25, width=640, height=480)).to_bytes())
    with pytest.raises(ValidationError):
        AnalysisRequested.model_validate({**raw, "schema": "coach.analysis-requested/2"})
    with pytest.raises(ValidationError):
        AnalysisRequested.model_validate({**raw, "surprise": 1})


def test_settings_from_environment_with_typed_values_and_clear_errors():
    s = Settings.from_env({"COACH_KAFKA_BOOTSTRAP": "kafka:9092", "COACH_WORK_PARTITIONS": "12",
                           "COACH_S3_SECURE": "true", "COACH_TOPIC_PREFIX": "prod."})
    assert s.kafka_bootstrap == "kafka:9092" and s.work_partitions == 12 and s.s3_secure is True
    assert s.topics.verdicts == "prod.verdicts"
    assert Settings.from_env(s.as_env()) == s
    with pytest.raises(ValueError, match="COACH_WORK_PARTITIONS"):
        Settings.from_env({"COACH_WORK_PARTITIONS": "many"})


def test_object_keys_are_deterministic_and_refuse_unchecked_input():
    aid = "0123456789abcdef" * 2
    assert keys.frame(aid, 7) == f"analyses/{aid}/frames/000007.jpg" == keys.frame(aid, 7)
    for bad in ("../etc", "ABC", aid + "/x", ""):
        with pytest.raises(ValueError):
            keys.result(bad)
    with pytest.raises(ValueError):
        keys.source(aid, "mp4/../../x")


def test_every_other_key_is_built_and_checked_in_one_place():
    aid, sid = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    assert keys.watchdog(aid) == f"analyses/{aid}/watchdog.json"
    assert keys.biomech(aid, "com.png") == f"analyses/{aid}/biomech/com.png"
    assert keys.session(sid) == f"sessions/{sid}/session.json"
    assert keys.session_alignment(sid) == f"sessions/{sid}/alignment.json"
    assert keys.model_file("squat", "squat-1.0+synth.ab12", "pack.json") == "models/squat/squat-1.0+synth.ab12/pack.json"
    assert keys.model_current("squat") == "models/squat/current.json"
    assert keys.exemplar("squat/squat_front.mp4") == "exemplars/squat/squat_front.mp4"
    assert keys.analysis_id_of(f"analyses/{aid}/") == aid
    for bad in (lambda: keys.session("../x"), lambda: keys.model_file("Squat", "v1", "pack.json"),
                lambda: keys.model_file("squat", "../v", "pack.json"), lambda: keys.model_file("squat", "v1", "a/b"),
                lambda: keys.exemplar("../secret"), lambda: keys.exemplar("squat/../../x"), lambda: keys.exemplar("/abs"),
                lambda: keys.biomech(aid, "../result.json"), lambda: keys.api_key("not-a-digest")):
        with pytest.raises(ValueError):
            bad()
