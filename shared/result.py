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


class AnalysisResult(_Doc):
    schema_: Literal["coach.result/2"] = Field("coach.result/2", alias="schema")
    id: str
    sport: str
    video: VideoInfo
    athletes: list[AthleteResult]
    faults: list[FaultResult]
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="stage -> model name/version used: pose_model (COACH_POSE_MODEL, e.g. "
                                   "mediapipe-blazepose-heavy-0.10.21), refiner, judge, exemplars")
    biomechanics: Optional[Biomechanics] = Field(None, description="Angles, velocities, centre of mass, jumps (docs/biomechanics.md)")
    repetitions: Optional[list[Repetition]] = Field(
        None, description="Exercise sports: repetitions with quality and attention (docs/judge.md, Judge over time)")
    score: Optional[ActionScore] = Field(None, description="Exercise sports: action score 0-100 against exemplars of known score")
    judgement: Optional[Judgement] = Field(None, description="Trust in the faults: label source, finding, not judgeable stretches")
    revision: int = Field(0, ge=0, description="0 for the analysis; N after the user's N-th athlete switch "
                          "(POST /v1/analyses/{id}/athlete): athletes[0] is then the person they chose")
