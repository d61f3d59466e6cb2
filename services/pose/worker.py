"""Pose service: keypoints for every frame of a clip, refined over time.

consume `clips` (TrackedClip) -> store poses/clip-NNNNN.json -> produce `poses` (ClipPoses,
keyed by analysis id so one judge worker sees an analysis's clips in order). Frames where the
athlete is absent or no pose is found stay in the document with null keypoints.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from services.pose.refine import context_frames, make_refiner, refine_clip
from services.pose.swaps import relabel_like
from shared.clips import clip_count
from shared.documents import ClipPosesDocument, LrSwaps, PoseFrame, RawTail, TrackingDocument
from shared.messages import ClipPoses, TrackedClip
from shared.observability import FRAMES, GPU_IN_USE, POSE_BATCH_FRAMES, POSE_INFERENCE_SECONDS, POSE_SESSIONS, log_fields
from shared.skeleton import LANDMARK_NAMES
from shared.store import ObjectNotFound, keys
from shared.worker import Context, WorkerSpec, run_service

SERVICE = "pose"


class PoseStage:
    """Holds the model for the worker's lifetime (graph start-up is not free)."""

    def __init__(self, refiner_name: str, strn_weights: str = "", pose_model: str = "full", pose_sessions: int = 2):
        from services.pose.blazepose import BlazePoseEstimator
        from services.pose.sessions import PoseSessions
        # fails at start-up, naming COACH_POSE_MODEL, when the model is unknown or not installed
        self.estimator = BlazePoseEstimator(model=pose_model)
        # BlazePose's graph and tilt kept across an analysis's consecutive clips (COACH_POSE_SESSIONS)
        self.sessions = PoseSessions(self.estimator, pose_sessions)
        self.pose_model = self.estimator.model_id   # recorded with every clip, e.g. mediapipe-blazepose-heavy-0.10.21
        self.refiner_name = refiner_name
        # the STRN's checkpoint (empty: the shipped one); the other refiners take no weights
        self.refiner_params = {"weights": strn_weights or None} if refiner_name == "strn" else {}
        self.refiner = make_refiner(refiner_name, **self.refiner_params)   # fails at start-up on an unknown name (or missing STRN weights)
        self.fetch = ThreadPoolExecutor(max_workers=8, thread_name_prefix="frame-fetch")
        self.lock = threading.Lock()   # the mediapipe graph is not thread-safe

    def warm_up(self) -> None:
        """Create the graph before the first clip comes (a blank frame), not on the way to the first
        provisional verdict: an 8-frame first clip of a fresh worker took 0.46 s after it vs 0.51-0.65 s
        without (2-core machine, load ~4, two runs each: a small gain, ~0.25 s at start-up instead)."""
        with self.lock:
            self.estimator.estimate_frames([np.zeros((256, 256, 3), np.uint8)])

    def handle(self, msg: TrackedClip, ctx: Context) -> None:
        aid = msg.analysis_id
        started = time.perf_counter()
        if _stale(ctx, msg):
            return
        doc = _reusable(ctx, msg, self.pose_model, self.refiner.name)
        if doc is None:
            doc = self._pose(msg, ctx, started)
            if doc is None:   # the athlete was switched while this clip was posed
                return
        ctx.store.put_json(keys.clip_poses(aid, msg.clip_index), doc)
        ctx.emit(ctx.settings.topics.poses, ClipPoses(
            analysis_id=aid, sport=msg.sport, clip_index=msg.clip_index, track_id=msg.track_id,
            first_frame=msg.frames[0].index, frame_count=len(msg.frames), poses_key=keys.clip_poses(aid, msg.clip_index),
            pose_model=self.pose_model, refiner=self.refiner.name,
            frames_with_pose=sum(f.keypoints is not None for f in doc.frames), revision=msg.revision,
        ), key=aid)
        FRAMES.labels(SERVICE).inc(len(msg.frames))
        # Progress: clips stored so far over the clip count (exact once tracking.json exists).
        done = len(ctx.store.list(keys.poses_prefix(aid)))
        try:
            total = TrackingDocument.read(ctx.store, keys.tracking(aid)).clip_count
        except ObjectNotFound:
            total = max(done + 1, clip_count(msg.video.frames or 0, ctx.settings.clip_frames,
                                             ctx.settings.first_clip_frames))
        ctx.status(aid, "done" if done >= total else "running", min(1.0, done / total), clips_done=done)

    def _pose(self, msg: TrackedClip, ctx: Context, started: float) -> ClipPosesDocument | None:
        """BlazePose on the clip's boxed frames, left/right swaps undone, refined -> the clip's document
        (None: the clip went stale meanwhile)."""
        aid = msg.analysis_id
        # Only frames with a box are fetched and decoded; absent frames need no pixels.
        wanted = [f for f in msg.frames if f.bbox_px is not None]
        blobs = dict(zip([f.index for f in wanted], self.fetch.map(lambda f: ctx.store.get_bytes(f.frame_key), wanted)))
        frames, boxes = [], []
        for f in msg.frames:
            if f.index in blobs:
                img = cv2.imdecode(np.frombuffer(blobs[f.index], np.uint8), cv2.IMREAD_COLOR)
                frames.append(img)
                boxes.append(np.asarray(f.bbox_px, dtype=np.float64) if img is not None else None)
            else:
                frames.append(None)
                boxes.append(None)
        # estimate_sequence skips frames without a box, so placeholders are never read
        blank = next((im for im in frames if im is not None), np.zeros((8, 8, 3), np.uint8))
        frames = [im if im is not None else blank for im in frames]
        # A clip that directly follows the last one this worker posed for the same athlete continues its
        # BlazePose session (no graph restart, the tilt carried); any other starts fresh (sessions.py).
        # So a clip's raw poses may differ slightly with delivery order (docs/pose.md "Sessions across clips").
        key = (aid, msg.revision, msg.track_id)
        with self.lock:
            session, continued = self.sessions.take(key, msg.frames[0].index)
            infer_started = time.perf_counter()
            try:
                seq = self.estimator.estimate_sequence(frames, boxes, session)
            except BaseException:
                self.sessions.discard(session)
                raise
            POSE_INFERENCE_SECONDS.labels(SERVICE).observe(time.perf_counter() - infer_started)
            self.sessions.keep(key, session, msg.frames[-1].index + 1)
        POSE_SESSIONS.labels(SERVICE, "continued" if continued else "fresh").inc()
        POSE_BATCH_FRAMES.labels(SERVICE).observe(sum(b is not None for b in boxes))   # frames the model ran on
        refiner = self.refiner
        if self.refiner_name in ("one_euro", "strn") and msg.video.fps:
            # one_euro's cut-offs are in Hz; the STRN dilates its windows and scales its post-pass to the
            # clip's frame rate (its weights are loaded once and cached, so this is cheap per clip)
            refiner = make_refiner(self.refiner_name, freq_hz=msg.video.fps, **self.refiner_params)
        # left/right swaps of the single-frame model undone over the clip (services/pose/swaps.py), then
        # the refiner: refine_clip, the same function the evaluation scores (docs/pose.md, protocol);
        # the 3D landmarks of a relabelled half are relabelled with it. The STRN also sees the previous
        # clip's last raw poses, stored with that clip, so the boundary does not cut its windows
        # (absent when that clip is not stored yet: clips may arrive out of order; then none is used).
        n_ctx = context_frames(refiner)
        context = _previous_tail(ctx.store, aid, msg, n_ctx) if n_ctx else None
        kps, swapped = refine_clip(refiner, seq.keypoints_px, seq.present, boxes, context)   # [T,33,3], [T,2]
        world = relabel_like(seq.world_m, swapped)
        doc = ClipPosesDocument(
            analysis_id=aid, clip_index=msg.clip_index, track_id=msg.track_id, revision=msg.revision,
            pose_model=self.pose_model, refiner=self.refiner.name, landmarks=list(LANDMARK_NAMES),
            seconds=round(time.perf_counter() - started, 4),
            lr_swaps_fixed=LrSwaps(upper=int(swapped[:, 0].sum()), lower=int(swapped[:, 1].sum())),
            context_frames=0 if context is None else len(context[1]),
            session_continued=continued,
            frames=[
                PoseFrame(
                    index=f.index, t_s=f.t_s, bbox_px=f.bbox_px,
                    track_state=f.track_state, track_score=f.track_score,
                    keypoints=_rows(kps[t], 2) if seq.present[t] else None,
                    keypoints_3d=_rows(world[t], 4) if seq.present[t] else None,
                )
                for t, f in enumerate(msg.frames)
            ],
        )
        if _stale(ctx, msg):   # the athlete was switched while this clip was posed
            return None
        if n_ctx:   # the raw (unrefined, as BlazePose gave them) poses the next clip takes as context
            tail = range(max(0, len(msg.frames) - n_ctx), len(msg.frames))
            doc.raw_tail = RawTail(first_index=msg.frames[tail[0]].index,
                                   keypoints=[_rows(seq.keypoints_px[t], 3) if seq.present[t] else None for t in tail])
        return doc


