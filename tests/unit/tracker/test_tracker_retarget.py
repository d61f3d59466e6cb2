"""Athlete switch on the tracker side (services/tracker/retarget.py) and the stale-revision guards
of the stages after it, with an in-memory store: no broker, no models."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from shared.documents import AnalysisRequest, AthleteSelection, StageStatus
from shared.messages import AthleteSelected, ClipPoses, TrackedClip, VideoInfo
from shared.settings import Settings
from shared.store import keys
from shared.testing import MemoryStore
from shared.worker import AnalysisFailed, Context

AID = "c" * 32


def _poses(k: int, revision: int, frames: range) -> dict:
    """A clip-poses document as the pose stage stores it (no pose found on any frame)."""
    return {"analysis_id": AID, "clip_index": k, "revision": revision, "pose_model": "m", "refiner": "none",
            "frames": [{"index": i, "t_s": i / 10, "keypoints": None} for i in frames]}


def _tracking(frames=70, clip_frames=32) -> dict:
    # athlete 0 walks through every frame; person 5 is there in frames 10..49 only
    return {"analysis_id": AID, "frames": frames, "fps": 10.0, "width": 768, "height": 576,
            "clip_count": -(-frames // clip_frames), "clip_frames": clip_frames,
            "athlete": {"track_id": 0, "reason": "moved most", "candidates": [{"track_id": 0}, {"track_id": 5}]},
            "athletes": [
                {"track_id": 0, "frames": list(range(frames)), "boxes_px": [[float(i), 10.0, 30.0, 80.0] for i in range(frames)],
                 "score": None, "seconds": frames / 10},
                {"track_id": 5, "frames": list(range(10, 50)), "boxes_px": [[500.0 - i, 20.0, 28.0, 84.0] for i in range(10, 50)],
                 "score": None, "seconds": 4.0}],
            "choice": {"track_id": 0, "reason": "moved most", "alternatives": [], "policy": "legacy"},
            "seconds": 1.0}


@pytest.fixture
def world():
    store = MemoryStore()
    store.put_json(keys.tracking(AID), _tracking())
    store.put_json(keys.request(AID), AnalysisRequest(analysis_id=AID, sport="squat", submitted_at="2026-01-01T00:00:00Z",
                                                      video=VideoInfo(fps=10.0, width=768, height=576)))
    for k in range(3):   # the previous athlete's poses
        store.put_json(keys.clip_poses(AID, k), _poses(k, 0, range(0)))
    ctx = Context("tracker", Settings(), store, producer=None, log=logging.getLogger("test"))
    emitted: list = []
    ctx.emit = lambda topic, m, key: emitted.append((topic, key, m))
    return store, ctx, emitted


def _select(store, track_id, revision):
    msg = AthleteSelected(analysis_id=AID, track_id=track_id, revision=revision)
    store.put_json(keys.selection(AID), AthleteSelection(revision=revision, track_id=track_id,   # as the gateway records it
                                                         requested_at=msg.requested_at, message=msg))
    return msg


def test_a_selection_makes_the_stored_person_the_athlete_and_republishes_their_clips(world):
    from services.tracker.retarget import USER_REASON, handle_selection

    store, ctx, emitted = world
    handle_selection(_select(store, 5, 1), ctx)

    doc = store.get_json(keys.tracking(AID))
    assert doc["revision"] == 1
    assert doc["athlete"]["track_id"] == 5 and doc["athlete"]["reason"] == USER_REASON
    assert doc["choice"]["reason"] == USER_REASON and doc["choice"]["previous"]["track_id"] == 0, "previous choice kept"
    assert [a["track_id"] for a in doc["athletes"]] == [5, 0], "the new athlete first, the old one still listed"
    assert store.list(keys.poses_prefix(AID)) == [], "the previous athlete's poses are gone"

    clips = [m for topic, key, m in emitted]
    assert all(topic == "clips" for topic, _, _ in emitted)
    assert [key for _, key, _ in emitted] == [f"{AID}:{k}" for k in range(3)]
    assert all(isinstance(c, TrackedClip) and c.revision == 1 and c.track_id == 5 for c in clips)
    assert [c.is_last for c in clips] == [False, False, True]
    frames = [f for c in clips for f in c.frames]
    assert [f.index for f in frames] == list(range(70)), "every frame once, in order, same clip cut"
    boxed = {f.index: f.bbox_px for f in frames if f.bbox_px is not None}
    assert sorted(boxed) == list(range(10, 50)), "boxes only where person 5 was seen"
    assert boxed[10] == [490.0, 20.0, 28.0, 84.0] and boxed[49] == [451.0, 20.0, 28.0, 84.0], "person 5's own boxes"
    st = store.get_json(keys.status(AID, "tracker"))
    assert st["state"] == "done" and st["revision"] == 1 and st["track_id"] == 5


def test_a_redelivered_selection_republishes_the_same_clips_without_changing_tracking(world):
    from services.tracker.retarget import handle_selection

    store, ctx, emitted = world
    msg = _select(store, 5, 1)
    handle_selection(msg, ctx)
    first_doc, first = store.get_json(keys.tracking(AID)), [m for *_, m in emitted]
    emitted.clear()
    handle_selection(msg, ctx)   # at least once: the worker died before committing
    assert store.get_json(keys.tracking(AID)) == first_doc
    assert [m for *_, m in emitted] == first


def test_a_stale_selection_is_dropped(world):
    from services.tracker.retarget import handle_selection

    store, ctx, emitted = world
    old = _select(store, 5, 1)
    handle_selection(_select(store, 0, 2), ctx)    # the user switched back; that one was applied
    emitted.clear()
    before = dict(store.objects)
    handle_selection(old, ctx)                     # revision 1 delivered late
    assert emitted == [] and store.objects == before, "nothing published, nothing written"
    assert store.get_json(keys.tracking(AID))["athlete"]["track_id"] == 0


def test_a_selection_the_gateway_has_since_replaced_is_dropped(world):
    from services.tracker.retarget import handle_selection

    store, ctx, emitted = world
    old = _select(store, 5, 1)
    _select(store, 0, 2)          # accepted by the gateway, not yet handled by the tracker
    handle_selection(old, ctx)
    assert emitted == [] and store.get_json(keys.tracking(AID)).get("revision", 0) == 0


def test_an_unknown_track_fails_naming_the_valid_ones(world):
    from services.tracker.retarget import handle_selection

    store, ctx, _ = world
    with pytest.raises(AnalysisFailed, match=r"track 9 is not among .*track ids: 0, 5"):
        handle_selection(_select(store, 9, 1), ctx)


def test_pose_drops_a_clip_of_a_replaced_athlete(world):
    from services.pose.worker import _stale
    from services.tracker.retarget import handle_selection

    store, ctx, emitted = world
    handle_selection(_select(store, 5, 1), ctx)
    new = emitted[0][2]
    old = new.model_copy(update={"revision": 0, "track_id": 0})
    assert _stale(ctx, old) and not _stale(ctx, new)


def test_judge_drops_stale_poses_and_never_mixes_revisions(world):
    from services.judge.worker import JudgeStage
    from shared.poses import NotAllPosed, load_sequence

    store, ctx, _ = world
    doc = _tracking()
    doc["revision"] = 1
    store.put_json(keys.tracking(AID), doc)
    ctx.service = "judge"
    stale = ClipPoses(analysis_id=AID, sport="squat", clip_index=0, first_frame=0, frame_count=32,
                      poses_key=keys.clip_poses(AID, 0), pose_model="m", refiner="none", frames_with_pose=0, revision=0)
    JudgeStage(store=store).handle(stale, ctx)
    assert not store.exists(keys.status(AID, "judge")) and not store.exists(keys.verdict(AID)), "stale: ignored"

    # three clip docs are there (count complete) but clip 1 is the previous athlete's: not judged yet
    for k in range(3):
        store.put_json(keys.clip_poses(AID, k), _poses(k, 0 if k == 1 else 1, range(32 * k, min(70, 32 * k + 32))))
    with pytest.raises(NotAllPosed, match="clip 1 was posed for athlete revision 0"):
        load_sequence(store, AID, 3, revision=1)
    fresh = stale.model_copy(update={"revision": 1, "clip_index": 2})
    JudgeStage(store=store).handle(fresh, ctx)
    st = store.get_json(keys.status(AID, "judge"))
    assert st["state"] == "waiting" and "clip 1" in st["note"] and not store.exists(keys.verdict(AID))
    frames, kps = load_sequence(store, AID, 3)     # without a revision: as before
    assert len(frames) == 70 and np.isnan(kps).all()


def test_an_analysis_reads_as_running_until_the_result_of_the_switch_is_stored():
    from shared.status import is_done

    def suggest(state, **revisions):
        return {"suggest": StageStatus(stage="suggest", state=state, fraction=1.0, updated_at="t", **revisions)}

    store = MemoryStore()
    store.put_json(keys.result(AID), {"revision": 0})
    done0 = suggest("done", revision=0, result_revision=0)
    assert is_done(store, AID, done0)
    store.put_json(keys.selection(AID), AthleteSelection(revision=1, track_id=5, requested_at="t"))
    assert not is_done(store, AID, done0), "switch accepted: the old result does not count"
    running = suggest("running", revision=1, result_revision=0)
    assert not is_done(store, AID, running), "suggest is on it, the stored result is still the old athlete's"
    assert is_done(store, AID, suggest("done", revision=1, result_revision=1))
    redelivered = suggest("running", revision=1, result_revision=1)
    assert is_done(store, AID, redelivered), "a redelivered verdict of the same revision: still done"
    # no switch ever: the old rule (a stored result is enough while a redelivery runs)
    store.delete_prefix(keys.selection(AID))
    assert is_done(store, AID, suggest("running"))


def test_a_switch_republishes_the_short_first_clip_layout_the_tracker_used(world):
    """tracking.json of a tracker with a short first clip (8 frames, then cuts at 32, 64): the
    republished clips have the same frames each, so the clip count and the pose worker's context
    (the previous clip's tail) line up as on the first pass."""
    from services.tracker.retarget import handle_selection

    store, ctx, emitted = world
    store.put_json(keys.tracking(AID), {**_tracking(), "first_clip_frames": 8, "clip_count": 4})
    handle_selection(_select(store, 5, 1), ctx)
    clips = [m for *_, m in emitted]
    assert [(c.frames[0].index, c.frames[-1].index) for c in clips] == [(0, 7), (8, 31), (32, 63), (64, 69)]
    assert [key for _, key, _ in emitted] == [f"{AID}:{k}" for k in range(4)]
    assert [c.is_last for c in clips] == [False, False, False, True]
    doc = store.get_json(keys.tracking(AID))
    assert doc["first_clip_frames"] == 8 and doc["clip_count"] == 4 == len(clips)
