"""Typed stored documents (shared/documents.py): round trip through a store, documents written
before the models existed, malformed documents, and the sequence helper the judge and suggest share."""
from __future__ import annotations

import json

import numpy as np
import pytest

from shared.documents import (DOCUMENT_MODELS, AnalysisRequest, AthleteSelection, ChosenAthlete, ClipPosesDocument,
                              LrSwaps, MalformedDocument, PartialVerdictDocument, PoseFrame, SessionAlignment,
                              StageStatus, TrackingDocument,
                              VerdictDocument, VerdictFrame)
from shared.messages import AnalysisRequested, AthleteSelected, FaultSegment, Repetition, VideoInfo
from shared.schema_catalog import SCHEMA_DIR, published_schemas
from shared.poses import keypoints_array, load_sequence
from shared.skeleton import LANDMARK_NAMES, NUM_LANDMARKS
from shared.store import ObjectNotFound, keys
from shared.testing import MemoryStore

AID = "0123456789abcdef" * 2
SID = "fedcba9876543210" * 2


def _row(i: int) -> list[float]:
    return [10.0 + i, 20.0 + i, 0.9]


def _documents() -> dict[str, object]:
    video = VideoInfo(fps=30.0, width=640, height=480, frames=3)
    msg = AnalysisRequested(analysis_id=AID, sport="squat", video_key=keys.source(AID, "mp4"), video=video)
    return {
        keys.request(AID): AnalysisRequest(analysis_id=AID, sport="squat", submitted_at=msg.submitted_at, video=video,
                                           filename="a.mp4", size_bytes=123, message=msg, owner="local",
                                           session_id="f" * 32, camera=1, athlete_height_m=1.8),
        keys.tracking(AID): TrackingDocument(
            analysis_id=AID, frames=3, fps=30.0, width=640, height=480, clip_count=1, clip_frames=32,
            athlete=ChosenAthlete(track_id=2, reason="most active", candidates=[{"track_id": 2, "score": 0.7}]),
            athletes=[{"track_id": 2, "frames": [0, 1], "boxes_px": [[1, 2, 3, 4]] * 2, "score": 0.7, "seconds": 0.07}],
            choice={"track_id": 2, "reason": "most active", "alternatives": [], "policy": "most_active"}, seconds=1.5),
        keys.clip_poses(AID, 0): ClipPosesDocument(
            analysis_id=AID, clip_index=0, pose_model="mediapipe-blazepose-full-0.10.21", refiner="strn",
            landmarks=list(LANDMARK_NAMES), seconds=0.2, lr_swaps_fixed=LrSwaps(upper=1, lower=0),
            frames=[PoseFrame(index=0, t_s=0.0, bbox_px=[1, 2, 3, 4], track_state="tracked", track_score=0.9,
                              keypoints=[_row(i) for i in range(NUM_LANDMARKS)], keypoints_3d=None),
                    PoseFrame(index=1, t_s=0.0333)]),
        keys.verdict(AID): VerdictDocument(
            analysis_id=AID, sport="squat", model_version="squat-1", fault_types=["shallow_depth"],
            thresholds={"shallow_depth": 0.5}, fault_titles={"shallow_depth": "Shallow squat"}, angle_names=["knee_l"],
            synthetic=False, label_source="people", finding=None, frames_performing=1,
            frames=[VerdictFrame(index=0, faults={"shallow_depth": 0.8}, activity="performing", view="side", phase="bottom",
                                 angles_deg={"knee_l": 95.0}),
                    VerdictFrame(index=1, faults=None, angles_deg={"knee_l": None})],
            segments=[{"type": "shallow_depth", "start_frame": 0, "end_frame": 0, "peak_probability": 0.8}],
            repetitions=[Repetition(index=1, start_frame=0, end_frame=1)], sequence_model_version=None),
        keys.partial_verdict(AID): PartialVerdictDocument(
            analysis_id=AID, sport="squat", model_version="squat-1", sequence=2, track_id=2, clips_posed=3, clip_count=None,
            frames_posed=96, frames_total=300, posed_until_s=3.2, safe_until_s=2.2,
            faults=[FaultSegment(type="shallow_depth", start_frame=49, end_frame=64, start_s=1.633, end_s=2.133,
                                 peak_probability=0.9, track_id=2)], withheld=1, fault_types=["shallow_depth"],
            frames_performing=60, repetitions=0, synthetic=True, notes=["provisional: judged on the first 3.2 s"]),
        keys.status(AID, "pose"): StageStatus(stage="pose", state="running", fraction=0.5,
                                              updated_at="2026-01-01T00:00:00+00:00", clips_done=2),
        keys.selection(AID): AthleteSelection(revision=1, track_id=5, previous_track_id=2, requested_at="t", by="local",
                                              message=AthleteSelected(analysis_id=AID, track_id=5, revision=1)),
        keys.session_alignment(SID): SessionAlignment(
            session_id=SID, method="motion", convention="c",
            cameras=[{"index": 0, "analysis_id": AID, "fps": 25.0, "frames": 100,
                      "motion": {"offset_s": 0.0, "offset_frames": 0.0, "confidence": 1.0, "vs_camera_0": None},
                      "presence": {"offset_s": None, "offset_frames": None, "confidence": 1.0, "vs_camera_0": None},
                      "offset_s": 0.0, "offset_frames": 0.0, "confidence": 1.0}],
            best_view={"rate_hz": 25.0, "criterion": "c", "segments": [{"camera": 0, "start_s": 0.0, "end_s": 4.0}],
                       "per_step": [0, None]}, seconds=1.2),
    }


