"""BlazePose (MediaPipe; lite, full or heavy landmark model) on whole frames or on crops around one athlete.

Pure science core: numpy BGR frames in, arrays out. Nothing here knows about Kafka or S3.

Why crops: in wide shots the athlete is small (vtest.avi: ~80 px tall in 768x576) and
BlazePose's person detector works on a 224x224 resize of the whole frame, so it misses them.
We cut a square region around the tracker's box, resize it to a fixed canvas so that small
people are upscaled, run BlazePose on the canvas and map landmarks back to original pixels.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from shared.skeleton import NUM_LANDMARKS

# MediaPipe's C++ side logs through absl before absl::InitializeLog() is called, so
# GLOG_minloglevel / absl.logging do not reach it. These settings quiet what they can
# (glog/TF builds); the rest is filtered per call by _filtered_native_stderr below.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mediapipe as mp  # noqa: E402  (after the env settings above)

# COACH_POSE_MODEL -> MediaPipe's model_complexity. All three share the person detector and the
# 256x256 input; they differ in the landmark network (docs/pose.md: speed and accuracy).
POSE_MODELS = {"lite": 0, "full": 1, "heavy": 2}
DEFAULT_POSE_MODEL = "full"
# The files scripts/install-pose-models.sh installs (same pins there; a test compares them). Only
# full ships in the wheel; for a missing lite/heavy file MediaPipe would try to download it.
POSE_MODEL_SHA256 = {
    "lite": "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
    "full": "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    "heavy": "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe",
}


class PoseModelError(RuntimeError):
    """The chosen pose model is unknown or its file is missing / not the pinned one."""


def pose_model_dir() -> Path:
    return Path(mp.__file__).parent / "modules" / "pose_landmark"


def pose_model_id(model: str) -> str:
    """The name recorded with every result, e.g. mediapipe-blazepose-heavy-0.10.21."""
    return f"mediapipe-blazepose-{model}-{mp.__version__}"


def check_pose_model(model: str) -> Path:
    """The model's file, verified against its pinned hash; otherwise a PoseModelError naming the
    setting and the fix. Run before MediaPipe sees the choice, so a missing file is an error at
    start-up rather than an attempted download at the first frame."""
    if model not in POSE_MODELS:
        raise PoseModelError(f"COACH_POSE_MODEL={model}: unknown pose model; choose one of {', '.join(POSE_MODELS)}")
    path = pose_model_dir() / f"pose_landmark_{model}.tflite"
    if not path.is_file():
        raise PoseModelError(f"COACH_POSE_MODEL={model}: {path.name} is not installed in {path.parent}; run scripts/setup.sh")
    if hashlib.sha256(path.read_bytes()).hexdigest() != POSE_MODEL_SHA256[model]:
        raise PoseModelError(f"COACH_POSE_MODEL={model}: {path} is not the pinned {path.name} (damaged or another "
                             f"version); run scripts/setup.sh")
    return path


# Lines MediaPipe 0.10.21 prints on the first inference of every graph run; harmless.
_NOISE = re.compile(
    rb"inference_feedback_manager\.cc|landmark_projection_calculator\.cc"
    rb"|All log messages before absl::InitializeLog\(\)|Created TensorFlow Lite XNNPACK delegate"
)


@contextlib.contextmanager
def _filtered_native_stderr() -> Iterator[None]:
    """Send fd 2 to a temp file for the duration, then re-emit every line that is not known noise.

    Real errors still reach stderr, only later (when the window closes); a hard crash inside
    the window would lose them, so windows are kept short: graph start-up to first pose.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True) if ln.strip() and not _NOISE.search(ln)]
            if kept:
                os.write(2, b"".join(kept))


class StartupQuiet:
    """An open/close-able _filtered_native_stderr window.

    MediaPipe prints its warnings from graph threads between a graph (re)start and the first
    frame with a pose (model load, first landmark projection). The window must span all of
    that, since start_run() returns before the calculators have opened; process() waits until
    the graph is idle, so closing after a process() call loses nothing to the race.
    """

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None

    def open(self) -> None:
        if self._stack is None:
            self._stack = contextlib.ExitStack()
            self._stack.enter_context(_filtered_native_stderr())

    def close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()


