"""One typed, versioned message model per Kafka topic.

Messages carry references (object keys) to frames and artifacts in object storage, never the
bulk data itself. Each model has a `schema` field "coach.<name>/<version>"; a consumer that
sees a version it does not know dead-letters the message instead of guessing. The JSON
Schemas in shared/schemas/ are generated from these models (`coach schemas`), with those of the
stored documents (shared/result.py, shared/documents.py), and a test fails when they drift, so
integrators can rely on them.

Units are in the names: `_px` pixels of the original video, `_s` seconds, `_m` metres.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

BBox = list[float]  # [x_px, y_px, w_px, h_px], top-left corner, original-video pixels


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.model_validate_json(data)


class VideoInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fps: float = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    frames: Optional[int] = Field(None, ge=0, description="Decoded frame count when known")


class AnalysisRequested(Message):
    """gateway -> tracker: a video was uploaded and validated; analyse it."""

    schema_: Literal["coach.analysis-requested/1"] = Field("coach.analysis-requested/1", alias="schema")
    analysis_id: str = Field(pattern=r"^[a-f0-9]{32}$")
    sport: str
    video_key: str = Field(description="Object key of the uploaded video")
    video: VideoInfo
    target_bbox_px: Optional[BBox] = Field(None, min_length=4, max_length=4)
    submitted_at: str = Field(default_factory=utc_now)


class FrameRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    index: int = Field(ge=0)
    t_s: float = Field(ge=0)
    frame_key: str = Field(description="Object key of the JPEG frame")
    bbox_px: Optional[BBox] = Field(None, description="Athlete box; null when the athlete is absent")
    track_score: float = 0.0
    track_state: str = "lost"


class TrackedClip(Message):
    """tracker -> pose: T consecutive frames of the athlete (references + boxes)."""

    schema_: Literal["coach.tracked-clip/1"] = Field("coach.tracked-clip/1", alias="schema")
    analysis_id: str
    sport: str
    clip_index: int = Field(ge=0)
    track_id: int = 0
    video: VideoInfo
    frames: list[FrameRef] = Field(min_length=1)
    is_last: bool = False
    revision: int = Field(0, ge=0, description="Athlete revision: 0 as streamed (the provisional athlete), 1 where "
                          "the tracker re-sent the clips for the athlete chosen over the whole clip, +1 per user's "
                          "athlete switch (AthleteSelected); stages drop messages of an older revision")


class ClipPoses(Message):
    """pose -> judge: per-frame keypoints of one clip, stored as a JSON object."""

    schema_: Literal["coach.clip-poses/1"] = Field("coach.clip-poses/1", alias="schema")
    analysis_id: str
    sport: str
    clip_index: int = Field(ge=0)
    track_id: int = 0
    first_frame: int = Field(ge=0)
    frame_count: int = Field(ge=1)
    poses_key: str = Field(description="Object key of the clip's poses (ClipPosesDocument JSON)")
    pose_model: str = Field(description="Pose model that produced the keypoints (COACH_POSE_MODEL), e.g. "
                            "mediapipe-blazepose-full-0.10.21; also in the stored poses and the result's models")
    refiner: str
    frames_with_pose: int = Field(ge=0)
    revision: int = Field(0, ge=0, description="Athlete revision: 0 as streamed (the provisional athlete), 1 where "
                          "the tracker re-sent the clips for the athlete chosen over the whole clip, +1 per user's "
                          "athlete switch (AthleteSelected); stages drop messages of an older revision")


class FaultSegment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(description="Fault type id of the sport pack, e.g. bent_knees")
    track_id: int = 0
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=0, description="Inclusive")
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    peak_probability: float = Field(ge=0, le=1)


class RepetitionTempo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    down: float = Field(ge=0, description="Seconds from the start to the turnaround (bottom of a squat / push-up)")
    hold: float = Field(ge=0, description="Seconds at the turnaround (within 10% of the range of motion)")
    up: float = Field(ge=0, description="Seconds from the turnaround back to the end")


class Repetition(BaseModel):
    """One repetition of an exercise (services/judge/reps.py; quality from services/judge/sequence.py)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    index: int = Field(ge=1, description="1-based, in time order; partial repetitions are listed too")
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=0, description="Inclusive")
    quality: Optional[float] = Field(None, ge=0, le=1, description="Probability that the repetition is standard "
                                     "(LSTM + attention); null when no sequence model is available")
    attention: Optional[list[float]] = Field(None, description="Attention weight of each frame start_frame..end_frame "
                                             "(sums to 1): the frames that decided the quality")
    range_of_motion_deg: Optional[float] = Field(None, description="Travel of the sport's primary angle (squat: thigh "
                                                 "below vertical; push-up: elbow flexion); null for repetitions found by "
                                                 "the class-agnostic counter (sports without a primary angle)")
    tempo_s: Optional[RepetitionTempo] = Field(None, description="null for repetitions found by the class-agnostic counter")
    partial: bool = Field(False, description="Less than half the range of the clip's largest repetition: reported, not counted")
    faults: list[str] = Field(default_factory=list, description="Fault types with a segment during this repetition")


