"""What is left of the tail after the final verdict (issue 17): biomechanics computed when the last
clip is posed and reused by the final verdict when the poses match; superseded render segments
and biomechanics swept once the result is stored."""
from __future__ import annotations

import json

import numpy as np
import pytest

from services.suggest import biomech_report as rep
from services.suggest.worker import sweep
from shared.documents import ChosenAthlete, PoseFrame, TrackingDocument
from shared.messages import VideoInfo
from shared.result import AnalysisResult
from shared.skeleton import NUM_LANDMARKS
from shared.store import keys
from shared.testing import MemoryStore

AID = "a" * 32
FPS = 30.0


def _frames(n: int = 60, seed: int = 3, shift_px: float = 0.0) -> list[PoseFrame]:
    """A skeleton bobbing up and down (2D in px, 3D in metres), one frame without a pose."""
    rng = np.random.default_rng(seed)
    world = rng.normal(0.0, 0.3, (NUM_LANDMARKS, 3))
    out = []
    for t in range(n):
        if t == 7:
            out.append(PoseFrame(index=t, t_s=round(t / FPS, 4)))
            continue
        dy = 0.1 * np.sin(t / 5.0)
        w = world + [0.0, dy, 0.0]
        k = np.c_[w[:, :2] * 200.0 + [320.0 + shift_px, 240.0], np.full(NUM_LANDMARKS, 0.9)]
        out.append(PoseFrame(index=t, t_s=round(t / FPS, 4), bbox_px=[100.0, 40.0, 400.0, 400.0],
                             keypoints=np.round(k, 3).tolist(), keypoints_3d=np.round(w, 4).tolist()))
    return out


def _result(frames: list[PoseFrame]) -> AnalysisResult:
    return AnalysisResult(id=AID, sport="squat", video=VideoInfo(fps=FPS, width=640, height=480, frames=len(frames)),
                          athletes=[{"track_id": 0, "is_target": True,
                                     "frames": [{"index": f.index, "t_s": f.t_s} for f in frames]}], faults=[])


def _biomech_objects(store: MemoryStore) -> dict[str, bytes]:
    return {k: v for k, v in store.objects.items() if "/biomech/" in k}


def test_biomechanics_computed_ahead_are_reused_when_the_poses_match(monkeypatch):
    frames = _frames()
    today, ahead_store = MemoryStore(), MemoryStore()
    as_today = _result(frames)
    assert rep.attach_biomechanics(today, AID, as_today, frames, FPS) == "computed"

    ahead = rep.Ahead()
    assert ahead.compute(ahead_store, AID, frames, FPS) == "computed"
    assert ahead.compute(ahead_store, AID, frames, FPS) == "stored already"   # a redelivered last clip
    monkeypatch.setattr(rep, "build", lambda *a, **k: pytest.fail("computed again although stored ahead"))
    reused = _result(frames)
    assert rep.attach_biomechanics(ahead_store, AID, reused, frames, FPS, ahead=ahead) == "reused"

    # the result and its files are exactly what computing them at the final verdict gives
    assert reused.model_dump(mode="json") == as_today.model_dump(mode="json")
    assert any(f.angles_3d_deg for f in reused.athletes[0].frames)
    assert _biomech_objects(ahead_store) == _biomech_objects(today) and len(_biomech_objects(today)) == 3


