"""The result document of one analysis (`analyses/<id>/result.json`), versioned like the messages."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import ActionScore, BBox, NotJudgeable, Repetition, VideoInfo


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FrameResult(_Doc):
    index: int = Field(ge=0)
    t_s: float = Field(ge=0)
    bbox_px: Optional[BBox] = None
    keypoints: Optional[dict[str, list[float]]] = Field(None, description="name -> [x_px, y_px, confidence]")
    keypoints_3d: Optional[dict[str, list[float]]] = Field(None, description="name -> [x_m, y_m, z_m], hip-centred")
    angles_deg: dict[str, Optional[float]] = Field(default_factory=dict)
    angles_3d_deg: Optional[dict[str, Optional[float]]] = Field(
        None, description="Joint angles from keypoints_3d, degrees, same names and conventions as angles_deg (docs/biomechanics.md)")
    faults: dict[str, Optional[float]] = Field(default_factory=dict, description="fault type -> probability; "
                                                 "null: not judged on this frame (view, phase); empty: no verdict")
    activity: Optional[Literal["performing", "not_performing"]] = Field(
        None, description="Whether the athlete performs the exercise on this frame (null: no pose); faults are judged only while performing")
    view: Optional[Literal["front", "oblique", "side"]] = Field(None, description="Camera view estimated from the pose")
    phase: Optional[Literal["bottom"]] = Field(None, description="'bottom': at the bottom of a repetition (depth faults are judged here)")


class AthleteResult(_Doc):
    track_id: int
    is_target: bool
    choice_reason: Optional[str] = None
    frames: list[FrameResult]


class Suggestion(_Doc):
    exemplar_id: str
    title: str
    url: Optional[str] = Field(None, description="Presigned GET URL of the exemplar clip (expires)")
    video_key: str
    start_s: float
    end_s: float
    similarity: float = Field(ge=0, le=1)


class FaultResult(_Doc):
    type: str
    title: str
    track_id: int = 0
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_probability: float
    suggestions: list[Suggestion] = Field(default_factory=list)


class Artifact(_Doc):
    key: str
    url: Optional[str] = None
    content_type: str


class JumpResult(_Doc):
    takeoff_frame: int = Field(description="Last frame on the ground before the flight")
    landing_frame: int = Field(description="First frame back on the ground")
    takeoff_s: float
    landing_s: float
    flight_time_s: float
    height_m: Optional[float] = Field(None, description="g t^2 / 8 from the flight time t")
    com_rise_px: Optional[float] = Field(None, description="Centre of mass apex above its take-off height, pixels")
    com_rise_m: Optional[float] = None


class AngleSummary(_Doc):
    min_deg: Optional[float] = None
    max_deg: Optional[float] = None
    range_deg: Optional[float] = None
    peak_velocity_deg_s: Optional[float] = Field(None, description="Largest |angular velocity|")


class BiomechScale(_Doc):
    px_per_m: Optional[float] = Field(None, description="Median image scale at the athlete")
    source: Literal["given", "athlete_height", "world_landmarks", "none"]
    athlete_height_m: Optional[float] = None
    skeleton_stature_m: Optional[float] = Field(None, description="Standing height implied by the 3D skeleton")


class BiomechSeries(_Doc):
    """Per-frame series, one value per entry of athletes[0].frames (same order); null where unknown."""
    com_px: list[Optional[list[float]]] = Field(description="Filtered centre of mass [x_px, y_px]")
    com_velocity_px_s: list[Optional[list[float]]]
    com_speed_m_s: list[Optional[float]]
    px_per_m: list[Optional[float]]
    angles_3d_deg: dict[str, list[Optional[float]]] = Field(description="Filtered 3D joint angles")
    angular_velocity_deg_s: dict[str, list[Optional[float]]] = Field(description="d/dt of the 3D joint angles")
    joint_speed_px_s: dict[str, list[Optional[float]]]
    joint_speed_m_s: dict[str, list[Optional[float]]]
    airborne: list[bool]


class Biomechanics(_Doc):
    fps: float
    filter: str = Field(description="Smoothing / differentiation applied to the series")
    com_model: str
    scale: BiomechScale
    angles: dict[str, AngleSummary] = Field(description="3D joint angle -> range of motion and peak angular velocity")
    peak_com_speed_px_s: Optional[float] = None
    peak_com_speed_m_s: Optional[float] = None
    jumps: list[JumpResult] = Field(default_factory=list)
    bone_length_cv: dict[str, Optional[float]] = Field(
        default_factory=dict, description="3D bone -> coefficient of variation of its length over frames (plausibility)")
    series: BiomechSeries


class Judgement(_Doc):
    """How far the faults can be trusted, and what the judge could not judge."""
    synthetic: bool = Field(description="Fault models trained on synthetic poses labelled by criteria, not expert labels")
    label_source: str = ""
    finding: Optional[str] = Field(None, description="Set when the exercise was never performed; faults is then empty")
    frames_performing: int = Field(0, ge=0)
    not_judgeable: list[NotJudgeable] = Field(default_factory=list)


class _ResultHead(_Doc):
    """The fields result.json and its summary share (AnalysisResult, ResultSummary): all but the athletes'
    per-frame lists and the biomechanics' series, which each declares in its own form."""
    schema_: str = Field(alias="schema")   # each document's own Literal; declared here so that it stays first
    id: str
    sport: str
    video: VideoInfo
    faults: list[FaultResult]
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="stage -> model name/version used: pose_model (COACH_POSE_MODEL, e.g. "
                                   "mediapipe-blazepose-heavy-0.10.21), refiner, judge, exemplars")
    repetitions: Optional[list[Repetition]] = Field(
        None, description="Exercise sports: repetitions with quality and attention (docs/judge.md, Judge over time)")
    score: Optional[ActionScore] = Field(None, description="Exercise sports: action score 0-100 against exemplars of known score")
    judgement: Optional[Judgement] = Field(None, description="Trust in the faults: label source, finding, not judgeable stretches")
    revision: int = Field(0, ge=0, description="0 or 1 for the analysis (1: the tracker re-sent its clips for the "
                          "athlete chosen over the whole clip), +1 per user's athlete switch (POST "
                          "/v1/analyses/{id}/athlete): athletes[0] is then the person they chose")


