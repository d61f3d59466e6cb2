"""The clip layout: where the tracker cuts an analysis's frames into TrackedClip messages.

Clips end at frame indices that are multiples of `clip_frames` (32), as always, so everything
keyed on those boundaries (the pose worker's refiner context from the previous clip, the STRN
evaluation's clip protocol) is unchanged. Only the first block of `clip_frames` may be cut once
more, after `first_clip_frames` (issue 17): a short first clip leaves the tracker and is posed
sooner, so the first provisional verdict comes earlier. Layout with clip_frames=32,
first_clip_frames=8: [0, 8), [8, 32), [32, 64), ... `first_clip_frames` 0 or >= clip_frames: no
extra cut (every analysis tracked before issue 17).

Pure functions, shared by the tracker (which cuts while it streams, and again on an athlete
switch) and the readers that estimate a clip count before tracking.json exists.
"""
from __future__ import annotations


def effective_first(clip_frames: int, first_clip_frames: int | None) -> int:
    """The first clip's length in frames (`clip_frames` when there is no extra cut)."""
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
    if not first_clip_frames or first_clip_frames >= clip_frames:
        return clip_frames
    if first_clip_frames < 0:
        raise ValueError(f"first_clip_frames must be >= 0, got {first_clip_frames}")
    return first_clip_frames


def clip_end(start: int, clip_frames: int, first_clip_frames: int | None = None) -> int:
    """The (exclusive) end of the clip that starts at frame `start` (a clip start of this layout),
    before the video's end is taken into account."""
    if start == 0:
        return effective_first(clip_frames, first_clip_frames)
    return (start // clip_frames + 1) * clip_frames


def clip_spans(frames: int, clip_frames: int, first_clip_frames: int | None = None) -> list[tuple[int, int]]:
    """[start, end) of every clip of an analysis of `frames` frames."""
    spans, start = [], 0
    while start < frames:
        end = min(frames, clip_end(start, clip_frames, first_clip_frames))
        spans.append((start, end))
        start = end
    return spans


def clip_count(frames: int, clip_frames: int, first_clip_frames: int | None = None) -> int:
    """How many clips an analysis of `frames` frames has (0 for none)."""
    if frames <= 0:
        return 0
    first = effective_first(clip_frames, first_clip_frames)
    if frames <= first:
        return 1
    return -(-frames // clip_frames) + (1 if first < clip_frames else 0)   # the first block cut in two
