"""The result in pages (#17): suggest stores a summary and columnar chunks of the per-frame data
beside result.json, the gateway answers ?frames=none and /frames pages from them (or, for a result
stored before chunks existed, out of result.json). On in-memory infrastructure (shared/testing.py);
tests/integration/test_integrators.py pages a real analysis through the real gateway."""
from __future__ import annotations

import copy
import json

import pytest
from synthetic_squat import store_synthetic_squat

from services.judge.worker import JudgeStage
from services.suggest.worker import SuggestStage
from shared import result_pages as rp
from shared.result import ResultFrames, ResultSummary
from shared.store import keys
from shared.testing import MemoryStore, handler_context


@pytest.fixture(scope="module")
def suggested():
    """Synthetic squats (230 frames: two chunks) judged, then suggest's result stored."""
    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store, faults={"shallow_depth": 65.0}, camera_yaw_deg=60.0)
    ctx = handler_context("judge", store)
    JudgeStage(ctx.settings, store).handle(message, ctx)
    [(_, _, verdict)] = ctx.emitted()
    SuggestStage(store).handle(verdict, handler_context("suggest", store))
    return store, aid, store.get_json(keys.result(aid))


def _size(obj) -> int:
    return len(json.dumps(obj, separators=(",", ":")))


def test_suggest_stores_a_summary_and_chunks_that_hold_every_frame(suggested):
    store, aid, result = suggested
    frames = result["athletes"][0]["frames"]
    n = len(frames)
    assert 200 < n < 400
    chunk_keys = store.list(keys.result_frames_prefix(aid))
    assert chunk_keys == [keys.result_frames(aid, 0), keys.result_frames(aid, 1)]
    chunks = [ResultFrames.model_validate(store.get_json(k)) for k in chunk_keys]
    assert [(c.start, c.count, len(c.index)) for c in chunks] == [(0, 200, 200), (200, 200, n - 200)]
    # the chunks, read back into rows, are the frames of result.json, value for value
    rows = [r for c in chunks for r in rp.frame_rows(c.model_dump(by_alias=True))]
    assert rows == frames
    assert any(r["faults"] for r in rows) and not all(r["faults"] for r in rows)   # judged, and not judged
    # the summary: everything but the per-frame arrays, a small fraction of the document
    summary = ResultSummary.model_validate(store.get_json(keys.result_summary(aid)))
    assert summary.frame_paging.model_dump() == {"start": 0, "end": n, "chunk_frames": 200, "chunks": 2}
    athlete = summary.athletes[0]
    assert (athlete.frame_count, athlete.frames_posed) == (n, sum(1 for f in frames if f["keypoints"]))
    assert [f.model_dump() for f in summary.faults] == [
        {k: v for k, v in f.items()} for f in result["faults"]] and summary.faults
    assert summary.biomechanics is not None and summary.biomechanics.angles == \
        ResultSummary.model_validate(rp.summarize(result)).biomechanics.angles
    assert _size(store.get_json(keys.result_summary(aid))) * 10 < _size(result)
    assert sum(_size(store.get_json(k)) for k in chunk_keys) < _size(result)   # columns are more compact than rows


def test_a_page_across_two_chunks_is_that_stretch_of_result_json(suggested):
    store, aid, result = suggested
    frames = result["athletes"][0]["frames"]
    n = len(frames)
    page = rp.read_frames(store, aid, 150, 100)
    ResultFrames.model_validate(page)
    assert page["index"] == list(range(150, min(n, 250))) and page["end"] == n
    assert rp.frame_rows(page) == frames[150:250]
    series = result["biomechanics"]["series"]
    assert page["biomechanics"]["com_px"] == series["com_px"][150:250]
    assert page["biomechanics"]["angles_3d_deg"]["knee_l"] == series["angles_3d_deg"]["knee_l"][150:250]
    # the same page when the result is paged out of result.json (what an older analysis gets)
    assert page == rp.frame_columns(result, 150, 100)
    past = rp.read_frames(store, aid, 400, 200)
    assert past["index"] == [] and past["end"] == n and rp.frame_rows(past) == []


def test_a_result_stored_before_chunks_existed_pages_the_same(suggested):
    store, aid, _ = suggested
    old = MemoryStore()
    old.objects.update({k: v for k, v in store.objects.items()
                        if not k.startswith(keys.result_frames_prefix(aid)) and k != keys.result_summary(aid)})
    assert rp.read_summary(old, aid) == store.get_json(keys.result_summary(aid))
    for start, count in ((0, 1000), (199, 2), (230, 50)):
        assert rp.read_frames(old, aid, start, count) == rp.read_frames(store, aid, start, count)


def test_a_summary_of_another_revision_than_the_finished_one_is_not_served(suggested):
    """Suggest writes chunks, then the summary, then result.json and its status: a summary that is not
    the finished revision (an athlete switch that stopped half way) is passed over for result.json."""
    store, aid, result = suggested
    mixed = MemoryStore()
    mixed.objects.update(store.objects)
    newer = {**result, "revision": 1, "athletes": [{**result["athletes"][0], "track_id": 7}]}
    mixed.put_json(keys.result(aid), newer)
    status = mixed.get_json(keys.status(aid, "suggest"))
    mixed.put_json(keys.status(aid, "suggest"), {**status, "result_revision": 1})
    assert rp.read_summary(mixed, aid)["athletes"][0]["track_id"] == 7
    assert rp.read_frames(mixed, aid, 0, 10)["track_id"] == 7


