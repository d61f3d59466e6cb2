"""Upload validation: a video is streamed to disk under a size limit, decoded enough to know it
is usable (size, duration, resolution, a decodable frame), and its optional target box checked,
all before anything is stored or queued. Shared by single analyses and multi-camera sessions."""
from __future__ import annotations

import math
import secrets
import time
from pathlib import Path
from typing import Optional

import cv2
from fastapi import HTTPException, UploadFile

from services.gateway.deps import REJECTED
from shared.documents import AnalysisRequest
from shared.messages import AnalysisRequested, VideoInfo
from shared.settings import Settings


class UploadRejected(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def new_analysis_id() -> str:
    """Time-ordered (listing the store returns newest last) and unguessable."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def probe_video(path: Path, settings: Settings) -> VideoInfo:
    """Decode enough of the file to know it is a usable video; raise UploadRejected otherwise."""
    if path.stat().st_size == 0:
        raise UploadRejected(422, "empty", "the uploaded file is empty")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UploadRejected(422, "not_video", "the file is not a video we can decode (supported: MP4, MOV, AVI, MKV, WebM with common codecs)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise UploadRejected(422, "no_frames", "the video has no decodable frame (is it truncated or empty?)")
        h, w = frame.shape[:2]
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count == 1 or (count <= 0 and not cap.read()[0]):
            raise UploadRejected(422, "single_image", "this is a single image, not a video")
        if not (0 < fps < 1000):
            raise UploadRejected(422, "no_frame_rate", "the video has no usable frame rate")
        if w * h > settings.max_pixels:
            raise UploadRejected(422, "too_many_pixels", f"{w}x{h} is larger than the {settings.max_pixels} pixels allowed per frame")
        if min(w, h) < settings.min_frame_side_px:
            raise UploadRejected(422, "too_small", f"{w}x{h} is too small: each side needs at least {settings.min_frame_side_px} pixels")
        if max(w, h) > settings.max_aspect_ratio * min(w, h):
            raise UploadRejected(422, "bad_aspect", f"{w}x{h} is too elongated: at most {settings.max_aspect_ratio:g}:1 is accepted")
        if count > 0 and count / fps > settings.max_duration_s:
            raise UploadRejected(413, "too_long", f"the video lasts {count / fps:.0f} s; at most {settings.max_duration_s:.0f} s is accepted")
        return VideoInfo(fps=round(fps, 4), width=w, height=h, frames=count if count > 0 else None)
    finally:
        cap.release()


def parse_bbox(text: Optional[str], info: VideoInfo) -> Optional[list[float]]:
    if text is None or text.strip() == "":
        return None
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if not all(math.isfinite(v) for v in box):   # "nan" and "inf" parse as floats and defeat every comparison
        box = []
    if len(box) != 4 or box[2] <= 1 or box[3] <= 1 or box[0] < 0 or box[1] < 0 \
            or box[0] + box[2] > info.width + 1 or box[1] + box[3] > info.height + 1:
        raise UploadRejected(422, "bad_bbox", f"target_bbox must be x,y,w,h in pixels inside the {info.width}x{info.height} first frame")
    return box


# What a stored video is served as (presigned URLs): decided by the extension we kept (a known
# video one, the content being probed as a video), never by the client's Content-Type (a video
# sent as "text/html" must not be served as a page).
VIDEO_TYPES = {"mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "avi": "video/x-msvideo",
               "mkv": "video/x-matroska", "webm": "video/webm", "mpg": "video/mpeg", "mpeg": "video/mpeg",
               "3gp": "video/3gpp", "wmv": "video/x-ms-wmv", "flv": "video/x-flv", "ts": "video/mp2t",
               "mts": "video/mp2t", "m2ts": "video/mp2t", "ogv": "video/ogg", "mjpeg": "video/x-motion-jpeg"}
VIDEO_EXTENSIONS = frozenset(VIDEO_TYPES)


def stored_content_type(ext: str) -> str:
    return VIDEO_TYPES.get(ext, "application/octet-stream")


async def save_upload(video: UploadFile, directory: Path, stem: str, settings: Settings,
                      what: str = "the upload") -> tuple[Path, str, int]:
    """Stream an upload to directory/stem.<ext>, refusing it (413) past the size limit.

    The extension is kept only when it is one of the known video extensions ("bin" otherwise):
    a file name is never trusted further (it never reaches an object key)."""
    limit = settings.max_upload_mb * 1024 * 1024
    suffix = Path(video.filename or "").suffix.lower().lstrip(".")
    ext = suffix if suffix in VIDEO_EXTENSIONS else "bin"
    path = directory / f"{stem}.{ext}"
    size = 0
    with open(path, "wb") as out:
        while chunk := await video.read(1 << 20):
            size += len(chunk)
            if size > limit:
                REJECTED.labels("too_large").inc()
                raise HTTPException(413, f"{what} is larger than {settings.max_upload_mb} MB")
            out.write(chunk)
    return path, ext, size


def request_record(msg: AnalysisRequested, filename: str | None, size: int, owner: str, **extra) -> AnalysisRequest:
    """analyses/<id>/request.json: what was asked, by whom, and the message to re-drive it with
    (extra: what a session attaches, e.g. session_id, camera, athlete_height_m)."""
    return AnalysisRequest(analysis_id=msg.analysis_id, sport=msg.sport, submitted_at=msg.submitted_at,
                           video=msg.video, filename=(filename or "")[:200], size_bytes=size,
                           target_bbox_px=msg.target_bbox_px,
                           message=msg,   # lets the watchdog re-drive a stalled analysis
                           owner=owner, **extra)