@dataclass
class PoseSequence:
    keypoints_px: np.ndarray  # [T, 33, 3] float32: x_px, y_px in original image pixels, visibility; NaN where no pose
    world_m: np.ndarray  # [T, 33, 3] float32 metric 3D world landmarks (hip-centred metres); NaN where no pose
    present: np.ndarray  # [T] bool: a pose was found in that frame

    @classmethod
    def empty(cls, num_frames: int) -> PoseSequence:
        nan = np.full((num_frames, NUM_LANDMARKS, 3), np.nan, dtype=np.float32)
        return cls(keypoints_px=nan, world_m=nan.copy(), present=np.zeros(num_frames, dtype=bool))

    def __len__(self) -> int:
        return len(self.present)


def square_crop(box_xywh: np.ndarray, margin: float) -> tuple[float, float, float]:
    """Square region (x0, y0, side) in original pixels centred on the box, side = longer box side * (1 + 2*margin).

    A square keeps the aspect ratio, so BlazePose's (square) ROI projection stays exact.
    The region may leave the image; those pixels are padded black when cropping.
    """
    x, y, w, h = (float(v) for v in box_xywh[:4])
    side = max(w, h) * (1.0 + 2.0 * margin)
    return x + w / 2 - side / 2, y + h / 2 - side / 2, side