class ScoreExemplar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(description="Exemplar clip of known score in the model's pool")
    title: Optional[str] = None
    score: float
    predicted_difference: float = Field(description="Predicted score of the analysed clip minus the exemplar's")


class ActionScore(BaseModel):
    """Action score 0-100 (services/judge/score.py): mean over exemplars of (score + predicted difference)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float = Field(ge=0, le=100)
    exemplars: list[ScoreExemplar] = Field(default_factory=list)
    model_version: Optional[str] = None


class NotJudgeable(BaseModel):
    """A stretch of the exercise where a fault cannot be judged from the camera's view."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(description="Fault type id")
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=0, description="Inclusive")
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    view: str = Field(description="Camera view estimated from the pose: front | oblique | side")
    reason: str = Field(description="In words, e.g. 'knees caving in needs a front or oblique view; the camera sees the side'")


class AnalysisVerdict(Message):
    """judge -> suggest and integrators: the faults found in a whole analysis.

    v2 adds what makes a verdict trustworthy: whether the pack was trained on human labels
    (`synthetic`, `label_source`), a top-level `finding` when the exercise was never performed
    (then `faults` is empty), how many frames showed the exercise, and `not_judgeable` stretches."""

    schema_: Literal["coach.verdict/2"] = Field("coach.verdict/2", alias="schema")
    analysis_id: str
    sport: str
    model_version: str
    video: VideoInfo
    frames_judged: int = Field(ge=0, description="Frames with a pose that got a verdict")
    faults: list[FaultSegment]
    fault_types: list[str] = Field(description="All fault types the pack checks")
    verdict_key: str = Field(description="Object key of the per-frame verdict document")
    repetitions: Optional[list[Repetition]] = Field(None, description="Exercise sports: repetitions found, with quality")
    score: Optional[ActionScore] = Field(None, description="Exercise sports: action score 0-100")
    synthetic: bool = Field(description="True when the fault models were trained on synthetic poses labelled by "
                            "criteria, not on expert labels: criteria-based, treat as indicative")
    label_source: str = Field("", description="Where the fault model's training labels came from")
    finding: Optional[str] = Field(None, description="Set when the exercise was never performed, e.g. 'no squat "
                                   "repetitions found: the athlete moves across the frame'; faults is then empty")
    frames_performing: int = Field(0, ge=0, description="Frames in which the athlete performs the exercise (judged)")
    not_judgeable: list[NotJudgeable] = Field(default_factory=list, description="Faults that cannot be judged from "
                                              "the camera's view during part of the exercise")
    track_id: int = Field(0, description="Track id of the person judged (tracking.json `athletes`); changes when a "
                          "user makes another person the athlete")
    revision: int = Field(0, ge=0, description="0 or 1 for the analysis (1: the athlete chosen over the whole clip "
                          "was not the provisional one streamed), +1 per user's athlete switch. Several verdicts of "
                          "one analysis: keep the one with the highest revision")
    produced_at: str = Field(default_factory=utc_now)


