"""Provisional verdicts while an analysis runs (services/judge/partial.py, issue 17), on in-memory
infrastructure (shared/testing.py): when the judge publishes one, what it withholds, and that the
final verdict comes as before. The real stack: tests/integration/test_partial_verdicts.py."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic_squat import store_synthetic_squat

from services.judge import partial
from services.judge.worker import JudgeStage
from shared.documents import ClipPosesDocument, PartialVerdictDocument, TrackingDocument
from shared.messages import AnalysisVerdict, ClipPoses, PartialVerdict
from shared.store import keys
from shared.testing import MemoryStore, handler_context

CLIP = 32


def _as_clips(store, aid: str, message: ClipPoses, clip_frames: int = CLIP, still: bool = False):
    """Re-store the synthetic analysis as the pose stage stores a real one: clips of `clip_frames`
    frames, no tracking.json yet (the tracker is still reading). `still`: the athlete stands still
    in the first frame's pose throughout (no squat is ever done). Returns (tracking, messages)."""
    tracking = TrackingDocument.read(store, keys.tracking(aid))
    del store.objects[keys.tracking(aid)]
    doc = ClipPosesDocument.read(store, keys.clip_poses(aid, 0))
    frames = doc.frames
    if still:
        frames = [f.model_copy(update={"keypoints": frames[0].keypoints}) for f in frames]
    messages = []
    for k, lo in enumerate(range(0, len(frames), clip_frames)):
        part = frames[lo:lo + clip_frames]
        store.put_json(keys.clip_poses(aid, k), doc.model_copy(update={"clip_index": k, "frames": part}))
        messages.append(message.model_copy(update={"clip_index": k, "first_frame": part[0].index,
                                                   "frame_count": len(part), "poses_key": keys.clip_poses(aid, k)}))
    posed = {keys.clip_poses(aid, k): store.objects.pop(keys.clip_poses(aid, k)) for k in range(len(messages))}
    return tracking.model_copy(update={"clip_count": len(messages), "clip_frames": clip_frames}), messages, posed


def _pose(store, posed, aid, k):
    store.objects[keys.clip_poses(aid, k)] = posed[keys.clip_poses(aid, k)]


@pytest.fixture(scope="module")
def streamed():
    """Synthetic shallow squats (8 s at 30 fps, 8 clips) posed one clip at a time, in order; the
    tracker's tracking.json arrives before the last clip, as it does in the pipeline."""
    store = MemoryStore()
    aid, n_reps, message = store_synthetic_squat(store, faults={"shallow_depth": 65.0}, camera_yaw_deg=60.0)
    tracking, messages, posed = _as_clips(store, aid, message)
    ctx = handler_context("judge", store)
    stage = JudgeStage(ctx.settings, store)
    after: list[list[PartialVerdict]] = []       # the partials published after each clip
    for k, msg in enumerate(messages):
        _pose(store, posed, aid, k)
        if k == len(messages) - 1:
            store.put_json(keys.tracking(aid), tracking)
        before = len(ctx.emitted(ctx.settings.topics.partial_verdicts))
        stage.handle(msg, ctx)
        after.append([m for _, _, m in ctx.emitted(ctx.settings.topics.partial_verdicts)][before:])
    return store, aid, n_reps, ctx, after, len(messages)


def test_the_schedule_is_the_first_clip_then_each_time_the_prefix_grew_by_half():
    made, last = [], None
    for ready in range(1, 30):
        seq = partial.due(ready, last, revision=0)
        if seq:
            made.append(ready)
            last = PartialVerdictDocument(analysis_id="a" * 32, sport="squat", model_version="v", sequence=seq,
                                          clips_posed=ready, frames_posed=ready * CLIP, posed_until_s=1.0,
                                          safe_until_s=0.0, faults=[], fault_types=[], synthetic=True)
    assert made == [1, 2, 3, 5, 8, 12, 18, 27]          # a handful, not one per clip
    assert partial.due(8, None, revision=0, clip_count=8) == 0      # complete: the final verdict instead
    assert partial.due(3, last, revision=1) == 1         # an athlete switch starts over
    newer = last.model_copy(update={"revision": 2})
    assert partial.due(40, newer, revision=1) == 0       # a stale revision makes none


def test_the_contiguous_prefix_stops_at_the_first_clip_not_posed():
    aid = "b" * 32
    listed = [keys.clip_poses(aid, k) for k in (0, 1, 3, 4)]
    assert partial.contiguous_clips(aid, listed) == 2
    assert partial.contiguous_clips(aid, listed, clip_count=1) == 1
    assert partial.contiguous_clips(aid, listed[1:]) == 0


def test_partials_come_while_clips_arrive_and_the_final_verdict_as_before(streamed):
    store, aid, n_reps, ctx, after, n_clips = streamed
    made = [k + 1 for k, ps in enumerate(after) if ps]
    assert made == [1, 2, 3, 5]                          # clips posed when one was published
    seqs = [p.sequence for ps in after for p in ps]
    assert seqs == [1, 2, 3, 4]
    # all before tracking.json: the default tracker has not chosen the athlete over the whole clip yet
    assert [p.athlete_settled for ps in after for p in ps] == [False] * 4
    assert after[-1] == []                               # the last clip: no partial, the final verdict
    [(topic, key, final)] = ctx.emitted(ctx.settings.topics.verdicts)
    assert key == aid and isinstance(final, AnalysisVerdict) and len(final.repetitions) == n_reps
    stored = PartialVerdictDocument.read(store, keys.partial_verdict(aid))
    assert stored.sequence == 4 and stored.clips_posed == 5 and stored.frames_posed == 5 * CLIP
    assert stored.clip_count is None and stored.frames_total == final.video.frames   # the upload's figure


