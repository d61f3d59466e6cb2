"""The result document of one analysis (`analyses/<id>/result.json`), versioned like the messages."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import BBox, VideoInfo


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FrameResult(_Doc):
    index: int = Field(ge=0)
    t_s: float = Field(ge=0)
    bbox_px: Optional[BBox] = None
    keypoints: Optional[dict[str, list[float]]] = Field(None, description="name -> [x_px, y_px, confidence]")
    keypoints_3d: Optional[dict[str, list[float]]] = Field(None, description="name -> [x_m, y_m, z_m], hip-centred")
    angles_deg: dict[str, Optional[float]] = Field(default_factory=dict)
    faults: dict[str, Optional[float]] = Field(default_factory=dict, description="fault type -> probability")


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


class AnalysisResult(_Doc):
    schema_: Literal["coach.result/1"] = Field("coach.result/1", alias="schema")
    id: str
    sport: str
    video: VideoInfo
    athletes: list[AthleteResult]
    faults: list[FaultResult]
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="stage -> model name/version used")