def _reusable(ctx: Context, msg: TrackedClip, pose_model: str, refiner: str) -> ClipPosesDocument | None:
    """The clip as stored for an earlier revision, restamped for this one, where that revision posed
    exactly these frames in exactly these boxes with this model and refiner: the same crops give the
    same poses. The tracker re-sends every clip when the athlete chosen over the whole clip differs
    from the provisional one it streamed (services/tracker/worker.py); the clips that did not change
    are not posed twice. (Their refiner context was the earlier revision's previous clip.)"""
    if msg.revision == 0:   # nothing earlier to reuse: no read on the common path
        return None
    try:
        old = ClipPosesDocument.read(ctx.store, keys.clip_poses(msg.analysis_id, msg.clip_index))
    except ObjectNotFound:
        return None
    same = (old.revision < msg.revision and old.pose_model == pose_model and old.refiner == refiner
            and [(f.index, f.bbox_px) for f in old.frames] == [(f.index, f.bbox_px) for f in msg.frames])
    if not same:
        return None
    frames = [p.model_copy(update={"t_s": f.t_s, "track_state": f.track_state, "track_score": f.track_score})
              for p, f in zip(old.frames, msg.frames)]
    return old.model_copy(update={"track_id": msg.track_id, "revision": msg.revision, "frames": frames, "seconds": 0.0})


