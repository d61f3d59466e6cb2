"""BlazePose lite / full / heavy (COACH_POSE_MODEL): installed by scripts/setup.sh, offline, recorded.

No skips: a missing model file fails here with the message that says to run scripts/setup.sh.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from services.pose.blazepose import (DEFAULT_POSE_MODEL, POSE_MODEL_SHA256, POSE_MODELS, BlazePoseEstimator,
                                     PoseModelError, check_pose_model, pose_model_dir)
from shared.settings import Settings
from shared.testing import MemoryStore

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "install-pose-models.sh"
MESSI = "/usr/share/doc/opencv-doc/examples/data/messi5.jpg"


@pytest.fixture
def offline(monkeypatch):
    """No network: MediaPipe's fallback for a missing lite/heavy file is a download, which must not happen."""
    def refuse(*_a, **_k):
        raise AssertionError("a pose model tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)   # what mediapipe's download_utils calls


@pytest.fixture(scope="module")
def messi() -> np.ndarray:
    img = cv2.imread(MESSI)
    assert img is not None, f"{MESSI} missing: run scripts/setup.sh (installs Debian's opencv-doc)"
    return img


def test_setup_script_pins_the_same_files_as_the_code():
    pinned = dict(re.findall(r"\[(lite|full|heavy)\]=([0-9a-f]{64})", SCRIPT.read_text()))
    assert pinned == POSE_MODEL_SHA256
    assert set(POSE_MODELS) == set(POSE_MODEL_SHA256) and Settings().pose_model == DEFAULT_POSE_MODEL


@pytest.mark.parametrize("model", list(POSE_MODELS))
def test_every_model_is_installed(model):
    check_pose_model(model)   # raises "COACH_POSE_MODEL=...: ... run scripts/setup.sh" when not


def test_lite_and_heavy_run_offline_and_agree_with_full(messi, offline):
    found = {}
    for model in POSE_MODELS:
        with BlazePoseEstimator(model=model) as est:
            seq = est.estimate_frames([messi])
        assert seq.present[0], f"{model}: no pose on messi5.jpg"
        kp = seq.keypoints_px[0]
        assert kp.shape == (33, 3) and np.isfinite(kp).all()
        found[model] = kp
    # same person, same landmarks: the player is ~236 px tall; the models differ by a few px
    for model in ("lite", "heavy"):
        d = np.linalg.norm(found[model][:, :2] - found["full"][:, :2], axis=1)
        assert np.median(d) < 12, f"{model} vs full: median {np.median(d):.1f} px"


def test_unknown_missing_or_damaged_model_names_the_setting_and_the_fix(tmp_path, monkeypatch, offline):
    with pytest.raises(PoseModelError, match=r"COACH_POSE_MODEL=huge: unknown pose model; choose one of lite, full, heavy"):
        BlazePoseEstimator(model="huge")
    monkeypatch.setattr("services.pose.blazepose.pose_model_dir", lambda: tmp_path)
    msg = f"COACH_POSE_MODEL=heavy: pose_landmark_heavy.tflite is not installed in {tmp_path}; run scripts/setup.sh"
    with pytest.raises(PoseModelError, match=re.escape(msg)):
        BlazePoseEstimator(model="heavy")
    (tmp_path / "pose_landmark_lite.tflite").write_bytes(b"not a model")
    with pytest.raises(PoseModelError, match=r"COACH_POSE_MODEL=lite: .* is not the pinned .*run scripts/setup.sh"):
        BlazePoseEstimator(model="lite")
    # the worker fails at start-up (before any message), with the same sentence
    from services.pose.worker import PoseStage

    s = Settings.from_env({"COACH_POSE_MODEL": "heavy"})
    with pytest.raises(PoseModelError, match=re.escape(msg)):
        PoseStage(s.refiner, s.strn_weights, s.pose_model)


def test_the_setting_reaches_the_message_the_stored_poses_and_the_result_models(messi, offline):
    from services.pose.worker import PoseStage
    from services.suggest.worker import _first_clip
    from shared.messages import ClipPoses, FrameRef, TrackedClip, VideoInfo

    s = Settings.from_env({"COACH_POSE_MODEL": "lite", "COACH_REFINER": "none"})
    stage = PoseStage(s.refiner, s.strn_weights, s.pose_model)
    assert stage.pose_model == "mediapipe-blazepose-lite-0.10.21"
    aid = "a" * 32
    jpeg = cv2.imencode(".jpg", messi)[1].tobytes()
    box = [85.0, 90.0, 355.0, 245.0]   # around the player in messi5.jpg (x, y, w, h px)
    clip = TrackedClip(analysis_id=aid, sport="squat", clip_index=0, video=VideoInfo(fps=30, width=548, height=342, frames=2),
                       frames=[FrameRef(index=i, t_s=i / 30, frame_key=f"f{i}", bbox_px=box) for i in range(2)], is_last=True)
    sent = []
    store = MemoryStore()
    store.put_bytes("f0", jpeg)
    store.put_bytes("f1", jpeg)
    ctx = SimpleNamespace(store=store, settings=s, status=lambda *a, **k: None,
                          emit=lambda topic, m, key: sent.append(m))
    stage.handle(clip, ctx)
    (msg,) = sent
    assert isinstance(msg, ClipPoses) and msg.pose_model == "mediapipe-blazepose-lite-0.10.21" and msg.frames_with_pose == 2
    assert ClipPoses.from_bytes(msg.to_bytes()) == msg
    assert _first_clip(ctx.store, aid) == {"pose_model": "mediapipe-blazepose-lite-0.10.21", "refiner": "none"}


def test_a_clip_poses_message_from_before_the_setting_still_parses():
    from shared.messages import ClipPoses

    old = (b'{"schema":"coach.clip-poses/1","analysis_id":"x","sport":"squat","clip_index":0,"track_id":0,"first_frame":0,'
           b'"frame_count":32,"poses_key":"k","pose_model":"mediapipe-blazepose-full-0.10.21","refiner":"strn",'
           b'"frames_with_pose":30}')
    assert ClipPoses.from_bytes(old).pose_model == "mediapipe-blazepose-full-0.10.21"


def test_install_script_checks_hashes_without_npm_when_the_files_are_there(tmp_path):
    """The pose image copies the files in and re-runs the script, which has no npm there."""
    for model in POSE_MODELS:
        shutil.copy(pose_model_dir() / f"pose_landmark_{model}.tflite", tmp_path)
    bin_dir = tmp_path / "bin"   # coreutils only: no npm on PATH
    bin_dir.mkdir()
    for tool in ("sha256sum", "mktemp", "rm", "tar", "install"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": str(bin_dir)}
    ok = subprocess.run(["/bin/bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "present" in ok.stdout, ok.stderr
    (tmp_path / "pose_landmark_heavy.tflite").write_bytes(b"truncated")
    bad = subprocess.run(["/bin/bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0   # a damaged file is re-fetched, and without npm that fails loudly
