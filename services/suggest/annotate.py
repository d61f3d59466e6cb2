"""The annotated video in segments (issue 17): drawn and encoded per clip while the analysis runs,
joined without re-encoding once the final verdict is in.

A segment is one clip's frames, each drawn with its skeleton in the colour of its flag (red: a
fault flagged, green: judged fine, grey: not judged; shared.render.fault_flag). It is stored under
a key holding the hash of exactly what is drawn on it and how it is encoded (frame indices, boxes,
keypoints, flags, the athlete revision, fps, size, encoder settings, RENDER_VERSION), so:

- a segment pre-rendered from a provisional verdict is reused by the final one only when every
  frame would be drawn the same; otherwise its key differs and it is rendered again;
- redelivery, reordering, several workers and athlete switches need no coordination: two workers
  that render one key write the same picture, and a key of another revision is never looked up.

Every segment is a separate libx264 run with the same settings, so it starts with a keyframe and
has the same parameter sets; the ffmpeg concat demuxer then joins them with `-c copy`.
Pure: images come from a callable, segments are files; no broker, no object store.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import cv2
import numpy as np

from shared.documents import PoseFrame
from shared.render import H264Writer, draw_label, draw_pose

RED, GREEN, GREY = (40, 40, 230), (60, 200, 60), (160, 160, 160)
RENDER_VERSION = 1    # bump when drawing changes: segments stored by older code then stop matching
# ultrafast: what remains to encode after the final verdict sits at the end of every analysis.
# ultrafast has no B-frames, so every segment's timestamps start at its first frame.
ENCODER = {"codec": "libx264", "preset": "ultrafast", "crf": 23, "pix_fmt": "yuv420p"}


def draw_frame(img: np.ndarray, f: PoseFrame, bad: Optional[bool]) -> np.ndarray:
    """Draw one frame in place: the athlete's box, the skeleton in its flag's colour, a banner."""
    if f.bbox_px is not None:
        x, y, w, h = (int(round(v)) for v in f.bbox_px)
        cv2.rectangle(img, (x, y), (x + w, y + h), GREY, 1)
    if f.keypoints is not None:
        kps = np.array([r if r is not None else (np.nan,) * 3 for r in f.keypoints], dtype=np.float32)
        draw_pose(img, kps, GREY if bad is None else RED if bad else GREEN)
    draw_label(img, f"frame {f.index}" + (" FAULT" if bad else " not judged" if bad is None and f.keypoints
                                          else ""), RED if bad else (255, 255, 255))
    return img


def content_hash(frames: Sequence[PoseFrame], flags: Sequence[Optional[bool]], revision: int, fps: float,
                 width: int, height: int) -> str:
    """sha256 (32 hex digits) of exactly what a segment shows: each frame's index, box, keypoints and
    flag, plus the revision, geometry, encoder settings and RENDER_VERSION. 3D keypoints, scores and
    track states are not drawn and do not count."""
    if len(frames) != len(flags):
        raise ValueError(f"{len(frames)} frames but {len(flags)} flags")
    payload = {"v": RENDER_VERSION, "encoder": ENCODER, "revision": revision, "fps": float(fps),
               "size": [int(width), int(height)],
               "frames": [[f.index, f.bbox_px, f.keypoints, flag] for f, flag in zip(frames, flags)]}
    text = json.dumps(payload, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Segment:
    """One clip of the annotated video: its frames, their flags, and the hash naming it."""
    first_frame: int
    frames: tuple[PoseFrame, ...]
    flags: tuple[Optional[bool], ...]
    content_hash: str


def plan(clips: Sequence[Sequence[PoseFrame]], flags: Mapping[int, Optional[bool]], revision: int, fps: float,
         width: int, height: int) -> list[Segment]:
    """One Segment per non-empty clip, in order; flags: frame index -> flag (every frame of `clips`)."""
    out = []
    for clip in clips:
        if not clip:
            continue
        fl = tuple(flags[f.index] for f in clip)
        out.append(Segment(clip[0].index, tuple(clip), fl, content_hash(clip, fl, revision, fps, width, height)))
    return out


def render(frames: Sequence[PoseFrame], flags: Sequence[Optional[bool]], load_image: Callable[[int], np.ndarray],
           fps: float, width: int, height: int, out: Path, pool: Optional[Executor] = None) -> int:
    """Draw and encode frames into one H.264 MP4 (a segment, or the whole video in one piece);
    load_image(index) -> BGR frame, called through `pool` when given (fetch + decode release the GIL).
    Returns the frames written."""
    images = pool.map(load_image, [f.index for f in frames]) if pool else map(load_image, [f.index for f in frames])
    with H264Writer(out, fps, width, height, crf=ENCODER["crf"], preset=ENCODER["preset"]) as writer:
        for f, bad, img in zip(frames, flags, images):
            writer.write(draw_frame(img, f, bad))
        return writer.frames_written


def join(parts: Sequence[Path], out: Path, ffmpeg_bin: str = "ffmpeg") -> None:
    """Concatenate segments without re-encoding (concat demuxer, -c copy) into a +faststart MP4.
    The parts must come from render() with the same fps, size and ENCODER (their keys say so)."""
    if not parts:
        raise ValueError("no segments to join")
    exe = shutil.which(ffmpeg_bin)
    if exe is None:
        raise RuntimeError(f"{ffmpeg_bin!r} not found on PATH: joining the annotated video needs ffmpeg")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, dir=Path(out).parent) as listing:
        for p in parts:
            listing.write("file '" + str(Path(p).resolve()).replace("'", "'\\''") + "'\n")
    try:
        proc = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                               "-i", listing.name, "-c", "copy", "-movflags", "+faststart", str(out)],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    finally:
        Path(listing.name).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg concat failed (exit {proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()[-2000:]}")