class PartialVerdictBody(BaseModel):
    """What a provisional verdict says: shared by the `partial-verdicts` message and partial.json."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    analysis_id: str
    sport: str
    model_version: str
    revision: int = Field(0, ge=0, description="Athlete revision judged (0, or N after the N-th athlete switch); "
                          "partials of an older revision are dropped")
    sequence: int = Field(ge=1, description="1 for the first partial verdict of this revision, then 2, ...: keep "
                          "the highest (revision, sequence)")
    track_id: int = Field(0, description="Track id of the person judged")
    athlete_settled: bool = Field(True, description="false while the tracker has not seen the whole clip yet: the "
                                  "person judged is its provisional athlete, and the athlete chosen over the whole "
                                  "clip may be someone else (then partials of the next revision follow)")
    clips_posed: int = Field(ge=1, description="Clips 0..clips_posed-1 are posed (a contiguous prefix) and judged")
    clip_count: Optional[int] = Field(None, ge=0, description="Clips of the analysis; null while the tracker is "
                                      "still reading the video")
    frames_posed: int = Field(ge=1, description="Frames in the judged prefix")
    frames_total: Optional[int] = Field(None, ge=0, description="Frames of the video when known")
    posed_until_s: float = Field(ge=0, description="The judged prefix covers 0..posed_until_s seconds of the video")
    safe_until_s: float = Field(ge=0, description="Faults and stretches ending after this time are withheld: frames "
                                "still to come may extend or remove them (posed_until_s minus a margin)")
    faults: list[FaultSegment] = Field(description="Fault segments that ended by safe_until_s (empty with a finding)")
    withheld: int = Field(0, ge=0, description="Fault segments found but withheld (ending after safe_until_s)")
    fault_types: list[str] = Field(description="All fault types the pack checks")
    frames_performing: int = Field(0, ge=0, description="Frames of the prefix in which the exercise is performed")
    finding: Optional[str] = Field(None, description="Provisional: the exercise is not (yet) seen in the prefix, "
                                   "e.g. 'no squat repetitions found ...'; faults is then empty")
    not_judgeable: list[NotJudgeable] = Field(default_factory=list, description="Stretches that ended by "
                                              "safe_until_s where a fault cannot be judged from the camera's view")
    repetitions: Optional[int] = Field(None, ge=0, description="Exercise sports: full repetitions completed by "
                                       "safe_until_s")
    synthetic: bool = Field(description="Fault models trained on synthetic poses labelled by criteria")
    label_source: str = ""
    notes: list[str] = Field(default_factory=list, description="What is provisional about this verdict, in words")
    created_at: str = Field(default_factory=utc_now)


class PartialVerdict(Message, PartialVerdictBody):
    """judge -> integrators (partial-verdicts): a provisional verdict on the clips posed so far, while
    the analysis runs. The final AnalysisVerdict on `verdicts` supersedes it; it never changes it."""

    schema_: Literal["coach.partial-verdict/1"] = Field("coach.partial-verdict/1", alias="schema")
    partial_key: str = Field(description="Object key of the stored partial verdict (PartialVerdictDocument)")


class AnalysisCompleted(Message):
    """suggest -> integrators: the result document is ready (or the analysis failed)."""

    schema_: Literal["coach.analysis-completed/1"] = Field("coach.analysis-completed/1", alias="schema")
    analysis_id: str
    status: Literal["done", "failed"]
    result_key: Optional[str] = None
    error: Optional[str] = None
    produced_at: str = Field(default_factory=utc_now)


class DeadLetter(Message):
    """Any service -> dead-letters: a message that could not be parsed or processed."""

    schema_: Literal["coach.dead-letter/1"] = Field("coach.dead-letter/1", alias="schema")
    service: str
    source_topic: str
    partition: int
    offset: int
    key: Optional[str] = None
    value: str = Field(description="The original value, UTF-8 (or base64 when not text)")
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    headers: dict[str, str] = Field(default_factory=dict)
    error: str
    attempts: int = Field(ge=0)
    failed_at: str = Field(default_factory=utc_now)


class ModelPublished(Message):
    """`coach judge publish` -> every judge worker (control topic): a sport's current model changed."""

    schema_: Literal["coach.model-published/1"] = Field("coach.model-published/1", alias="schema")
    sport: str
    version: str = Field(description="Model version, as in models/<sport>/<version>/ and in verdicts")
    published_at: str = Field(default_factory=utc_now)


class AthleteSelected(Message):
    """gateway -> tracker (athlete-selections): a user made another tracked person the athlete of a
    finished analysis. The tracker retargets tracking.json from that person's stored boxes and
    publishes its clips again with this revision; pose, judge and suggest re-run for them."""

    schema_: Literal["coach.athlete-selection/1"] = Field("coach.athlete-selection/1", alias="schema")
    analysis_id: str = Field(pattern=r"^[a-f0-9]{32}$")
    track_id: int = Field(description="A track id of tracking.json `athletes`")
    revision: int = Field(ge=1, description="1 for the first switch of the analysis, then 2, ...; older ones are dropped")
    requested_at: str = Field(default_factory=utc_now)


class SessionCamera(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    analysis_id: str = Field(pattern=r"^[a-f0-9]{32}$", description="The camera's analysis (done: its poses are stored)")
    video_key: str = Field(description="Object key of the camera's uploaded video")


class SessionAlignmentRequested(Message):
    """gateway -> the tracker's align worker: every analysis of a multi-camera session is done;
    put the cameras on one timeline and store sessions/<session_id>/alignment.json."""

    schema_: Literal["coach.session-alignment-requested/1"] = Field("coach.session-alignment-requested/1", alias="schema")
    session_id: str = Field(pattern=r"^[a-f0-9]{32}$")
    cameras: list[SessionCamera] = Field(min_length=2, max_length=8, description="In camera order; camera 0 is the reference")
    requested_at: str = Field(default_factory=utc_now)


def topic_models(topics) -> dict[str, type[Message]]:
    """Topic name -> the one model its messages follow."""
    return {
        topics.analyses: AnalysisRequested,
        topics.clips: TrackedClip,
        topics.poses: ClipPoses,
        topics.verdicts: AnalysisVerdict,
        topics.results: AnalysisCompleted,
        topics.dead_letters: DeadLetter,
        topics.control: ModelPublished,
        topics.athlete_selections: AthleteSelected,
        topics.alignments: SessionAlignmentRequested,
        topics.partial_verdicts: PartialVerdict,
    }