class AnalysisResult(_ResultHead):
    schema_: Literal["coach.result/2"] = Field("coach.result/2", alias="schema")
    athletes: list[AthleteResult]
    biomechanics: Optional[Biomechanics] = Field(None, description="Angles, velocities, centre of mass, jumps (docs/biomechanics.md)")


# -- the result in pages (#17): a small summary, and the per-frame part in columnar chunks ------------
# Written by suggest beside result.json (which stays whole for integrators); read by the gateway's
# GET /v1/analyses/{id}/result?frames=none and GET /v1/analyses/{id}/frames (shared/result_pages.py).

class AthleteSummary(_Doc):
    """An athlete of the result without its per-frame list: how many frames, and which."""
    track_id: int
    is_target: bool
    choice_reason: Optional[str] = None
    frame_count: int = Field(ge=0, description="Entries in the athlete's per-frame list")
    frames_seen: int = Field(ge=0, description="Frames with a box (bbox_px)")
    frames_posed: int = Field(ge=0, description="Frames with a pose (keypoints)")
    first_seen_frame: Optional[int] = Field(None, description="First frame with a box (null: never seen)")
    last_seen_frame: Optional[int] = Field(None, description="Last frame with a box")


class BiomechanicsSummary(_Doc):
    """`biomechanics` without its per-frame `series` (those are in the frame pages)."""
    fps: float
    filter: str
    com_model: str
    scale: BiomechScale
    angles: dict[str, AngleSummary]
    peak_com_speed_px_s: Optional[float] = None
    peak_com_speed_m_s: Optional[float] = None
    jumps: list[JumpResult] = Field(default_factory=list)
    bone_length_cv: dict[str, Optional[float]] = Field(default_factory=dict)