@pytest.mark.parametrize("key", list(_documents()))
def test_documents_round_trip_through_the_store_with_their_version(key):
    doc = _documents()[key]
    store = MemoryStore()
    store.put_json(key, doc)
    raw = json.loads(store.objects[key])
    assert raw["schema"] == type(doc).schema_id() and raw["schema"].startswith("coach.") and raw["schema"].endswith("/1")
    back = type(doc).read(store, key)
    assert back == doc
    assert back.model_dump(by_alias=True) == raw


def test_stage_status_keeps_a_stage_s_own_counters():
    st = StageStatus.parse({"stage": "judge", "state": "waiting", "fraction": 0.0, "updated_at": "t",
                            "clips_posed": 3, "clip_count": None})
    assert st.model_dump()["clips_posed"] == 3 and "clip_count" in st.model_dump()


# Shapes written by the services before the models existed (no `schema`, fields added later absent).
OLD = {
    TrackingDocument: {"analysis_id": AID, "frames": 3, "fps": 25.0, "width": 768, "height": 576, "clip_count": 1,
                       "clip_frames": 32, "athlete": {"track_id": 0, "reason": "moved most", "candidates": []},
                       "seconds": 1.2},
    ClipPosesDocument: {"analysis_id": AID, "clip_index": 0, "pose_model": "mediapipe-blazepose-full-0.10.14",
                        "refiner": "one_euro", "landmarks": list(LANDMARK_NAMES), "seconds": 0.4,
                        "frames": [{"index": 0, "t_s": 0.0, "bbox_px": None, "track_state": "lost", "track_score": 0.0,
                                    "keypoints": None, "keypoints_3d": None}]},
    VerdictDocument: {"analysis_id": AID, "sport": "ski_aerials", "model_version": "ski_aerials-0.1+synth.x",
                      "fault_types": ["bent_knees"], "thresholds": {"bent_knees": 0.5}, "angle_names": ["knee_l"],
                      "frames": [{"index": 0, "faults": {"bent_knees": 0.1}, "angles_deg": {"knee_l": 3.0}},
                                 {"index": 1, "faults": None, "angles_deg": {"knee_l": None}}],
                      "segments": [{"type": "bent_knees", "start_frame": 0, "end_frame": 0, "peak_probability": 0.6}]},
    AnalysisRequest: {"analysis_id": AID, "sport": "squat", "submitted_at": "2026-11-21T00:00:00.000+00:00",
                      "video": {"fps": 25.0, "width": 768, "height": 576, "frames": 795}, "filename": "a.avi",
                      "size_bytes": 1000, "target_bbox_px": None},
    StageStatus: {"stage": "tracker", "state": "done", "fraction": 1.0, "updated_at": "2026-11-21T00:00:01.000+00:00",
                  "frames": 795, "clip_count": 25, "seconds": 3.2},
    AthleteSelection: {"revision": 1, "track_id": 5, "previous_track_id": 0, "requested_at": "2026-12-07T00:00:00+00:00",
                       "by": "local", "message": {"schema": "coach.athlete-selection/1", "analysis_id": AID, "track_id": 5,
                                                  "revision": 1, "requested_at": "2026-12-07T00:00:00+00:00"}},
    SessionAlignment: {"schema": "coach.session-alignment/1", "session_id": SID, "error": "alignment failed: camera 1"},
}


@pytest.mark.parametrize("model", list(OLD), ids=lambda m: m.__name__)
def test_a_document_written_before_the_models_still_parses(model):
    doc = model.parse(OLD[model], "analyses/x/doc.json")
    assert doc.schema_id().endswith("/1")
    assert json.loads(doc.model_dump_json(by_alias=True))["schema"] == doc.schema_id()   # rewritten: now versioned


