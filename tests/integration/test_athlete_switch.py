"""Athlete switch end to end (issue 15): analyse a real clip with several people, make another of
them the athlete through the API, and check what a user and an integrator see afterwards."""
from __future__ import annotations

import time

import pytest

from coach.client import wait
from shared.messages import AnalysisVerdict

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def walkers(gateway, analyse_vtest_head):
    """The first 6 s of vtest.avi (pedestrians crossing: the tracker keeps 4 people >= 1 s), analysed."""
    aid = analyse_vtest_head(6)
    return aid, gateway.get(f"/v1/analyses/{aid}/result").json()


def test_another_person_becomes_the_athlete(coach_stack, gateway, walkers, read_topic):
    aid, before = walkers
    first, others = before["athletes"][0], before["athletes"][1:]
    assert first["is_target"] and len(others) >= 1, "vtest's walkers: more than one person in the result"
    ids = sorted(a["track_id"] for a in before["athletes"])
    # the person seen in most frames among the others
    new = max(others, key=lambda a: len(a["frames"]))
    new_boxes = {f["index"]: f["bbox_px"] for f in new["frames"]}

    # bad input first: an id nobody has, an analysis nobody has
    r = gateway.post(f"/v1/analyses/{aid}/athlete", json={"track_id": 9999})
    assert r.status_code == 422, r.text
    assert "track 9999" in r.json()["detail"] and f"valid track ids: {', '.join(map(str, ids))}" in r.json()["detail"]
    assert gateway.post(f"/v1/analyses/{'0' * 32}/athlete", json={"track_id": new["track_id"]}).status_code == 404
    assert gateway.post(f"/v1/analyses/{aid}/athlete", json={}).status_code == 422
    as_json = {"Content-Type": "application/json"}
    assert gateway.post(f"/v1/analyses/{aid}/athlete", content=b"track=3", headers=as_json).status_code == 422
    garbled = gateway.post(f"/v1/analyses/{aid}/athlete", content=b"\xd8\x00\xff", headers=as_json)   # not even text
    assert garbled.status_code == 422 and "not valid JSON" in garbled.json()["detail"], garbled.text
    # the current athlete again: nothing to do
    # (the analysis's own revision is 0, or 1 where the tracker re-sent its clips for the athlete
    # chosen over the whole clip instead of the provisional one it streamed)
    rev = before["revision"]
    same = gateway.post(f"/v1/analyses/{aid}/athlete", json={"track_id": first["track_id"]})
    assert same.status_code == 200 and same.json()["revision"] == rev, same.text

    started = time.monotonic()
    r = gateway.post(f"/v1/analyses/{aid}/athlete", json={"track_id": new["track_id"]})
    assert r.status_code == 202, r.text
    assert r.json()["track_id"] == new["track_id"] and r.json()["revision"] == rev + 1
    assert gateway.get(f"/v1/analyses/{aid}").json()["status"] == "running"
    busy = gateway.post(f"/v1/analyses/{aid}/athlete", json={"track_id": first["track_id"]})
    assert busy.status_code == 409 and "running" in busy.json()["detail"], busy.text
    assert gateway.get(f"/v1/analyses/{aid}/result").status_code == 409, "no stale result while it re-runs"

    st = wait(gateway, aid, 600)
    assert st["status"] == "done", st
    took = time.monotonic() - started
    after = gateway.get(f"/v1/analyses/{aid}/result").json()
    athlete = after["athletes"][0]
    assert athlete["track_id"] == new["track_id"] and athlete["is_target"], "the chosen person is the athlete now"
    assert athlete["choice_reason"] == "chosen by the user"
    assert after["revision"] == rev + 1
    assert [f["index"] for f in athlete["frames"]] == list(range(before["video"]["frames"])), "every frame once"
    boxed = {f["index"]: f["bbox_px"] for f in athlete["frames"] if f["bbox_px"] is not None}
    assert boxed == new_boxes, "their own boxes, where they were seen, and nobody else's"
    posed = [f for f in athlete["frames"] if f["keypoints"]]
    assert len(posed) > 0.5 * len(boxed), f"posed on {len(posed)} of {len(boxed)} frames with the new athlete"

    def near(f):   # the hip within a box width of the person's box (vtest's walkers are ~35 px wide)
        x, y, w, h = f["bbox_px"]
        hx, hy = f["keypoints"]["left_hip"][:2]
        return x - w <= hx <= x + 2 * w and y - h / 2 <= hy <= y + 1.5 * h

    assert sum(map(near, posed)) >= 0.9 * len(posed), "the poses are of the person in the box"
    rest = {a["track_id"]: a for a in after["athletes"][1:]}
    assert first["track_id"] in rest and not rest[first["track_id"]]["is_target"], "the old athlete is among the others"
    assert len(rest[first["track_id"]]["frames"]) > 0 and not any(f.get("keypoints") for f in rest[first["track_id"]]["frames"])
    assert sorted(rest) == sorted(set(ids) - {new["track_id"]})

    # integrators: a second verdict for the same analysis, naming the new target and revision
    settings = coach_stack.settings
    [old_v] = read_topic(settings, settings.topics.verdicts, AnalysisVerdict, 1,
                         want=lambda m: m.analysis_id == aid and m.revision == rev)
    [new_v] = read_topic(settings, settings.topics.verdicts, AnalysisVerdict, 1,
                         want=lambda m: m.analysis_id == aid and m.revision == rev + 1)
    assert old_v.track_id == first["track_id"] and new_v.track_id == new["track_id"]

    # storage: the first athlete's video segments and the biomechanics computed ahead are swept once
    # the new result is stored (just after "done"): what is left under render/ is the new video's clips
    from shared.documents import TrackingDocument
    from shared.store import ObjectStore, keys

    store = ObjectStore(settings)
    clips = TrackingDocument.read(store, keys.tracking(aid)).clip_count
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(store.list(keys.render_prefix(aid))) != clips
                                           or store.list(keys.biomech_ahead_prefix(aid))):
        time.sleep(0.5)
    assert len(store.list(keys.render_prefix(aid))) == clips, store.list(keys.render_prefix(aid))
    assert store.list(keys.biomech_ahead_prefix(aid)) == []
    print(f"switch took {took:.1f} s")