@pytest.mark.parametrize("change", ["poses moved", "height given", "files missing", "section unreadable"])
def test_biomechanics_are_computed_as_before_when_what_was_stored_ahead_does_not_fit(change):
    stored_for, final = _frames(), _frames()
    store = MemoryStore()
    ahead = rep.Ahead()
    ahead.compute(store, AID, stored_for, FPS)
    if change == "poses moved":       # e.g. an athlete switch, or a clip posed again
        final = _frames(shift_px=0.5)
    elif change == "height given":
        from shared.documents import AnalysisRequest
        from shared.messages import utc_now
        store.put_json(keys.request(AID), AnalysisRequest(analysis_id=AID, sport="squat", submitted_at=utc_now(),
                                                          video=VideoInfo(fps=FPS, width=640, height=480, frames=60),
                                                          athlete_height_m=1.62))
    else:
        fp = rep.fingerprint(stored_for, FPS, None)
        if change == "files missing":     # a worker killed while storing them
            store.delete(keys.biomech_ahead(AID, fp, "com.png"))
        else:
            store.put_bytes(keys.biomech_ahead(AID, fp, rep.AHEAD_SECTION), b"{not json")

    got = _result(final)
    assert rep.attach_biomechanics(store, AID, got, final, FPS, ahead=ahead) == "computed"
    fresh = _result(final)
    rep.attach_biomechanics(MemoryStore() if change != "height given" else store, AID, fresh, final, FPS)
    assert got.model_dump(mode="json") == fresh.model_dump(mode="json")


def test_a_plot_failure_never_fails_the_analysis(monkeypatch):
    frames = _frames()
    store = MemoryStore()
    monkeypatch.setattr(rep, "plot_com", lambda *a: 1 / 0)
    assert rep.Ahead().compute(store, AID, frames, FPS).startswith("failed: ZeroDivisionError")   # logged
    assert store.list(keys.biomech_ahead_prefix(AID)) == []
    got = _result(frames)
    assert rep.attach_biomechanics(store, AID, got, frames, FPS, ahead=rep.Ahead()) == "failed"
    assert got.biomechanics is None and "biomech_csv" not in got.artifacts


# ---------------------------------------------------------------------------- the sweep

def _tracking(revision: int) -> TrackingDocument:
    return TrackingDocument(analysis_id=AID, frames=64, fps=FPS, width=640, height=480, clip_count=2, clip_frames=32,
                            athlete=ChosenAthlete(track_id=0, reason="test"), seconds=0.0, revision=revision)


def _segment(first: int, tag: str) -> str:
    return keys.render_segment(AID, first, (tag * 32)[:32])


def test_the_sweep_deletes_only_what_the_stored_result_does_not_use_and_is_idempotent():
    store = MemoryStore()
    store.put_json(keys.tracking(AID), _tracking(0))
    used = {_segment(0, "a"), _segment(32, "b")}
    superseded = [_segment(0, "c"), _segment(32, "d")]      # a provisional verdict's other colours
    ahead = keys.biomech_ahead(AID, "e" * 40, "frames.csv")
    others = [keys.annotated_video(AID), keys.biomech(AID, "frames.csv"), keys.result(AID),
              keys.render_segment("f" * 32, 0, "c" * 32)]       # beside it, and another analysis's segment
    for k in [*used, *superseded, ahead, *others]:
        store.put_bytes(k, b"x")
    assert sweep(store, AID, 0, used) == 3
    assert set(store.list(keys.render_prefix(AID))) == used
    assert store.list(keys.biomech_ahead_prefix(AID)) == []
    assert all(store.exists(k) for k in others)
    assert sweep(store, AID, 0, used) == 0                      # a redelivered verdict: nothing more


def test_the_sweep_of_an_older_revision_leaves_a_later_revisions_objects_alone():
    """The athlete was switched after the final verdict of revision 0: revision 1's pre-render has
    stored segments and biomechanics, which revision 0's result does not use."""
    store = MemoryStore()
    store.put_json(keys.tracking(AID), _tracking(1))
    used_by_0 = {_segment(0, "a")}
    of_1 = [_segment(0, "b"), keys.biomech_ahead(AID, "e" * 40, "section.json")]
    for k in [*used_by_0, _segment(32, "c"), *of_1]:
        store.put_bytes(k, b"x")
    assert sweep(store, AID, 0, used_by_0) == 0
    assert all(store.exists(k) for k in of_1)


