"""One typed, versioned model per document the services hand each other through the object store.

The Kafka messages (shared/messages.py) carry references; these are what the references point
at, under analyses/<id>/ (keys: shared/store.py `keys`):

    request.json              AnalysisRequest     gateway -> gateway, watchdog, suggest
    selection.json            AthleteSelection    gateway (athlete switch) -> tracker, gateway, watchdog
    tracking.json             TrackingDocument    tracker -> pose, judge, suggest, gateway
    poses/clip-NNNNN.json     ClipPosesDocument   pose -> judge, suggest, the tracker's align worker
    verdict.json              VerdictDocument     judge -> suggest, integrators (AnalysisVerdict.verdict_key)
    partial.json              PartialVerdictDocument  judge -> gateway (?partial=1), integrators: provisional,
                                                  while the analysis runs (PartialVerdict.partial_key)
    status/<stage>.json       StageStatus         every worker (shared/worker.py), watchdog -> gateway, watchdog
                                                  (also sessions/<sid>/status/align.json: align worker -> gateway)
    result.json               shared/result.py AnalysisResult (suggest -> gateway, integrators)
    result-summary.json       shared/result.py ResultSummary  (suggest -> gateway: ?frames=none)
    result-frames/NNNNN.json  shared/result.py ResultFrames   (suggest -> gateway: /frames; shared/result_pages.py)
    sessions/<sid>/alignment.json  SessionAlignment  the tracker's align worker -> gateway

Writers build a document through its model and store it with `store.put_json(key, doc)`;
readers parse with `Model.read(store, key)` (or `Model.parse(data, key)`), never by string keys
into a dict. Each model has a `schema` field "coach.<name>/<version>", like the messages. A
document written before its model existed has no `schema` field and still parses: every field
added since the first version is optional or has a default (a document that says another
version, or lacks what every version has, is refused with `MalformedDocument` naming the key and
the field). Their JSON Schemas are published beside the topic schemas (shared/schemas/,
`coach schemas`), and a test fails when they drift.

`extra`: tracking, clip poses and verdict forbid unknown fields, as the messages do (a new field
is added here first). The stage status and the request record carry open-ended details by design
(a stage's progress counters; what a session attaches to its analyses): unknown fields are kept.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from shared.clips import clip_spans
from shared.messages import (
    ActionScore, AnalysisRequested, AthleteSelected, BBox, NotJudgeable, PartialVerdictBody, Repetition, VideoInfo,
)

D = TypeVar("D", bound="Document")
Keypoints = list[Optional[list[float]]]  # one row per landmark (shared.skeleton.LANDMARK_NAMES order); null = not seen


class MalformedDocument(ValueError):
    """A stored document that its model refuses: what was read, and why (field by field)."""


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    # Optional fields left out of the stored JSON while they are null: the shape the writers used
    # before the models (readers that test for the key, e.g. `"error" in doc`, keep working).
    omit_when_null: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _leave_out_nulls(self, handler):
        data = handler(self)
        for name in self.omit_when_null:
            if isinstance(data, dict) and data.get(name, 0) is None:
                del data[name]
        return data

    @classmethod
    def parse(cls: type[D], data: Any, key: str = "") -> D:
        """The document from its JSON (a dict, str or bytes); MalformedDocument when it is not one."""
        try:
            if isinstance(data, (str, bytes, bytearray)):
                return cls.model_validate_json(data)
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}"
                                 for e in exc.errors()[:5])
            more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
            raise MalformedDocument(f"{key or 'document'} is not a valid {cls.schema_id()} document: "
                                    f"{problems}{more}") from None

    @classmethod
    def read(cls: type[D], store, key: str) -> D:
        """Read and parse `key` (ObjectNotFound when it is not there)."""
        return cls.parse(store.get_json(key), key)

    @classmethod
    def schema_id(cls) -> str:
        return cls.model_fields["schema_"].default


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---------------------------------------------------------------------------- request.json

class AnalysisRequest(Document):
    """analyses/<id>/request.json, written by the gateway when an upload is accepted: what was
    asked, by whom, and the message to re-drive it with (the watchdog)."""
    model_config = ConfigDict(extra="allow")

    omit_when_null: ClassVar[frozenset[str]] = frozenset({"session_id", "camera", "athlete_height_m"})

    schema_: Literal["coach.request-document/1"] = Field("coach.request-document/1", alias="schema")
    analysis_id: str = Field(pattern=r"^[a-f0-9]{32}$")
    sport: str
    submitted_at: str = Field(description="ISO 8601, UTC")
    video: VideoInfo
    filename: str = Field("", description="The uploaded file's name (never used in a key)")
    size_bytes: Optional[int] = Field(None, ge=0)
    target_bbox_px: Optional[BBox] = None
    message: Optional[AnalysisRequested] = Field(None, description="The AnalysisRequested produced; absent in "
                                                 "requests stored before re-drives existed (those are not re-driven)")
    owner: Optional[str] = Field(None, description="Key id of the caller that created it (absent: 'local')")
    session_id: Optional[str] = Field(None, description="Multi-camera session this analysis belongs to")
    camera: Optional[int] = Field(None, ge=0, description="Its camera index in the session")
    athlete_height_m: Optional[float] = Field(None, gt=0, description="Sets the biomechanics' metric scale")


# ---------------------------------------------------------------------------- tracking.json

class ChosenAthlete(_Part):
    track_id: int = 0
    reason: str = Field("", description="Why this person is the athlete, in words")
    candidates: list[dict[str, Any]] = Field(default_factory=list, description="The people considered, with the "
                                             "figures the choice was made on")


class FollowedPerson(_Part):
    track_id: int
    frames: list[int] = Field(description="Frame indices the person was followed on")
    boxes_px: list[BBox] = Field(description="Box on each of those frames")
    score: Optional[float] = None
    seconds: float = Field(ge=0)


class TrackerChoice(_Part):
    track_id: Optional[int] = None
    reason: Optional[str] = None
    alternatives: list[dict[str, Any]] = Field(default_factory=list)
    policy: str = Field("", description="The athlete policy; 'user' after an athlete switch")
    requested_at: Optional[str] = Field(None, description="After an athlete switch: when it was asked for")
    previous: Optional[dict[str, Any]] = Field(None, description="After an athlete switch: the choice it replaced")


class TrackingDocument(Document):
    """analyses/<id>/tracking.json, written by the tracker before its last clip is published: the
    clip count (the judge knows from it when every clip is posed) and who the athlete is."""

    schema_: Literal["coach.tracking-document/1"] = Field("coach.tracking-document/1", alias="schema")
    analysis_id: str
    frames: int = Field(ge=0, description="Frames decoded")
    fps: float = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    clip_count: int = Field(ge=0)
    clip_frames: int = Field(ge=1)
    first_clip_frames: int = Field(0, ge=0, description="Frames of the first clip when it is shorter than "
                                   "clip_frames (clips then [0, first_clip_frames), [first_clip_frames, "
                                   "clip_frames), then every clip_frames); 0: every clip has clip_frames "
                                   "frames (the last one fewer), as in documents before issue 17")
    athlete: ChosenAthlete
    athletes: list[FollowedPerson] = Field(default_factory=list, description="Everyone followed long enough, the "
                                           "athlete first (absent in documents of older trackers)")
    choice: Optional[TrackerChoice] = None
    seconds: float = Field(0.0, ge=0)
    revision: int = Field(0, ge=0, description="0 as streamed; 1 where the athlete chosen over the whole clip "
                          "differs from the provisional one; +1 per user's athlete switch")

    def clip_spans(self) -> list[tuple[int, int]]:
        """[start, end) frame indices of each clip (shared/clips.py)."""
        return clip_spans(self.frames, self.clip_frames, self.first_clip_frames)


# ---------------------------------------------------------------------------- poses/clip-NNNNN.json

class PoseFrame(_Part):
    index: int = Field(ge=0)
    t_s: float = Field(ge=0)
    bbox_px: Optional[BBox] = None
    track_state: str = "lost"
    track_score: float = 0.0
    keypoints: Optional[Keypoints] = Field(None, description="[x_px, y_px, confidence] per landmark; null: no pose")
    keypoints_3d: Optional[Keypoints] = Field(None, description="[x_m, y_m, z_m] per landmark, hip-centred")


class LrSwaps(_Part):
    upper: int = Field(0, ge=0)
    lower: int = Field(0, ge=0)


class RawTail(_Part):
    """The clip's last raw poses (as BlazePose gave them, before refinement): the next clip's refiner
    context across the clip boundary."""
    first_index: int = Field(ge=0, description="Frame index of the first row")
    keypoints: list[Optional[Keypoints]] = Field(description="One row of landmarks per frame; null: no pose")


class ClipPosesDocument(Document):
    """analyses/<id>/poses/clip-NNNNN.json, written by the pose stage: every frame of one clip
    (frames without the athlete or without a pose have null keypoints)."""
    model_config = ConfigDict(validate_assignment=True)
    omit_when_null: ClassVar[frozenset[str]] = frozenset({"raw_tail"})

    schema_: Literal["coach.clip-poses-document/1"] = Field("coach.clip-poses-document/1", alias="schema")
    analysis_id: str
    clip_index: int = Field(ge=0)
    track_id: int = Field(0, description="The person posed (tracking.json `athletes`)")
    revision: int = Field(0, ge=0, description="The athlete revision the clip was posed for")
    pose_model: str
    refiner: str
    landmarks: list[str] = Field(default_factory=list, description="Landmark order of the keypoint rows")
    seconds: float = Field(0.0, ge=0)
    lr_swaps_fixed: Optional[LrSwaps] = Field(None, description="Frames whose left/right halves were swapped back")
    context_frames: int = Field(0, ge=0, description="Raw poses of the previous clip the refiner saw first")
    session_continued: bool = Field(False, description="BlazePose continued the previous clip's session (its "
                                    "tracking and tilt; COACH_POSE_SESSIONS) instead of starting fresh")
    frames: list[PoseFrame]
    raw_tail: Optional[RawTail] = Field(None, description="Written when the refiner takes context (the STRN)")


# ---------------------------------------------------------------------------- verdict.json

class VerdictFrame(_Part):
    index: int = Field(ge=0)
    faults: Optional[dict[str, Optional[float]]] = Field(description="fault type -> probability; null: no verdict "
                                                         "for the frame (not performing, or too few joints)")
    activity: Optional[Literal["performing", "not_performing"]] = None
    view: Optional[Literal["front", "oblique", "side"]] = None
    phase: Optional[Literal["bottom"]] = None
    angles_deg: dict[str, Optional[float]] = Field(default_factory=dict)


class VerdictSegment(_Part):
    """A fault segment; start_frame / end_frame (inclusive) are positions in `frames`."""
    type: str
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=0)
    peak_probability: float


class VerdictDocument(Document):
    """analyses/<id>/verdict.json, written by the judge: per-frame fault probabilities and angles of
    the whole analysis, the thresholds they are read against, and the exercise report."""

    schema_: Literal["coach.verdict-document/1"] = Field("coach.verdict-document/1", alias="schema")
    analysis_id: str
    sport: str
    model_version: str
    track_id: int = Field(0, description="The person judged")
    revision: int = Field(0, ge=0, description="The athlete revision judged")
    fault_types: list[str]
    thresholds: dict[str, float]
    fault_titles: dict[str, str] = Field(default_factory=dict)
    angle_names: list[str] = Field(default_factory=list)
    synthetic: Optional[bool] = Field(None, description="Fault models trained on synthetic poses (null: not recorded)")
    label_source: str = ""
    finding: Optional[str] = None
    frames_performing: Optional[int] = Field(None, ge=0)
    not_judgeable: list[NotJudgeable] = Field(default_factory=list)
    frames: list[VerdictFrame]
    segments: list[VerdictSegment] = Field(default_factory=list)
    repetitions: Optional[list[Repetition]] = None
    score: Optional[ActionScore] = None
    sequence_model_version: Optional[str] = None


# ---------------------------------------------------------------------------- partial.json

class PartialVerdictDocument(Document, PartialVerdictBody):
    """analyses/<id>/partial.json, written by the judge while an analysis runs: a provisional verdict
    on the contiguous prefix of clips posed so far (services/judge/partial.py), overwritten as the
    prefix grows. Only faults that ended a margin before the prefix's end are in it; the final
    verdict.json / result.json supersede it."""
    model_config = ConfigDict(extra="forbid", frozen=False)
    omit_when_null: ClassVar[frozenset[str]] = frozenset({"frame_flags"})

    schema_: Literal["coach.partial-verdict-document/1"] = Field("coach.partial-verdict-document/1", alias="schema")
    frame_flags: Optional[list[Optional[bool]]] = Field(
        None, description="One per frame of the judged prefix, in order: true where a fault is flagged, false "
        "where judged fine, null where not judged (the annotated video's red / green / grey, by the final "
        "verdict's rule). Provisional like the rest; the suggest stage pre-renders the annotated video from "
        "it. Absent in documents of older judges")


# ---------------------------------------------------------------------------- status/<stage>.json

StageState = Literal["queued", "waiting", "running", "done", "failed"]


class StageStatus(Document):
    """analyses/<id>/status/<stage>.json: one stage's progress, overwritten as it goes. Stages add
    their own counters (frames, clips_done, clips_posed, clip_count...): unknown fields are kept."""
    model_config = ConfigDict(extra="allow")

    omit_when_null: ClassVar[frozenset[str]] = frozenset({"error", "seconds", "note", "revision", "result_revision"})

    schema_: Literal["coach.stage-status-document/1"] = Field("coach.stage-status-document/1", alias="schema")
    stage: str
    state: StageState
    fraction: float = Field(ge=0, le=1)
    updated_at: str = Field(description="ISO 8601, UTC: the watchdog's idle clock")
    error: Optional[str] = Field(None, description="Why the analysis failed (state failed)")
    seconds: Optional[float] = Field(None, ge=0, description="Time the stage took (state done)")
    note: Optional[str] = None
    revision: Optional[int] = Field(None, ge=0, description="The athlete revision the stage works on")
    result_revision: Optional[int] = Field(None, ge=-1, description="suggest: the athlete revision of the stored "
                                           "result (-1: none yet)")


# ---------------------------------------------------------------------------- selection.json

class AthleteSelection(Document):
    """analyses/<id>/selection.json, written by the gateway when a user makes another tracked person
    the athlete (POST /v1/analyses/{id}/athlete), before the AthleteSelected is sent: the analysis
    reads as running from then on, and the watchdog can send the selection again."""

    schema_: Literal["coach.athlete-selection-document/1"] = Field("coach.athlete-selection-document/1",
                                                                   alias="schema")
    revision: int = Field(ge=1)
    track_id: int
    previous_track_id: Optional[int] = None
    requested_at: str
    by: Optional[str] = Field(None, description="Key id of the caller")
    message: Optional[AthleteSelected] = Field(None, description="The AthleteSelected sent (re-driven as it is)")


# ---------------------------------------------------------------------------- sessions/<sid>/alignment.json

class CameraVsReference(_Part):
    offset_s: Optional[float] = None
    offset_frames: Optional[float] = None
    overlap_s: float
    second_best: Optional[float] = None


class CameraOffset(_Part):
    offset_s: Optional[float] = Field(None, description="Start of the camera on the common timeline; null: not found")
    offset_frames: Optional[float] = None
    confidence: Optional[float] = None
    vs_camera_0: Optional[CameraVsReference] = None


class AlignedCamera(_Part):
    index: int = Field(ge=0)
    analysis_id: str
    fps: float
    frames: int = Field(ge=0)
    motion: CameraOffset = Field(description="Offset found from motion energy")
    presence: CameraOffset = Field(description="Offset found from athlete presence")
    offset_s: Optional[float] = Field(None, description="The chosen method's offset")
    offset_frames: Optional[float] = None
    confidence: Optional[float] = None


class BestView(_Part):
    rate_hz: float
    criterion: str
    segments: list[dict[str, Any]] = Field(description="[{camera, start_s, end_s}] on the common timeline")
    per_step: list[Optional[int]] = Field(description="Best camera at each step of 1/rate_hz s (null: none sees the athlete)")


class SessionAlignment(Document):
    """sessions/<sid>/alignment.json, written by the tracker's align worker (or by the gateway, failed,
    when a request stalls): every camera's offset on one timeline and the best view per moment; or,
    when the session cannot be aligned, only `error`."""

    omit_when_null: ClassVar[frozenset[str]] = frozenset({"error", "method", "convention", "best_view", "seconds"})

    schema_: Literal["coach.session-alignment/1"] = Field("coach.session-alignment/1", alias="schema")
    session_id: str
    error: Optional[str] = Field(None, description="Why the session could not be aligned (then nothing else is set)")
    method: Optional[Literal["motion", "presence"]] = None
    convention: Optional[str] = None
    cameras: list[AlignedCamera] = Field(default_factory=list)
    best_view: Optional[BestView] = None
    seconds: Optional[float] = Field(None, ge=0)


DOCUMENT_MODELS: tuple[type[Document], ...] = (AnalysisRequest, TrackingDocument, ClipPosesDocument, VerdictDocument,
                                              StageStatus, AthleteSelection, SessionAlignment, PartialVerdictDocument)
