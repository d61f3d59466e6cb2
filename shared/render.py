"""Drawing poses on frames and writing browser-playable H.264 MP4s (annotated / result video)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from types import TracebackType
from typing import Mapping, Optional

import cv2
import numpy as np

from shared.skeleton import BONE_INDEX_PAIRS


def fault_flag(probs: Optional[Mapping[str, Optional[float]]], thresholds: Mapping[str, float]) -> Optional[bool]:
    """How a frame of the annotated video is coloured: True (red) where a fault's probability reaches its
    threshold, False (green) where the frame is judged fine, None (grey) where it is not judged.
    probs: a verdict frame's `faults` (rounded as stored); the judge's provisional flags use the same rule."""
    if probs is None:
        return None
    return any(p is not None and p >= thresholds[k] for k, p in probs.items())


def _thickness(frame: np.ndarray) -> int:
    return max(1, round(min(frame.shape[:2]) / 360))  # 2 px at 720p, 1 px at 360p


def draw_pose(frame_bgr: np.ndarray, keypoints_px: np.ndarray, color_bgr: tuple[int, int, int], min_confidence: float = 0.3) -> None:
    """Draw bones and joints of one pose in place. keypoints_px: [33, 3] (x_px, y_px, confidence).

    Joints below min_confidence or NaN are skipped, and so is every bone touching them.
    """
    kp = np.asarray(keypoints_px, dtype=np.float64)
    ok = np.isfinite(kp).all(axis=1) & (np.nan_to_num(kp[:, 2], nan=0.0) >= min_confidence)  # [33]
    pts = np.round(np.nan_to_num(kp[:, :2]) * 16).astype(np.int64)  # 4 fractional bits: sub-pixel lines
    th = _thickness(frame_bgr)
    for a, b in BONE_INDEX_PAIRS:
        if ok[a] and ok[b]:
            cv2.line(frame_bgr, tuple(map(int, pts[a])), tuple(map(int, pts[b])), color_bgr, th, cv2.LINE_AA, shift=4)
    for i in np.flatnonzero(ok):
        cv2.circle(frame_bgr, tuple(map(int, pts[i])), (th + 1) * 16, color_bgr, -1, cv2.LINE_AA, shift=4)


def draw_label(frame_bgr: np.ndarray, text: str, color_bgr: tuple[int, int, int]) -> None:
    """Banner in the top-left corner: filled box in color_bgr, text in black or white for contrast."""
    scale = max(0.4, frame_bgr.shape[0] / 720 * 0.8)
    th = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, tht), base = cv2.getTextSize(text, font, scale, th)
    pad = max(3, round(6 * scale))
    cv2.rectangle(frame_bgr, (0, 0), (tw + 2 * pad, tht + base + 2 * pad), color_bgr, -1)
    luma = 0.114 * color_bgr[0] + 0.587 * color_bgr[1] + 0.299 * color_bgr[2]
    ink = (0, 0, 0) if luma > 128 else (255, 255, 255)
    cv2.putText(frame_bgr, text, (pad, pad + tht), font, scale, ink, th, cv2.LINE_AA)


class H264Writer:
    """Pipe raw BGR frames into ffmpeg -> H.264 (libx264, yuv420p, +faststart) MP4 that browsers play.

    yuv420p needs even dimensions: odd width/height are padded by one black pixel on the
    right/bottom (nothing is cropped away). Use as a context manager; close() raises
    RuntimeError with ffmpeg's message if encoding failed.
    """

    def __init__(self, path: str, fps: float, width: int, height: int, crf: int = 23,
                 preset: str = "veryfast", ffmpeg_bin: str = "ffmpeg") -> None:
        exe = shutil.which(ffmpeg_bin)
        if exe is None:
            raise RuntimeError(f"{ffmpeg_bin!r} not found on PATH: H264Writer needs ffmpeg with libx264 (apt-get install ffmpeg)")
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"bad video geometry {width}x{height} @ {fps} fps")
        self.path, self.width, self.height = str(path), int(width), int(height)
        self.frames_written = 0
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg can never block on its stderr
        cmd = [
            exe, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.width}x{self.height}", "-r", f"{fps}", "-i", "-",
            "-an", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", self.path,
        ]
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def _ffmpeg_error(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:]

    def write(self, frame_bgr: np.ndarray) -> None:
        if self._proc is None:
            raise RuntimeError("H264Writer is closed")
        if frame_bgr.shape != (self.height, self.width, 3) or frame_bgr.dtype != np.uint8:
            raise ValueError(f"frame {frame_bgr.shape} {frame_bgr.dtype}, expected ({self.height}, {self.width}, 3) uint8")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame_bgr).tobytes())  # type: ignore[union-attr]
        except BrokenPipeError:
            self._proc.wait()
            self._proc = None
            raise RuntimeError(f"ffmpeg exited while writing {self.path}: {self._ffmpeg_error()}") from None
        self.frames_written += 1

    def close(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        rc = proc.wait()
        err = self._ffmpeg_error()
        self._log.close()
        if rc != 0:
            raise RuntimeError(f"ffmpeg failed (exit {rc}) writing {self.path}: {err}")

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:  # don't let an encoder error hide the original exception
            try:
                self.close()
            except RuntimeError:
                pass
