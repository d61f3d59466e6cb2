"""What the athlete tracker returns: per-frame tracks, the other people, the athlete's choice."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class NoPersonFound(RuntimeError):
    """Nobody was detected in the video (raised by AthleteTracker.finish(), or by push() once
    `max_search_frames` frames went by without a detection, when that limit is set)."""



@dataclass
class PersonBox:
    """Someone other than the athlete in one frame."""
    track_id: int
    bbox_px: np.ndarray          # (4,) x, y, w, h
    score: float                 # template-match score 0..1 (1 = just detected)


@dataclass
class FrameTrack:
    index: int
    bbox_px: np.ndarray | None   # (4,) x,y,w,h floats in original pixels; None when the athlete is absent
    score: float                 # tracking confidence 0..1
    state: str                   # "detected" | "tracked" | "verified" | "redetected" | "lost"
    track_id: int | None = None  # the athlete's track id (AthleteChoice.track_id)
    people: list[PersonBox] = field(default_factory=list)   # the other people followed in this frame


@dataclass
class AthleteChoice:
    track_id: int
    reason: str                  # e.g. "moved most (312 px over 15 frames)" or "matched target_bbox (IoU 0.82)"
    candidates: list[dict]       # each {"track_id", "bbox_px", "motion_px", "score"} (+ "iou" with a target_bbox_px)