def _walk_result(n: int = 450) -> dict:
    """A hand-made result: the athlete on every frame (no pose on some), another person on frames
    190-259, biomechanics series; two fault types, judged on some frames."""
    kp = lambda i: {"nose": [float(i), 2.0, 0.9], "left_knee": [3.0, float(i) / 2, 0.75]}  # noqa: E731
    frames = [{"index": i, "t_s": round(i / 30, 4), "bbox_px": None if i % 7 == 0 else [1.0, 2.0, 3.0, 4.0],
               "keypoints": None if i % 7 == 0 else kp(i), "keypoints_3d": None if i % 7 == 0 else {"nose": [0.1, 0.2, 0.3]},
               "angles_deg": {"knee_l": None if i % 7 == 0 else float(i % 180), "knee_r": None},
               "angles_3d_deg": None if i % 5 == 0 else {"knee_l": 1.5, "knee_r": None},
               "faults": {} if i % 3 else {"a": 0.25, "b": None},
               "activity": "performing" if i % 3 == 0 else "not_performing", "view": "side", "phase": None}
              for i in range(n)]
    other = [{"index": i, "t_s": round(i / 30, 4), "bbox_px": [5.0, 6.0, 7.0, 8.0]} for i in range(190, 260)]
    series = {"com_px": [[float(i), 1.0] for i in range(n)], "com_velocity_px_s": [None] * n, "com_speed_m_s": [None] * n,
              "px_per_m": [100.0] * n, "angles_3d_deg": {"knee_l": [float(i) for i in range(n)]},
              "angular_velocity_deg_s": {"knee_l": [0.0] * n}, "joint_speed_px_s": {}, "joint_speed_m_s": {},
              "airborne": [False] * n}
    return {"schema": "coach.result/2", "id": "a" * 32, "sport": "squat", "revision": 0, "faults": [],
            "video": {"fps": 30.0, "width": 64, "height": 48, "frames": n},
            "athletes": [{"track_id": 1, "is_target": True, "choice_reason": "moved most", "frames": frames},
                         {"track_id": 4, "is_target": False, "frames": other}],
            "biomechanics": {"fps": 30.0, "filter": "f", "com_model": "c", "scale": {"source": "none"}, "angles": {},
                             "series": series}}


def test_pages_cut_out_of_chunks_equal_pages_built_from_the_whole_result():
    result = _walk_result()
    chunks = [c.model_dump(by_alias=True) for c in rp.chunks(result)]
    assert len(chunks) == 3
    for start, count in ((150, 100), (0, 450), (199, 1), (260, 1000), (449, 5)):
        numbers = list(rp.chunk_numbers(start, count))
        page = rp.join_pages([chunks[k] for k in numbers if k < 3], start, count)
        assert page == rp.frame_columns(result, start, count), (start, count)
        ResultFrames.model_validate(page)
        frames = [f for f in result["athletes"][0]["frames"] if start <= f["index"] < start + count]
        assert rp.frame_rows(page) == frames
    page = rp.join_pages(chunks[0:2], 150, 100)
    [other] = page["others"]
    assert other["track_id"] == 4 and other["index"] == list(range(190, 250))
    assert page["biomechanics"]["angles_3d_deg"]["knee_l"] == [float(i) for i in range(150, 250)]
    # flat keypoints: 3 values per landmark in keypoint_names order, null for one not seen
    names, kp = page["keypoint_names"], page["keypoints"][1]   # frame 151
    assert kp[3 * names.index("nose"):3 * names.index("nose") + 3] == [151.0, 2.0, 0.9]
    assert kp[3 * names.index("right_knee"):3 * names.index("right_knee") + 3] == [None, None, None]
    assert page["keypoints"][4] is None                          # frame 154: no pose


def test_the_summary_counts_each_person_instead_of_listing_their_frames():
    result = _walk_result()
    summary = ResultSummary.model_validate(rp.summarize(result))
    me, other = summary.athletes
    assert (me.frame_count, me.frames_seen, me.frames_posed) == (450, 450 - 65, 450 - 65)
    assert (other.frame_count, other.first_seen_frame, other.last_seen_frame) == (70, 190, 259)
    assert summary.frame_paging.chunks == 3 and "series" not in summary.biomechanics.model_dump()
    assert copy.deepcopy(result) == _walk_result()    # the result itself is left as it was


def test_the_gateway_answers_pages_and_refuses_oversized_ones(suggested, monkeypatch):
    from fastapi.testclient import TestClient

    import services.gateway.app as gateway_app
    from shared.settings import Settings

    store, aid, result = suggested
    monkeypatch.setattr(gateway_app, "ObjectStore", lambda settings: store)
    app = gateway_app.create_app(Settings().with_(gateway_host="127.0.0.1", allow_keyless=True))
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        summary = client.get(f"/v1/analyses/{aid}/result?frames=none")
        assert summary.status_code == 200, summary.text
        assert summary.json()["frame_paging"]["chunks"] == 2 and "frames" not in summary.json()["athletes"][0]
        assert summary.json()["artifacts"]["annotated_video"]["url"]   # presigned afresh, as the full result
        page = client.get(f"/v1/analyses/{aid}/frames", params={"start": 100, "count": 120})
        assert page.status_code == 200 and rp.frame_rows(page.json()) == result["athletes"][0]["frames"][100:220]
        too_many = client.get(f"/v1/analyses/{aid}/frames", params={"start": 0, "count": 1001})
        assert too_many.status_code == 422 and "at most 1000 frames" in too_many.json()["detail"]
        assert client.get(f"/v1/analyses/{aid}/result", params={"frames": "some"}).status_code == 422
        assert client.get(f"/v1/analyses/{'0' * 32}/frames").status_code == 404