def test_a_partial_lists_only_faults_that_ended_a_second_before_its_prefix_ends(streamed):
    store, aid, n_reps, ctx, after, _ = streamed
    [(_, _, final)] = ctx.emitted(ctx.settings.topics.verdicts)
    partials = [p for ps in after for p in ps]
    assert any(p.faults for p in partials) and any(p.withheld for p in partials)
    for p in partials:
        assert p.partial_key == keys.partial_verdict(aid)
        if p.finding:                                    # the first second or two: no squat yet, and no fault
            assert p.faults == [] and "no squat repetitions" in p.finding
        assert p.posed_until_s == pytest.approx(p.frames_posed / 30.0, abs=1e-3)
        assert p.safe_until_s == pytest.approx(p.posed_until_s - 1.0, abs=1e-3)
        for f in p.faults:
            assert f.end_s + 1 / 30.0 <= p.safe_until_s + 1e-6
            # what the athlete is told early is not taken back: the final verdict has that fault then too
            assert any(g.type == f.type and g.start_frame <= f.end_frame and g.end_frame >= f.start_frame
                       for g in final.faults), (f, final.faults)
        assert p.repetitions is not None and p.repetitions <= n_reps
        assert p.notes and p.notes[0].startswith("provisional")
    assert partials[-1].finding is None and partials[-1].repetitions >= 1   # 5.3 s of an 8 s clip of 3 squats


def test_a_prefix_without_the_exercise_says_so_and_invents_no_fault():
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store, faults={"shallow_depth": 65.0})
    _, messages, posed = _as_clips(store, aid, message, still=True)
    ctx = handler_context("judge", store)
    stage = JudgeStage(ctx.settings, store)
    for k in range(3):
        _pose(store, posed, aid, k)
        stage.handle(messages[k], ctx)
    partials = [m for _, _, m in ctx.emitted(ctx.settings.topics.partial_verdicts)]
    assert len(partials) == 3
    for p in partials:
        assert p.faults == [] and p.withheld == 0 and p.frames_performing == 0
        assert p.finding and "no squat repetitions" in p.finding
    assert ctx.emitted(ctx.settings.topics.verdicts) == []


def test_clips_posed_out_of_order_wait_for_the_missing_one():
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store)
    _, messages, posed = _as_clips(store, aid, message)
    ctx = handler_context("judge", store)
    stage = JudgeStage(ctx.settings, store)
    _pose(store, posed, aid, 1)
    stage.handle(messages[1], ctx)
    assert ctx.emitted() == []                           # clip 0 is not posed: nothing to judge yet
    _pose(store, posed, aid, 0)
    stage.handle(messages[0], ctx)
    [(_, _, p)] = ctx.emitted(ctx.settings.topics.partial_verdicts)
    assert p.clips_posed == 2 and p.frames_posed == 2 * CLIP


def test_a_clip_of_an_older_athlete_revision_ends_the_prefix():
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store)
    tracking, messages, posed = _as_clips(store, aid, message)
    for k in range(4):
        _pose(store, posed, aid, k)
    for k in (0, 1):   # re-posed for the switch (revision 1); clips 2, 3 still hold the old athlete
        doc = ClipPosesDocument.read(store, keys.clip_poses(aid, k))
        store.put_json(keys.clip_poses(aid, k), doc.model_copy(update={"revision": 1, "track_id": 4}))
    store.put_json(keys.tracking(aid), tracking.model_copy(update={"revision": 1}))
    ctx = handler_context("judge", store)
    JudgeStage(ctx.settings, store).handle(messages[1].model_copy(update={"revision": 1, "track_id": 4}), ctx)
    [(_, _, p)] = ctx.emitted(ctx.settings.topics.partial_verdicts)
    assert (p.revision, p.clips_posed, p.clip_count) == (1, 2, len(messages))
    ctx2 = handler_context("judge", store)
    JudgeStage(ctx2.settings, store).handle(messages[3], ctx2)    # revision 0: stale, dropped
    assert ctx2.emitted() == []


def test_a_failing_partial_never_fails_the_message():
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store)
    _, messages, posed = _as_clips(store, aid, message)
    del store.objects[keys.request(aid)]                 # nothing says the video's fps yet
    _pose(store, posed, aid, 0)
    ctx = handler_context("judge", store)
    JudgeStage(ctx.settings, store).handle(messages[0], ctx)
    assert ctx.emitted() == []
    st = store.get_json(keys.status(aid, "judge"))
    assert (st["state"], st["clips_posed"]) == ("waiting", 1)


def test_no_pose_yet_is_a_finding_not_a_fault():
    body = partial.provisional(None, [], list(range(64)), 30.0, 0, 300, exercise_sport=True)
    assert body["faults"] == [] and body["repetitions"] == 0
    assert body["finding"] == "no body pose found in the first 2.1 s yet"
    assert np.isclose(body["safe_until_s"], 64 / 30 - 1.0, atol=1e-3)


def test_a_fresh_worker_preloads_the_default_sport_and_shrugs_off_an_unknown_one():
    store = MemoryStore()
    stage = JudgeStage(handler_context("judge", store).settings, store)
    stage.warm("no_such_sport")                          # logged; the first analysis would say why
    assert stage.versions() == {}
    stage.warm("squat")
    assert "squat" in stage.versions()                   # the first partial will not wait for it