class FramePaging(_Doc):
    """Where the per-frame data is: GET /v1/analyses/{id}/frames?start=S&count=N, frame indices [start, end)."""
    start: int = Field(ge=0, description="First frame index of the athlete's per-frame list")
    end: int = Field(ge=0, description="One past its last frame index")
    chunk_frames: int = Field(ge=1, description="Frames per stored chunk (result-frames/NNNNN.json covers "
                              "frame indices [N*chunk_frames, (N+1)*chunk_frames)); a good page size")
    chunks: int = Field(ge=0, description="Number of stored chunks")


class ResultSummary(_ResultHead):
    """result.json without its per-frame arrays (athletes[].frames, biomechanics.series): what a page
    shows before any frame (analyses/<id>/result-summary.json; ?frames=none)."""
    schema_: Literal["coach.result-summary/1"] = Field("coach.result-summary/1", alias="schema")
    athletes: list[AthleteSummary]
    biomechanics: Optional[BiomechanicsSummary] = None
    frame_paging: FramePaging


class OtherAthleteFrames(_Doc):
    """Another person's frames in the page, as columns (one entry per frame)."""
    track_id: int
    index: list[int]
    t_s: list[float]
    bbox_px: list[Optional[BBox]]


Column = list[Optional[float]]


class ResultFrames(_Doc):
    """The per-frame part of the result for frame indices [start, start + count), as columns: every
    list holds one entry per frame of the athlete in that range, in `index` order (a frame's row
    of result.json is entry i of every column). Stored in chunks of FramePaging.chunk_frames
    (analyses/<id>/result-frames/NNNNN.json) and answered by GET /v1/analyses/{id}/frames."""
    schema_: Literal["coach.result-frames/1"] = Field("coach.result-frames/1", alias="schema")
    id: str
    revision: int = Field(0, ge=0)
    start: int = Field(ge=0, description="First frame index asked for / covered")
    count: int = Field(ge=0, description="Frame indices covered: [start, start + count)")
    end: int = Field(ge=0, description="One past the last frame index of the whole result (page until start >= end)")
    track_id: Optional[int] = Field(None, description="The athlete (athletes[0] of the result)")
    keypoint_names: list[str] = Field(description="Landmark order of the flat keypoint arrays")
    index: list[int]
    t_s: list[float]
    bbox_px: list[Optional[BBox]]
    keypoints: list[Optional[Column]] = Field(
        description="Per frame: [x_px, y_px, confidence] of each of keypoint_names, flat (3 per landmark; null "
                    "for a landmark not seen); null: no pose on this frame")
    keypoints_3d: list[Optional[Column]] = Field(description="Per frame: [x_m, y_m, z_m] per landmark, flat, as keypoints")
    angles_deg: dict[str, Column] = Field(default_factory=dict, description="angle name -> value per frame")
    angles_3d_deg: Optional[dict[str, Column]] = Field(
        None, description="angle name -> value per frame; null: no 3D angles in the result at all")
    angles_3d_present: Optional[list[bool]] = Field(None, description="Per frame: whether the frame has 3D angles")
    judged: list[bool] = Field(description="Per frame: the judge gave a verdict (faults non-empty in result.json)")
    faults: dict[str, Column] = Field(default_factory=dict, description="fault type -> probability per frame "
                                      "(null: not judged on this frame)")
    activity: list[Optional[Literal["performing", "not_performing"]]]
    view: list[Optional[Literal["front", "oblique", "side"]]]
    phase: list[Optional[Literal["bottom"]]]
    biomechanics: Optional[BiomechSeries] = Field(None, description="biomechanics.series for these frames")
    others: list[OtherAthleteFrames] = Field(default_factory=list, description="Everybody else followed in these frames")
