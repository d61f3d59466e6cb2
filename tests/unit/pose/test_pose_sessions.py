"""BlazePose sessions across clips (services/pose/sessions.py): a clip that continues the previous one
keeps the graph's tracking and the tilt; anything else starts fresh, exactly as a whole new sequence."""
from __future__ import annotations

import os

import numpy as np
import pytest

from services.pose.lab.eval_swaps import NAVY_KEYS
from services.pose.sessions import PoseSessions
from shared.clips import clip_spans

FIRST, LAST = min(NAVY_KEYS), max(NAVY_KEYS)   # the navy-jacket walker's hand-labelled span (conftest.py navy_walker)

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
pytestmark = pytest.mark.skipif(not os.path.exists(VTEST), reason="apt-get install opencv-doc")


SPANS = clip_spans(LAST + 1 - FIRST, 32, 8)   # the worker's layout: [0, 8), [8, 32), [32, 61)


def _clipwise(est, frames, boxes, sessions: PoseSessions | None, key="a"):
    """The walker's frames posed clip by clip, as the worker does: (keypoints [T,33,3], continued per clip)."""
    out, continued = [], []
    for s, e in SPANS:
        if sessions is None:
            seq, c = est.estimate_sequence(frames[s:e], boxes[s:e]), False
        else:
            session, c = sessions.take(key, s)
            seq = est.estimate_sequence(frames[s:e], boxes[s:e], session)
            sessions.keep(key, session, e)
        out.append(seq.keypoints_px)
        continued.append(c)
    return np.concatenate(out), continued


def test_continued_clips_equal_one_whole_sequence_and_fresh_clips_do_not(estimator, navy_walker):
    """Posed clip by clip with a session, the walker gets the poses of one uninterrupted run over all
    61 frames; restarting at each clip (the old worker) gives other poses at the clip starts."""
    frames, boxes = navy_walker
    whole = estimator.estimate_sequence(frames, boxes).keypoints_px
    kept, continued = _clipwise(estimator, frames, boxes, PoseSessions(estimator, 2))
    assert continued == [False, True, True]
    np.testing.assert_allclose(kept, whole, atol=1e-3)
    fresh, _ = _clipwise(estimator, frames, boxes, None)
    starts = [s for s, _ in SPANS[1:]]
    assert np.nanmax(np.abs(fresh[starts] - whole[starts])[..., :2]) > 0.5, "a restarted graph re-detects the walker"


def test_a_clip_that_does_not_continue_starts_fresh(estimator, navy_walker):
    """A redelivered clip (its first frame is not the expected next one) and an athlete switch (another
    key) start from scratch: the same poses as a session-less call, whatever ran before."""
    frames, boxes = navy_walker
    sessions = PoseSessions(estimator, 2)
    s, e = SPANS[1]
    alone = estimator.estimate_sequence(frames[s:e], boxes[s:e]).keypoints_px
    _clipwise(estimator, frames, boxes, sessions)          # all three clips: the key now expects frame 61
    session, continued = sessions.take("a", s)            # clip 1 delivered again
    assert not continued
    np.testing.assert_allclose(estimator.estimate_sequence(frames[s:e], boxes[s:e], session).keypoints_px, alone, atol=1e-3)
    sessions.keep("a", session, e)
    session, continued = sessions.take("b", e)            # another revision / track at the next index
    assert not continued
    sessions.discard(session)


def test_interleaved_analyses_keep_their_own_sessions_within_the_cache(estimator, navy_walker):
    """Two analyses' clips alternating on one worker: with room for both, each continues its own session
    (graphs are not shared, so each equals its own whole run); with room for one, each clip starts fresh."""
    frames, boxes = navy_walker
    whole = estimator.estimate_sequence(frames, boxes).keypoints_px
    other = [f[:, ::-1].copy() for f in frames]               # analysis b: the mirrored video
    other_boxes = [np.array([768 - b[0] - b[2], b[1], b[2], b[3]]) for b in boxes]
    other_whole = estimator.estimate_sequence(other, other_boxes).keypoints_px
    for size, expect in ((2, [False, True, True]), (1, [False, False, False])):
        sessions = PoseSessions(estimator, size)
        got = {"a": [], "b": []}
        flags = {"a": [], "b": []}
        for s, e in SPANS:
            for key, (fr, bx) in (("a", (frames, boxes)), ("b", (other, other_boxes))):
                session, c = sessions.take(key, s)
                got[key].append(estimator.estimate_sequence(fr[s:e], bx[s:e], session).keypoints_px)
                flags[key].append(c)
                sessions.keep(key, session, e)
                assert len(sessions) <= size
        assert flags == {"a": expect, "b": expect}
        if size == 2:
            np.testing.assert_allclose(np.concatenate(got["a"]), whole, atol=1e-3)
            np.testing.assert_allclose(np.concatenate(got["b"]), other_whole, atol=1e-3)
        sessions.close()


def test_size_zero_never_continues(estimator, navy_walker):
    frames, boxes = navy_walker
    _, continued = _clipwise(estimator, frames, boxes, PoseSessions(estimator, 0))
    assert continued == [False, False, False]


def test_the_tilt_carries_across_a_clip_boundary_mid_flip():
    """The rotating athlete of services/pose/lab/eval_rotation.py (20 deg a frame) cut into the worker's
    clips, [0, 8) and [8, 30): clip 1 starts at 100 deg. Continuing the session, its first crop is turned
    upright as in the uncut run and every figure equals the uncut run's; restarted, it is not turned."""
    from services.pose.lab.eval_rotation import DEFAULT_VIDEO, run

    if not DEFAULT_VIDEO.exists():
        pytest.fail(f"{DEFAULT_VIDEO} missing: scripts/setup.sh installs the Sports2D demo clip")
    rows = {r["clips"]: r for r in run(steps=(20.0,), clips=True)["rows"] if r["align_rotated"]}
    same = ("coverage", "pck@0.2", "pck@0.2_inverted", "turned_passes")
    assert {k: rows["continued"][k] for k in same} == {k: rows["whole"][k] for k in same}
    assert rows["continued"]["coverage"] == 1.0
    assert rows["fresh"]["turned_passes"]["tried"] == rows["whole"]["turned_passes"]["tried"] - 1
