"""Exemplar library: the build (lab code, lab/exemplars.py) gives playable MP4s that
match their stored keypoints and reproduces the shipped library; the service loads what was built."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from lab.exemplars import EXEMPLARS, SIZE, build, make_exemplar
from services.suggest.library import DEFAULT_ROOT, load_library
from services.suggest.retrieval import suggest
from shared.features import FEATURE_NAMES
from shared.skeleton import LANDMARK_INDEX as LI
from shared.video import read_frames

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("lib")
    manifest = build(out, sports=["squat", "plank"])
    return out, manifest


def read_all(path) -> list[np.ndarray]:
    return read_frames(cv2.VideoCapture(str(path)))


@needs_ffmpeg
def test_manifest_lists_written_files(lib):
    out, manifest = lib
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert "not real footage" in manifest["note"]
    ids = [e["id"] for e in manifest["exemplars"]]
    assert ids == ["squat_front", "squat_oblique", "plank_forearm_side", "plank_high_side"]
    for e in manifest["exemplars"]:
        assert (out / e["video"]).is_file() and (out / e["data"]).is_file()
        assert 2.0 <= e["duration_s"] <= 6.0
        assert e["bytes"]["video"] < 300_000


@needs_ffmpeg
def test_mp4s_play_with_right_frame_count_and_show_the_skeleton(lib):
    out, manifest = lib
    for e in manifest["exemplars"]:
        frames = read_all(out / e["video"])
        assert len(frames) == e["frames"]
        assert frames[0].shape == (SIZE, SIZE, 3)
        with np.load(out / e["data"]) as z:
            kps, feats = z["keypoints"], z["features"]
        assert kps.shape == (e["frames"], 33, 3) and feats.shape == (e["frames"], len(FEATURE_NAMES))
        # the figure is drawn where the stored keypoints say: joints are not background-coloured
        for t in (0, e["frames"] // 2):
            for name in ("left_hip", "right_knee", "left_shoulder"):
                x, y = np.round(kps[t, LI[name], :2]).astype(int)
                assert frames[t][y, x].astype(int).sum() < 600, (e["id"], t, name)
        # and the background stays plain far from the figure (corner below the caption)
        assert frames[0][SIZE - 5, 5].astype(int).sum() > 650


@needs_ffmpeg
def test_load_library_round_trip_and_retrieval(lib):
    out, manifest = lib
    exemplars = load_library(out)
    assert [x.id for x in exemplars] == [e["id"] for e in manifest["exemplars"]]
    ex = exemplars[0]
    assert ex.video_key == "squat/squat_front.mp4" and ex.fps == 30.0
    top = suggest(ex.features[15:40], exemplars, k=1)[0]
    assert top["exemplar_id"] == ex.id and top["start_frame"] == 15


def test_shipped_starter_library_is_complete():
    manifest = json.loads((DEFAULT_ROOT / "manifest.json").read_text())
    assert [e["id"] for e in manifest["exemplars"]] == [s.id for s in EXEMPLARS]
    assert {e["sport"] for e in manifest["exemplars"]} == {"ski_aerials", "squat", "pushup", "plank"}
    total = 0
    for e in manifest["exemplars"]:
        for key in ("video", "data"):
            f = DEFAULT_ROOT / e[key]
            assert f.is_file() and f.stat().st_size == e["bytes"][key]
            total += f.stat().st_size
    assert total < 3_000_000
    assert len(load_library()) == len(manifest["exemplars"])


def test_a_rebuild_reproduces_the_shipped_poses():
    """The shipped npz files are what the builder makes from its fixed seeds (no ffmpeg needed)."""
    shipped = {e.id: e for e in load_library()}
    for spec in EXEMPLARS:
        ex = make_exemplar(spec)
        np.testing.assert_array_equal(ex.keypoints, shipped[spec.id].keypoints)
        np.testing.assert_array_equal(ex.features.astype(np.float64), shipped[spec.id].features)
        assert ex.video_key == shipped[spec.id].video_key