def _stale(ctx: Context, msg: TrackedClip) -> bool:
    """A clip of an athlete the user has since replaced (an older revision than tracking.json's):
    dropped, so the previous target's poses never mix with the new ones."""
    try:
        current = TrackingDocument.read(ctx.store, keys.tracking(msg.analysis_id)).revision
    except ObjectNotFound:
        return False   # the tracker has not written it yet: nothing was switched
    if msg.revision < current:
        ctx.log.info("stale clip dropped", extra=log_fields(clip_index=msg.clip_index, revision=msg.revision,
                                                            current=current))
        return True
    return False


def _previous_tail(store, aid: str, msg: TrackedClip, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The last n raw poses of the clip just before this one, from its stored document, if it is stored and
    ends where this clip starts; None otherwise (first clip, not stored yet, or stored without a tail)."""
    if msg.clip_index == 0:
        return None
    try:
        prev = ClipPosesDocument.read(store, keys.clip_poses(aid, msg.clip_index - 1))
    except ObjectNotFound:
        return None
    if prev.revision != msg.revision:   # another athlete's clip (before a switch): not context
        return None
    tail = prev.raw_tail
    if not tail or tail.first_index + len(tail.keypoints) != msg.frames[0].index:
        return None
    rows = tail.keypoints[-n:]
    kps = np.full((len(rows), len(LANDMARK_NAMES), 3), np.nan, np.float32)
    for t, r in enumerate(rows):
        if r is not None:
            kps[t] = np.array([p if p is not None else [np.nan] * 3 for p in r], np.float32)
    present = np.array([r is not None for r in rows], bool)
    return (kps, present) if present.any() else None


def _rows(a: np.ndarray, digits: int) -> list[list[float] | None]:
    return [None if not np.all(np.isfinite(r)) else [round(float(v), digits) for v in r] for r in a]


def report_gpu() -> None:
    """coach_gpu_in_use: 1 where torch sees a CUDA device (checked off the start-up path: torch imports slowly)."""
    def check():
        try:
            import torch
            GPU_IN_USE.labels(SERVICE).set(1 if torch.cuda.is_available() else 0)
        except Exception:  # noqa: BLE001 — no torch (CPU image) or no driver: no GPU
            GPU_IN_USE.labels(SERVICE).set(0)

    GPU_IN_USE.labels(SERVICE).set(0)
    threading.Thread(target=check, name="gpu-check", daemon=True).start()


def main() -> None:
    from shared.settings import Settings

    s = Settings.from_env()
    report_gpu()
    stage = PoseStage(s.refiner, s.strn_weights, s.pose_model, s.pose_sessions)
    stage.warm_up()
    run_service(WorkerSpec(SERVICE, s.topics.clips, TrackedClip, stage.handle), s)


if __name__ == "__main__":
    main()
