"""The annotated video in segments (services/suggest/annotate.py, issue 17): segment keys name exactly
what is drawn, the final render reuses pre-rendered segments and renders only what changed, and the
joined video plays like a serial render (needs /usr/bin/ffmpeg and ffprobe)."""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.suggest import annotate
from services.suggest.worker import SegmentRenderer, render_annotated
from shared.documents import PoseFrame
from shared.skeleton import LANDMARK_INDEX
from shared.store import keys
from shared.testing import MemoryStore

W, H, FPS = 320, 240, 10.0
CLIPS = [(0, 8), (8, 32), (32, 45)]          # the tracker's layout: a short first clip, then 24 + a tail
AID = "a" * 32
SHOULDER = LANDMARK_INDEX["left_shoulder"]


def _frame(i: int, with_pose: bool = True) -> PoseFrame:
    """A standing figure walking right by 2 px a frame."""
    kps = None
    if with_pose:
        kps = [None] * 33
        x = 100.0 + 2 * i
        for name, (dx, dy) in {"left_shoulder": (0, 60), "right_shoulder": (30, 60), "left_hip": (3, 120),
                               "right_hip": (27, 120), "left_knee": (3, 165), "right_knee": (27, 165),
                               "left_ankle": (3, 210), "right_ankle": (27, 210)}.items():
            kps[LANDMARK_INDEX[name]] = [x + dx, float(dy), 0.9]
    return PoseFrame(index=i, t_s=i / FPS, bbox_px=[90.0 + 2 * i, 50.0, 50.0, 170.0], track_state="tracked",
                     track_score=1.0, keypoints=kps, keypoints_3d=None)


def _clips() -> list[list[PoseFrame]]:
    return [[_frame(i, with_pose=i != 20) for i in range(a, b)] for a, b in CLIPS]


def _image(i: int) -> np.ndarray:
    """A textured frame (an encoder has something to do), different every frame."""
    rng = np.random.default_rng(i)
    img = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (9, 9), 0)
    cv2.circle(img, (40 + 3 * i, 200), 15, (200, 180, 20), -1)
    return img


def _flags(faulty: range = range(10, 14), not_judged: range = range(36, 40)) -> dict[int, bool | None]:
    return {i: None if i in not_judged else i in faulty for i in range(45)}