def test_old_documents_read_with_the_defaults_readers_rely_on():
    t = TrackingDocument.parse(OLD[TrackingDocument])
    assert t.athletes == [] and t.choice is None
    v = VerdictDocument.parse(OLD[VerdictDocument])
    assert v.fault_titles == {} and v.synthetic is None and v.not_judgeable == [] and v.frames[0].activity is None
    r = AnalysisRequest.parse(OLD[AnalysisRequest])
    assert r.message is None and r.owner is None and r.athlete_height_m is None   # not re-driven; owner "local"
    p = ClipPosesDocument.parse(OLD[ClipPosesDocument])
    assert p.lr_swaps_fixed is None and p.frames[0].keypoints is None


def test_malformed_documents_are_refused_naming_the_key_and_the_field():
    bad = {k: v for k, v in OLD[TrackingDocument].items() if k != "clip_count"}
    with pytest.raises(MalformedDocument, match=r"analyses/x/tracking.json is not a valid coach.tracking-document/1 "
                                                 r"document: clip_count: Field required"):
        TrackingDocument.parse(bad, "analyses/x/tracking.json")
    with pytest.raises(MalformedDocument, match=r"frames.0.keypoints"):
        ClipPosesDocument.parse({**OLD[ClipPosesDocument], "frames": [{"index": 0, "t_s": 0.0, "keypoints": "none"}]})
    with pytest.raises(MalformedDocument, match=r"state"):
        StageStatus.parse({**OLD[StageStatus], "state": "sleeping"})
    with pytest.raises(MalformedDocument, match="Invalid JSON"):
        VerdictDocument.parse(b"{not json", "analyses/x/verdict.json")
    assert issubclass(MalformedDocument, ValueError)


def test_another_version_or_an_unknown_field_is_refused_not_guessed():
    with pytest.raises(MalformedDocument, match="schema"):
        TrackingDocument.parse({**OLD[TrackingDocument], "schema": "coach.tracking-document/2"})
    with pytest.raises(MalformedDocument, match="surprise"):
        VerdictDocument.parse({**OLD[VerdictDocument], "surprise": 1})


def test_read_of_a_missing_document_is_object_not_found():
    with pytest.raises(ObjectNotFound):
        TrackingDocument.read(MemoryStore(), keys.tracking(AID))


def test_document_schemas_are_published_beside_the_topic_schemas():
    published = published_schemas()
    for model in DOCUMENT_MODELS:
        name = model.schema_id().split("/")[0].removeprefix("coach.") + ".schema.json"
        assert name in published and (SCHEMA_DIR / name).is_file(), f"{name} not published; run `coach schemas`"
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json")) == sorted(published), \
        "a file in shared/schemas/ no model publishes (renamed or removed model): run `coach schemas` and delete it"


def test_load_sequence_concatenates_the_clips_with_nan_where_no_pose():
    store = MemoryStore()
    row = [[1.0, 2.0, 0.9]] * NUM_LANDMARKS
    for k, frames in enumerate([[0, 1], [2]]):
        store.put_json(keys.clip_poses(AID, k), ClipPosesDocument(
            analysis_id=AID, clip_index=k, pose_model="m", refiner="none",
            frames=[PoseFrame(index=i, t_s=i / 30, keypoints=None if i == 1 else [None] + row[1:]) for i in frames]))
    frames, kps = load_sequence(store, AID, 2)
    assert [f.index for f in frames] == [0, 1, 2] and kps.shape == (3, NUM_LANDMARKS, 3)
    assert np.isnan(kps[1]).all() and np.isnan(kps[0, 0]).all() and kps[2, 1].tolist() == [1.0, 2.0, 0.9]
    assert keypoints_array([]).shape == (0, NUM_LANDMARKS, 3)


def test_null_optional_fields_stay_out_of_the_stored_json_as_before():
    """Readers written before the models test for keys (`"error" in alignment`): a null is not written."""
    st = json.loads(StageStatus(stage="judge", state="waiting", fraction=0.0, updated_at="t", clip_count=None)
                    .model_dump_json(by_alias=True))
    assert "error" not in st and "revision" not in st and st["clip_count"] is None   # a stage's own null is kept
    done = json.loads(SessionAlignment(session_id=SID, method="motion").model_dump_json(by_alias=True))
    failed = json.loads(SessionAlignment(session_id=SID, error="alignment failed: x").model_dump_json(by_alias=True))
    assert "error" not in done and set(failed) == {"schema", "session_id", "error", "cameras"}
    req = json.loads(AnalysisRequest.parse(OLD[AnalysisRequest]).model_dump_json(by_alias=True))
    assert "session_id" not in req and "athlete_height_m" not in req
