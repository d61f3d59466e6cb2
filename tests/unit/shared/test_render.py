"""Pose drawing and the H.264 writer (needs /usr/bin/ffmpeg and ffprobe)."""
from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from shared.render import H264Writer, draw_label, draw_pose
from shared.skeleton import LANDMARK_INDEX

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="apt-get install ffmpeg")


def test_draw_pose_draws_confident_joints_only():
    img = np.zeros((200, 200, 3), np.uint8)
    kp = np.full((33, 3), np.nan, np.float32)
    ls, rs, lh = LANDMARK_INDEX["left_shoulder"], LANDMARK_INDEX["right_shoulder"], LANDMARK_INDEX["left_hip"]
    kp[ls] = (50, 50, 0.9)
    kp[rs] = (150, 50, 0.9)
    kp[lh] = (50, 150, 0.1)  # below min_confidence: neither the joint nor its bones
    draw_pose(img, kp, (0, 0, 255))
    assert img[50, 100, 2] > 0  # the shoulder bone
    assert img[150, 50].max() == 0 and img[100, 50].max() == 0  # no hip, no shoulder-hip bone
    assert img[..., :2].max() == 0  # drawn in the given colour only


def test_draw_label_top_left():
    img = np.zeros((360, 640, 3), np.uint8)
    draw_label(img, "athlete 1  knee 142 deg", (0, 200, 255))
    assert img[2, 2].tolist() == [0, 200, 255] and img[-1, -1].max() == 0


@needs_ffmpeg
def test_h264_writer_roundtrip(tmp_path):
    path = tmp_path / "out.mp4"
    w, h, n = 101, 75, 12  # odd size: padded to 102x76 for yuv420p
    with H264Writer(str(path), fps=10, width=w, height=h) as wr:
        for i in range(n):
            frame = np.full((h, w, 3), 20 * i, np.uint8)
            draw_label(frame, str(i), (255, 255, 255))
            wr.write(frame)
    assert wr.frames_written == n
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == n
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name,pix_fmt,width,height",
         "-of", "json", str(path)], check=True, capture_output=True, text=True).stdout)["streams"][0]
    assert probe["codec_name"] == "h264" and probe["pix_fmt"] == "yuv420p"
    assert (probe["width"], probe["height"]) == (102, 76)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while downloading


@needs_ffmpeg
def test_h264_writer_errors(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        H264Writer(str(tmp_path / "x.mp4"), 10, 64, 64, ffmpeg_bin="no-such-ffmpeg")
    with H264Writer(str(tmp_path / "y.mp4"), 10, 64, 64) as wr:
        with pytest.raises(ValueError):
            wr.write(np.zeros((32, 64, 3), np.uint8))
        wr.write(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        with H264Writer(str(tmp_path / "no_such_dir" / "z.mp4"), 10, 64, 64) as wr:
            wr.write(np.zeros((64, 64, 3), np.uint8))