def test_a_switch_between_the_listing_and_the_deletes_loses_nothing_of_the_later_revision():
    """The order the sweep relies on: list, then check the revision. A later revision's objects can only
    appear after tracking.json names it, so whatever appears after the listing is never deleted."""
    store = MemoryStore()
    store.put_json(keys.tracking(AID), _tracking(0))
    old = _segment(0, "c")
    store.put_bytes(old, b"x")
    real_list = store.list
    late = _segment(0, "d")

    def list_then_new_segment(prefix):   # revision 0 still current when listed; a segment stored right after
        names = real_list(prefix)
        if prefix == keys.render_prefix(AID) and not store.exists(late):
            store.put_bytes(late, b"x")
        return names
    store.list = list_then_new_segment
    assert sweep(store, AID, 0, set()) == 1
    assert not store.exists(old) and store.exists(late)


def test_a_sweep_that_fails_does_not_fail_the_analysis():
    store = MemoryStore()
    store.put_json(keys.tracking(AID), _tracking(0))
    store.put_bytes(_segment(0, "c"), b"x")

    def down(key):
        raise OSError("store down")
    store.delete = down
    assert sweep(store, AID, 0, set()) == 0


# ---------------------------------------------------------------------------- the handlers

def test_the_final_verdict_reuses_the_biomechanics_of_the_last_clip_and_leaves_no_superseded_objects(monkeypatch):
    """Judge and suggest handlers on a synthetic squat (in-memory store): the clip's `poses` message
    computes the biomechanics (the sequence is complete), the final verdict reuses them, its result is
    the one computed at the final verdict, and afterwards only the segments the video is made of
    remain under render/ (a stale one from a provisional guess is deleted)."""
    from synthetic_squat import store_synthetic_squat

    from services.judge.worker import JudgeStage
    from services.suggest.worker import SuggestStage
    from shared.testing import handler_context

    results = {}
    for mode in ("at the final verdict", "ahead"):
        store = MemoryStore()
        aid, _, message = store_synthetic_squat(store, faults={"shallow_depth": 65.0})
        jctx, sctx = handler_context("judge", store), handler_context("suggest", store)
        JudgeStage(jctx.settings, store).handle(message, jctx)
        [(_, _, final)] = jctx.emitted(jctx.settings.topics.verdicts)
        suggest = SuggestStage(store)
        stale = keys.render_segment(aid, 0, "0" * 32)
        store.put_bytes(stale, b"a guess the final colours superseded", "video/mp4")
        if mode == "ahead":
            suggest.biomech_ahead(message, sctx)
            suggest.biomech.settle()            # computed in a thread of its own
            assert len(store.list(keys.biomech_ahead_prefix(aid))) == 4
            monkeypatch.setattr(rep, "build", lambda *a, **k: pytest.fail("computed again at the final verdict"))
        suggest.handle(final, sctx)
        monkeypatch.undo()
        doc = {k: v for k, v in store.get_json(keys.result(aid)).items() if k != "timings_s"}   # seconds differ
        assert doc["biomechanics"] is not None and "biomech_csv" in doc["artifacts"]
        assert not store.exists(stale) and store.list(keys.biomech_ahead_prefix(aid)) == []
        assert len(store.list(keys.render_prefix(aid))) == 1 and store.exists(keys.annotated_video(aid))
        suggest.handle(final, sctx)                                    # redelivered: the same stored result
        assert {k: v for k, v in store.get_json(keys.result(aid)).items() if k != "timings_s"} == doc
        results[mode] = (json.loads(json.dumps(doc).replace(aid, "<id>")),   # keys name the analysis
                         store.get_bytes(keys.biomech(aid, "frames.csv")))
    (ahead, ahead_csv), (today, today_csv) = results["ahead"], results["at the final verdict"]
    assert [k for k in today if ahead.get(k) != today[k]] == [] and ahead == today and ahead_csv == today_csv