def crop_to_canvas(frame_bgr: np.ndarray, x0: float, y0: float, side: float, canvas: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Square region of the frame (black outside the image) resized to canvas x canvas.

    Returns the image and the region (x0, y0, side) it really shows: canvas coordinate u in
    [0, canvas] is original x0 + u * side / canvas (continuous coordinates, pixel edges at integers).
    """
    s = canvas / side
    if s >= 1.0:  # small athlete: upscale, sub-pixel exact, in one warpAffine (crop + pad + resize)
        t = 0.5 * (s - 1.0)  # warpAffine maps pixel centres; this makes the map exact for edges
        m = np.array([[s, 0.0, t - x0 * s], [0.0, s, t - y0 * s]], dtype=np.float64)
        img = cv2.warpAffine(frame_bgr, m, (canvas, canvas), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return img, (x0, y0, side)
    # large athlete: integer region, padded, then INTER_AREA (warpAffine would alias when shrinking)
    ix0, iy0, iside = int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(side))
    h, w = frame_bgr.shape[:2]
    cx0, cy0, cx1, cy1 = max(ix0, 0), max(iy0, 0), min(ix0 + iside, w), min(iy0 + iside, h)
    region = np.zeros((iside, iside, 3), dtype=frame_bgr.dtype)  # [side, side, 3], black padding
    if cx1 > cx0 and cy1 > cy0:
        region[cy0 - iy0:cy1 - iy0, cx0 - ix0:cx1 - ix0] = frame_bgr[cy0:cy1, cx0:cx1]
    return cv2.resize(region, (canvas, canvas), interpolation=cv2.INTER_AREA), (float(ix0), float(iy0), float(iside))


# (frame index, image given to BlazePose, (ox, oy, sx, sy) mapping it back to original pixels)
_Job = tuple[int, np.ndarray, tuple[float, float, float, float]]


def _valid_box(box: np.ndarray) -> bool:
    return len(box) >= 4 and bool(np.all(np.isfinite(box[:4]))) and box[2] > 1 and box[3] > 1


RETRY_WITHIN = 30   # frames after the last pose during which its body axis is trusted (~1 s at 30 fps)
_SH, _HP = [11, 12], [23, 24]   # BlazePose: shoulders, hips


def body_up(norm: np.ndarray) -> np.ndarray | None:
    """[33,3] landmarks -> the body's up direction (hip midpoint -> shoulder midpoint) in image
    coordinates (y down), or None when a shoulder or hip is missing."""
    v = norm[_SH, :2].mean(axis=0) - norm[_HP, :2].mean(axis=0)
    return v if np.all(np.isfinite(v)) and np.hypot(*v) > 0 else None


ALIGN_ABOVE_DEG = 45.0        # a body tilted more than this in the last pose is turned upright before BlazePose
TURN_RETRY_ABOVE_DEG = 20.0   # a pose lost after a tilt beyond this is looked for at 180 / +-90 deg too (an
                              # upright walker who is hidden is not: three passes would find nobody)


def tilt_deg(up: np.ndarray) -> float:
    """Angle of the body's up vector from the image's up, deg, counter-clockwise positive (-180..180]."""
    return float(np.degrees(np.arctan2(-up[0], -up[1])))


def upright_turns(up: np.ndarray | None) -> list[int]:
    """The turns (deg, counter-clockwise) to try, the one that makes `up` point up first.

    A body seen last at 100 deg (flipping forward) is most likely beyond it now, so the order
    follows the turn that would have made the last pose upright, then the others."""
    turns = [180, 90, -90]
    if up is None:
        return turns

    def upness(deg: int) -> float:   # y of the turned up vector; -1 = straight up (y points down)
        r = np.radians(deg)
        return float(-np.sin(r) * up[0] + np.cos(r) * up[1]) / float(np.hypot(*up))

    return sorted(turns, key=upness)


class PoseSession:
    """What estimate_sequence carries from one call to the next of one athlete's sequence: its own
    video-mode graph (MediaPipe's tracking state: the next frame's ROI comes from the last pose, no
    person detection) and the rotated-body alignment state (the last pose's body axis and where it
    was). Continuing a session says "these frames directly follow the last call's".

    Made by BlazePoseEstimator.new_session(), handed back with end_session(). Sessions never share
    a graph, so interleaved sequences never share tracking state; a graph's timestamps only ever
    increase (SolutionBase adds 33 ms per process() call, reset() included). Not thread-safe.
    """

    def __init__(self) -> None:
        self.graph: mp.solutions.pose.Pose | None = None   # None until the first frame with a box
        self.frames = 0                        # frames so far: the position of the next call's first frame
        self.last_posed = -RETRY_WITHIN - 1    # position of the last frame with a pose
        self.up: np.ndarray | None = None      # that pose's body up vector (image coordinates)


class BlazePoseEstimator:
    """MediaPipe Pose graphs (video mode) with the chosen landmark model; not thread-safe.

    estimate_frames, and estimate_sequence without a session, start a new graph run first
    (Pose.reset()), so tracking state never leaks between sequences. Measured on the 2-core dev
    CPU: reset 3 ms vs. 7 ms to create + close a graph, but the first frame of a run costs
    ~100-160 ms (the run re-opens its calculators and models, and the person detector runs) vs.
    ~20 ms a tracked frame. A PoseSession (estimate_sequence(..., session=)) avoids that for a
    sequence that comes in parts (the pose worker's clips). One spare graph serves session-less
    calls and the next new session; each live session holds its own (~110 MB resident each).
    """

    def __init__(
        self,
        crop_margin: float = 0.25,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        crop_size: int = 256,
        smooth_landmarks: bool = False,
        model: str = DEFAULT_POSE_MODEL,
        align_rotated: bool = True,
    ) -> None:
        # smooth_landmarks=False: MediaPipe's own filter would smooth in crop coordinates,
        # which move with the box; temporal smoothing belongs to services.pose.refine, in
        # original pixels, where a learned refiner also needs the raw signal.
        check_pose_model(model)  # fail now, naming COACH_POSE_MODEL, not at the first frame
        self.model = model
        self.model_id = pose_model_id(model)
        self.crop_margin = crop_margin
        self.crop_size = crop_size
        self._pose_kwargs = dict(
            static_image_mode=False,
            model_complexity=POSE_MODELS[model],
            smooth_landmarks=smooth_landmarks,
            enable_segmentation=False,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self._pose: mp.solutions.pose.Pose | None = None
        self._quiet = StartupQuiet()  # filters native stderr from a graph (re)start to its first pose
        # Rotated bodies (flips, handstands, a person lying down): BlazePose's landmark model wants an
        # upright body in its crop, and its detector finds upright people. While the last pose (within
        # RETRY_WITHIN frames) is tilted beyond ALIGN_ABOVE_DEG the crop is turned so that body is
        # upright, as BlazePose's own detector-to-landmark step aligns its ROI; a pose lost during a
        # rotation is also looked for at 180 / +-90 deg. Turned crops run on a separate single-image
        # graph, so the video graph's tracking state is not disturbed. docs/pose.md has the figures.
        self.align_rotated = align_rotated
        self._static: mp.solutions.pose.Pose | None = None
        self.retries = {"tried": 0, "found": 0}   # turned-crop passes: asked / gave a pose
        self._sessions: weakref.WeakSet[PoseSession] = weakref.WeakSet()   # closed with the estimator

    # -- graph lifecycle -------------------------------------------------------------------
    def new_session(self) -> PoseSession:
        """A fresh sequence (no tracking or tilt state). Its graph, taken at its first frame with a box,
        is the spare one, reset, or a new one when a live session holds the spare."""
        session = PoseSession()
        self._sessions.add(session)
        return session

    def end_session(self, session: PoseSession) -> None:
        """The session's graph becomes the spare (reset before its next use), or is closed when there is
        a spare already: graphs alive = sessions alive + at most one."""
        g, session.graph = session.graph, None
        self._sessions.discard(session)
        if g is None:
            return
        if self._pose is None:
            self._pose = g
        else:
            g.close()

    def _start(self, session: PoseSession) -> mp.solutions.pose.Pose:
        """The session's graph at its first frame: a new graph run, no tracking state from before."""
        self._quiet.open()  # closed by _process on the first pose, or at the end of _run
        if self._pose is not None:
            session.graph, self._pose = self._pose, None
            session.graph.reset()  # new graph run: no tracking state from the previous sequence
        else:
            session.graph = mp.solutions.pose.Pose(**self._pose_kwargs)
        return session.graph

    def _process(self, pose: mp.solutions.pose.Pose, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Run one frame; returns (normalized landmarks [33,3]: x, y, visibility; world [33,3]) or None."""
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False  # lets MediaPipe wrap the buffer without copying
        res = pose.process(rgb)
        if res.pose_landmarks is None:
            return None
        self._quiet.close()  # both models have run once: their warnings are out
        norm = np.array([(p.x, p.y, p.visibility) for p in res.pose_landmarks.landmark], dtype=np.float32)
        world = np.array([(p.x, p.y, p.z) for p in res.pose_world_landmarks.landmark], dtype=np.float32)
        return norm, world

    def close(self) -> None:
        self._quiet.close()
        for session in list(self._sessions):
            self.end_session(session)   # its graph goes to the spare slot or is closed
        for g in (self._pose, self._static):
            if g is not None:
                g.close()
        self._pose = self._static = None

    def _retry_turned(self, image: np.ndarray, turns: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
        """A square crop turned by each of `turns` (deg, counter-clockwise) until a pose is found:
        (normalized landmarks [33,3] in the unturned crop's coordinates, world [33,3]) or None."""
        if self._static is None:
            self._static = mp.solutions.pose.Pose(**{**self._pose_kwargs, "static_image_mode": True})
        side = image.shape[0]
        self.retries["tried"] += 1
        for deg in turns:
            m = cv2.getRotationMatrix2D((side / 2, side / 2), deg, 1.0)     # [2,3], turns the image by deg (CCW)
            found = self._process(self._static, cv2.warpAffine(image, m, (side, side), borderValue=0))
            if found is None:
                continue
            norm, world = found
            back = cv2.invertAffineTransform(m)                              # turned pixels -> crop pixels
            uv = np.c_[norm[:, :2] * side, np.ones(len(norm))] @ back.T      # [33,2]
            norm = np.c_[uv / side, norm[:, 2]].astype(np.float32)
            r = np.radians(-deg)   # world landmarks share the image's x/y axes: turn them back too
            c, s_ = np.cos(r), np.sin(r)
            world = world.copy()
            world[:, 0], world[:, 1] = c * world[:, 0] + s_ * world[:, 1], -s_ * world[:, 0] + c * world[:, 1]
            self.retries["found"] += 1
            return norm, world
        return None

    def __enter__(self) -> BlazePoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------------
    def estimate_sequence(self, frames_bgr: Sequence[np.ndarray], boxes_px: Sequence[np.ndarray | None],
                          session: PoseSession | None = None) -> PoseSequence:
        """Consecutive frames of one athlete, with the tracker's box (x, y, w, h px) per frame.

        Each frame is cut to a square crop around its box (crop_margin on each side, padded black
        outside the image) and resized to crop_size x crop_size, so small athletes are upscaled.
        BlazePose runs in video mode across the crops; landmarks come back in original pixels.

        A frame whose box is None (or degenerate) is marked not present and is NOT run on the
        whole frame: no box means the tracker lost the athlete, and a whole-frame pose would
        likely be somebody else. The tracking state is kept across such gaps (the next crop is
        again centred on the athlete).

        session: None starts from scratch (a new graph run, no tilt), as a whole new sequence. A
        session (new_session()) carries the graph's tracking state and the tilt from its previous
        call on: these frames must directly follow that call's last frame. On an exception the
        session's state is undefined: end it.
        """
        if len(frames_bgr) != len(boxes_px):
            raise ValueError(f"{len(frames_bgr)} frames but {len(boxes_px)} boxes")

        def crops() -> Iterator[_Job]:
            for t, (frame, box) in enumerate(zip(frames_bgr, boxes_px)):
                if box is None or not _valid_box(np.asarray(box, dtype=np.float64)):
                    continue  # absent: left NaN / present=False
                image, (x0, y0, side) = crop_to_canvas(frame, *square_crop(np.asarray(box, dtype=np.float64), self.crop_margin), self.crop_size)
                yield t, image, (x0, y0, side, side)

        own = session is None
        session = self.new_session() if own else session
        try:
            return self._run(len(frames_bgr), crops(), session, retry=self.align_rotated)
        finally:
            if own:
                self.end_session(session)

    def estimate_frames(self, frames_bgr: Sequence[np.ndarray]) -> PoseSequence:
        """Whole frames, no boxes: the bare-model path (also for single images; video mode on one
        frame is a plain detection). BlazePose follows the most prominent person it finds."""
        jobs = ((t, f, (0.0, 0.0, float(f.shape[1]), float(f.shape[0]))) for t, f in enumerate(frames_bgr))
        session = self.new_session()
        try:
            return self._run(len(frames_bgr), jobs, session)
        finally:
            self.end_session(session)

    def _run(self, num_frames: int, jobs: Iterable[_Job], session: PoseSession, retry: bool = False) -> PoseSequence:
        """Run the session's graph over (t, image, (ox, oy, sx, sy)); image coords (u, v) in [0, 1]
        map back to original pixels as (ox + u * sx, oy + v * sy). retry: square crops are turned
        upright after a tilted pose, and looked for turned when lost during a rotation (see __init__).
        Frame t is at position session.frames + t of the session's sequence."""
        out = PoseSequence.empty(num_frames)
        base = session.frames
        try:
            for t, image, (ox, oy, sx, sy) in jobs:
                # (Re)start lazily: start_run() returns before the graph is up, and only a
                # process() call waits for it, so the stderr window must include one.
                pose = session.graph if session.graph is not None else self._start(session)
                up = session.up
                recent = retry and base + t - session.last_posed <= RETRY_WITHIN and up is not None
                tilt = tilt_deg(up) if recent else 0.0
                found = None
                if recent and abs(tilt) > ALIGN_ABOVE_DEG:
                    # the body was far from upright a moment ago: turn the crop so that it is upright
                    found = self._retry_turned(image, [-tilt])
                if found is None:
                    found = self._process(pose, image)
                if found is None and recent and abs(tilt) > TURN_RETRY_ABOVE_DEG:
                    # lost while rotating (a flip): the body may be anywhere round the circle now
                    found = self._retry_turned(image, upright_turns(up))
                if found is None:
                    continue
                session.last_posed, session.up = base + t, body_up(found[0])
                norm, world = found  # norm: [33, 3] (u, v, visibility)
                out.keypoints_px[t, :, 0] = ox + norm[:, 0] * sx
                out.keypoints_px[t, :, 1] = oy + norm[:, 1] * sy
                out.keypoints_px[t, :, 2] = norm[:, 2]
                out.world_m[t] = world
                out.present[t] = True
        finally:
            self._quiet.close()  # a sequence without any pose still ends the stderr window
        session.frames = base + num_frames
        return out