def _store_frames(store: MemoryStore) -> None:
    for i in range(45):
        store.put_bytes(keys.frame(AID, i), cv2.imencode(".jpg", _image(i), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())


# ---------------------------------------------------------------------------- keys


def test_a_segment_key_changes_with_what_is_drawn_and_only_with_it():
    clip = _clips()[1]
    flags = [_flags()[f.index] for f in clip]
    base = annotate.content_hash(clip, flags, 0, FPS, W, H)
    assert base == annotate.content_hash(_clips()[1], list(flags), 0, FPS, W, H)    # redelivery: same key
    one_red = list(flags)
    one_red[5] = not one_red[5]
    moved = [f.model_copy(update={"keypoints": [None if r is None else [r[0] + 0.5, r[1], r[2]] for r in f.keypoints]})
             if f.index == 15 else f for f in clip]
    boxed = [f.model_copy(update={"bbox_px": [1.0, 1.0, 5.0, 5.0]}) if f.index == 9 else f for f in clip]
    changed = {annotate.content_hash(clip, one_red, 0, FPS, W, H),      # one frame turns red
               annotate.content_hash(moved, flags, 0, FPS, W, H),       # one joint moves half a pixel
               annotate.content_hash(boxed, flags, 0, FPS, W, H),       # a box moves
               annotate.content_hash(clip, flags, 1, FPS, W, H),        # an athlete switch (revision 1)
               annotate.content_hash(clip, flags, 0, 25.0, W, H)}       # another frame rate
    assert base not in changed and len(changed) == 5
    # what is not drawn does not count: 3D keypoints and track scores
    hidden = [f.model_copy(update={"keypoints_3d": [[0.0, 0.0, 0.0]] * 33, "track_score": 0.2}) for f in clip]
    assert annotate.content_hash(hidden, flags, 0, FPS, W, H) == base
    assert keys.render_segment(AID, 8, base) == f"analyses/{AID}/render/000008-{base}.mp4"


def test_a_changed_colour_renames_only_its_own_clip():
    before = annotate.plan(_clips(), _flags(), 0, FPS, W, H)
    after = annotate.plan(_clips(), _flags(faulty=range(10, 15)), 0, FPS, W, H)   # frame 14 turns red
    assert [s.first_frame for s in before] == [0, 8, 32]
    assert [a.content_hash == b.content_hash for a, b in zip(before, after)] == [True, False, True]


# ---------------------------------------------------------------------------- render + join


def _probe(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                          "stream=codec_name,pix_fmt,width,height,avg_frame_rate,nb_read_frames:packet=pts_time,flags",
                          "-of", "json", str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def _decode(path) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def _colour_at_shoulder(img: np.ndarray, f: PoseFrame) -> str:
    x, y = (int(round(v)) for v in f.keypoints[SHOULDER][:2])
    b, g, r = img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(axis=0)
    return "red" if r > g + 80 else "green" if g > r + 80 else "grey" if abs(r - g) < 30 and abs(g - b) < 30 else "?"


def test_joined_segments_play_like_a_serial_render(tmp_path):
    clips, flags = _clips(), _flags()
    frames = [f for c in clips for f in c]
    serial = tmp_path / "serial.mp4"
    annotate.render(frames, [flags[f.index] for f in frames], _image, FPS, W, H, serial)
    parts = []
    for seg in annotate.plan(clips, flags, 0, FPS, W, H):
        parts.append(tmp_path / f"{seg.first_frame}.mp4")
        annotate.render(seg.frames, seg.flags, _image, FPS, W, H, parts[-1])
    joined = tmp_path / "joined.mp4"
    annotate.join(parts, joined)

    probe, ref = _probe(joined), _probe(serial)
    stream = probe["streams"][0]
    assert (stream["codec_name"], stream["pix_fmt"], stream["width"], stream["height"]) == ("h264", "yuv420p", W, H)
    assert stream["avg_frame_rate"] == ref["streams"][0]["avg_frame_rate"] == "10/1"
    assert int(stream["nb_read_frames"]) == int(ref["streams"][0]["nb_read_frames"]) == 45
    pts = [float(p["pts_time"]) for p in probe["packets"]]
    assert np.allclose(np.diff(sorted(pts)), 0.1, atol=1e-3)       # no gap or overlap at the joins
    keyframes = [round(float(p["pts_time"]) * FPS) for p in probe["packets"] if "K" in p["flags"]]
    assert {0, 8, 32} <= set(keyframes)                            # every segment starts with a keyframe
    data = joined.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")               # +faststart: plays while downloading

    a, b = _decode(joined), _decode(serial)
    assert len(a) == len(b) == 45
    # the same pictures up to the lossy encode: as close to the drawn frames as the serial render is
    truth = [annotate.draw_frame(_image(f.index), f, flags[f.index]) for f in frames]
    joined_db = [_psnr(x, t) for x, t in zip(a, truth)]
    serial_db = [_psnr(y, t) for y, t in zip(b, truth)]
    assert min(joined_db) > 30 and abs(np.mean(joined_db) - np.mean(serial_db)) < 1.0, (joined_db, serial_db)
    drawn = [_colour_at_shoulder(img, f) for img, f in zip(a, frames) if f.keypoints is not None]
    want = [{True: "red", False: "green", None: "grey"}[flags[f.index]] for f in frames if f.keypoints is not None]
    assert drawn == want


def test_the_final_render_reuses_pre_rendered_segments_and_renders_only_what_changed(tmp_path, monkeypatch):
    store = MemoryStore()
    _store_frames(store)
    renderer = SegmentRenderer()
    calls: list[int] = []
    real = annotate.render
    monkeypatch.setattr(annotate, "render", lambda frames, *a, **k: calls.append(frames[0].index) or real(frames, *a, **k))

    # a provisional verdict on the first two clips: pre-rendered with its flags
    provisional = {i: fl for i, fl in _flags(faulty=range(10, 13)).items() if i < 32}
    pre = annotate.plan(_clips()[:2], provisional, 0, FPS, W, H)
    (tmp_path / "pre").mkdir()
    assert len(renderer.ensure(store, AID, pre, FPS, W, H, tmp_path / "pre")) == 2
    assert calls == [0, 8]

    # the final verdict: clip 1 coloured differently (frame 13 red too), clip 2 new
    final = annotate.plan(_clips(), _flags(), 0, FPS, W, H)
    (tmp_path / "final").mkdir()
    out = tmp_path / "final" / "annotated.mp4"
    done = render_annotated(store, AID, final, FPS, W, H, out, renderer)
    assert (done["rendered"], done["reused"], done["rendered_from"]) == (2, 1, [8, 32])
    assert calls == [0, 8, 8, 32]
    assert int(_probe(out)["streams"][0]["nb_read_frames"]) == 45
    frames = [f for c in _clips() for f in c]
    assert _colour_at_shoulder(_decode(out)[13], frames[13]) == "red"      # the final verdict's colour

    # the same verdict again (redelivery, or another worker): nothing is rendered, same video
    (tmp_path / "again").mkdir()
    again = tmp_path / "again" / "annotated.mp4"
    assert render_annotated(store, AID, final, FPS, W, H, again, renderer)["rendered"] == 0
    assert calls == [0, 8, 8, 32]
    assert min(_psnr(x, y) for x, y in zip(_decode(out), _decode(again))) == 99.0

    # an athlete switch: every segment of the new revision is its own
    switched = annotate.plan(_clips(), _flags(), 1, FPS, W, H)
    (tmp_path / "switch").mkdir()
    assert render_annotated(store, AID, switched, FPS, W, H, tmp_path / "switch" / "a.mp4", renderer)["reused"] == 0


def test_a_pre_render_stops_when_the_final_verdict_takes_over(tmp_path):
    store = MemoryStore()
    _store_frames(store)
    segs = annotate.plan(_clips(), _flags(), 0, FPS, W, H)
    done = SegmentRenderer().ensure(store, AID, segs, FPS, W, H, tmp_path, stop=lambda: len(store.list(
        keys.render_prefix(AID))) >= 1)
    assert len(done) == 1 and len(store.list(keys.render_prefix(AID))) == 1


def test_joining_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError):
        annotate.join([], tmp_path / "x.mp4")


# ---------------------------------------------------------------------------- the handlers


@pytest.mark.parametrize("still", [False, True], ids=["squatting", "no-exercise"])
def test_partials_pre_render_the_video_and_the_final_verdict_renders_only_the_rest(monkeypatch, still):
    """Judge and suggest handlers on a synthetic squat posed clip by clip (in-memory store): each
    provisional verdict carries per-frame flags, suggest draws the clips it covers, and the final
    verdict renders only the clips posed after the last partial or coloured differently. When the
    partials find no exercise (`still`: the athlete stands still), each later clip is drawn grey as it
    is posed, and the final verdict, finding none either, draws nothing."""
    from synthetic_squat import store_synthetic_squat

    from services.judge.worker import JudgeStage
    from services.suggest.worker import SuggestStage
    from shared.documents import ClipPosesDocument, PartialVerdictDocument, TrackingDocument
    from shared.testing import handler_context

    store = MemoryStore()
    aid, _, message = store_synthetic_squat(store, faults={"shallow_depth": 65.0}, camera_yaw_deg=60.0)
    tracking = TrackingDocument.read(store, keys.tracking(aid))
    doc = ClipPosesDocument.read(store, keys.clip_poses(aid, 0))
    if still:
        doc = doc.model_copy(update={"frames": [f.model_copy(update={"keypoints": doc.frames[0].keypoints})
                                                for f in doc.frames]})
    n = len(doc.frames)
    spans = [(lo, min(lo + 32, n)) for lo in range(0, n, 32)]
    tracking = tracking.model_copy(update={"clip_count": len(spans), "clip_frames": 32})
    store.put_json(keys.tracking(aid), tracking)
    clip_docs = [doc.model_copy(update={"clip_index": k, "frames": doc.frames[a:b]}) for k, (a, b) in enumerate(spans)]
    del store.objects[keys.clip_poses(aid, 0)]

    calls: list[int] = []
    real = annotate.render
    monkeypatch.setattr(annotate, "render", lambda frames, *a, **k: calls.append(frames[0].index) or real(frames, *a, **k))
    jctx, sctx = handler_context("judge", store), handler_context("suggest", store)
    judge, suggest = JudgeStage(jctx.settings, store), SuggestStage(store)
    seen = 0
    for k, (a, b) in enumerate(spans):
        store.put_json(keys.clip_poses(aid, k), clip_docs[k])
        posed = message.model_copy(update={"clip_index": k, "first_frame": a, "frame_count": b - a,
                                           "poses_key": keys.clip_poses(aid, k)})
        judge.handle(posed, jctx)
        for _, _, p in jctx.emitted(jctx.settings.topics.partial_verdicts)[seen:]:
            stored = PartialVerdictDocument.read(store, keys.partial_verdict(aid))
            assert stored.frame_flags is not None and len(stored.frame_flags) == stored.frames_posed
            suggest.prerender(p, sctx)
            suggest.prerender(p, sctx)        # redelivered: nothing more is drawn
        seen = len(jctx.emitted(jctx.settings.topics.partial_verdicts))
        if k < len(spans) - 1:                # the last clip's message comes with the final verdict
            suggest.prerender_clip(posed, sctx)
    last = PartialVerdictDocument.read(store, keys.partial_verdict(aid))
    assert (last.finding is not None) == still
    pre_rendered = set(store.list(keys.render_prefix(aid)))
    assert calls and len(pre_rendered) == len(calls) >= last.clips_posed   # every posed clip, each drawn once
    calls.clear()

    [(_, _, final)] = jctx.emitted(jctx.settings.topics.verdicts)
    suggest.handle(final, sctx)
    final_keys = set(store.list(keys.render_prefix(aid))) - pre_rendered
    assert len(calls) == len(final_keys) <= len(spans) - 1       # the tail draws less than the whole video
    if still:   # every clip but the last was drawn grey while posed, and the final verdict agrees
        assert final.finding is not None and len(calls) == 1
    else:       # the clips no partial covered, at least
        assert len(calls) >= len(spans) - last.clips_posed
    assert store.get_bytes(keys.annotated_video(aid))[4:8] == b"ftyp"
    out = store.get_file(keys.annotated_video(aid), Path(tempfile.mkdtemp()) / "a.mp4")
    assert int(_probe(out)["streams"][0]["nb_read_frames"]) == n

    calls.clear()
    suggest.prerender(jctx.emitted(jctx.settings.topics.partial_verdicts)[-1][2], sctx)   # late redelivery
    assert calls == []                                           # the result is stored: nothing to pre-render
