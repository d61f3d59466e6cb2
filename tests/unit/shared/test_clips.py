"""The clip layout (shared/clips.py): a short first clip, then the cuts every clip_frames as before."""
from __future__ import annotations

import pytest

from shared.clips import clip_count, clip_spans
from shared.documents import TrackingDocument


@pytest.mark.parametrize("first", [0, 1, 8, 16, 31, 32, 40])
@pytest.mark.parametrize("frames", [0, 1, 7, 8, 9, 31, 32, 33, 64, 65, 100])
def test_every_frame_is_in_one_clip_and_later_cuts_stay_at_multiples_of_clip_frames(frames, first):
    spans = clip_spans(frames, 32, first)
    assert [i for a, b in spans for i in range(a, b)] == list(range(frames)), "every frame once, in order"
    assert clip_count(frames, 32, first) == len(spans), "the count the judge waits for is the count published"
    cuts = {a for a, _ in spans[1:]}
    short = first if 0 < first < 32 else None
    assert cuts == {i for i in range(1, frames) if i % 32 == 0 or i == short}


def test_a_short_first_clip_then_the_usual_boundaries():
    assert clip_spans(100, 32, 8) == [(0, 8), (8, 32), (32, 64), (64, 96), (96, 100)]
    assert clip_spans(100, 32, 0) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert clip_spans(100, 32, 32) == clip_spans(100, 32, 0), "no extra cut when the first clip is not shorter"
    assert clip_spans(5, 32, 8) == [(0, 5)]


def test_a_tracking_document_without_the_field_keeps_the_old_layout():
    base = {"analysis_id": "a" * 32, "frames": 70, "fps": 10.0, "width": 64, "height": 48, "clip_count": 3,
            "clip_frames": 32, "athlete": {"track_id": 0, "reason": "r", "candidates": []}}
    old = TrackingDocument.parse(base)
    assert old.first_clip_frames == 0 and old.clip_spans() == [(0, 32), (32, 64), (64, 70)]
    new = TrackingDocument.parse({**base, "clip_count": 4, "first_clip_frames": 8})
    assert new.clip_spans() == [(0, 8), (8, 32), (32, 64), (64, 70)] and len(new.clip_spans()) == new.clip_count
