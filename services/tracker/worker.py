"""Tracker service: decode the video once, store frames, follow the athlete, publish clips.

consume `analyses` (AnalysisRequested) -> store JPEG frames + tracking.json -> produce `clips`
(TrackedClip, T consecutive frames each, keyed per clip so pose workers share one analysis).

With the default tracker (`mot`) the clips streamed while the video is read are of a provisional
athlete; once the whole clip is seen the athlete is chosen, and where the final boxes differ from
the streamed ones, tracking.json and every clip go out again as revision 1 (the streamed revision 0
never completes: its last clip is held back; pose reuses the clips whose boxes did not change).
"""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from shared.clips import clip_count, clip_end, effective_first
from shared.documents import ChosenAthlete, TrackingDocument
from shared.messages import AnalysisRequested, FrameRef, TrackedClip, VideoInfo
from shared.observability import FRAMES
from shared.store import keys
from shared.video import iter_frames
from shared.worker import AnalysisFailed, Context, WorkerSpec, run_service

SERVICE = "tracker"


def _frame_ref(aid: str, ft, fps: float) -> FrameRef:
    bbox = None if ft.bbox_px is None else [round(float(v), 2) for v in ft.bbox_px]
    return FrameRef(index=ft.index, t_s=round(ft.index / fps, 4), frame_key=keys.frame(aid, ft.index),
                    bbox_px=bbox, track_score=round(float(ft.score), 4), track_state=ft.state)


def _store_frame(store, key: str, frame: np.ndarray, quality: int) -> None:
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise AnalysisFailed(f"a frame could not be encoded as JPEG ({key})")
    store.put_bytes(key, jpeg.tobytes(), "image/jpeg")


def handle(msg: AnalysisRequested, ctx: Context, detector, everyone_detector=None) -> None:
    """Track one analysis with the worker's detectors (`TrackerStage`: the single-target tracker's,
    and the multi-person thread's)."""
    from services.tracker.results import NoPersonFound

    aid, s = msg.analysis_id, ctx.settings
    started = time.perf_counter()
    ctx.status(aid, "running", 0.0)
    expected = max(1, msg.video.frames or 1)
    with tempfile.TemporaryDirectory(prefix="coach-tracker-") as tmp:
        path = ctx.store.get_file(msg.video_key, Path(tmp) / "source")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise AnalysisFailed("the uploaded file could not be opened as a video")
        fps = cap.get(cv2.CAP_PROP_FPS) or msg.video.fps
        fps = fps if 0 < fps < 1000 else msg.video.fps
        target = tuple(msg.target_bbox_px) if msg.target_bbox_px else None
        # the refinement pass (mot) reads the video again inside finish(): its progress is the second half
        tracker = make_tracker(s, target, fps, detector, path,
                               lambda k: ctx.status(aid, "running", min(0.99, 0.5 + 0.5 * k / expected)),
                               everyone_detector)
        everyone = getattr(tracker, "everyone_frames", None) is not None   # the streaming tracker's thread

        def progress() -> float:
            # the streaming tracker: the first half is both reads (the stream's and the thread's), the
            # second the second read, where the chosen athlete was not the provisional one
            if everyone:
                return min(0.99, 0.25 * (index + tracker.everyone_frames) / expected)
            return min(0.99, index / expected)

        if everyone:
            tracker.waiting = lambda: ctx.status(aid, "running", progress(), frames=index,
                                                 everyone_frames=tracker.everyone_frames)
        uploads: dict[int, Future] = {}
        pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="frame-upload")
        pending: list = []          # final FrameTracks not yet published
        clip_index = 0
        info = VideoInfo(fps=fps, width=msg.video.width, height=msg.video.height, frames=msg.video.frames)

        size, first = s.clip_frames, effective_first(s.clip_frames, s.first_clip_frames)
        published = 0               # frames published so far: the next clip starts there
        streamed: list = []         # every FrameTrack taken (the provisional athlete's, with `mot`)
        revision = 0

        def publish(frames: list, is_last: bool) -> None:
            nonlocal clip_index, published
            for ft in frames:   # a clip may only reference frames that are stored
                if ft.index in uploads:
                    uploads.pop(ft.index).result()
            clip = TrackedClip(analysis_id=aid, sport=msg.sport, clip_index=clip_index, video=info,
                               frames=[_frame_ref(aid, ft, fps) for ft in frames], is_last=is_last,
                               revision=revision)
            ctx.emit(s.topics.clips, clip, key=f"{aid}:{clip_index}")
            clip_index += 1
            published += len(frames)

        def next_clip() -> int:   # frames in the next clip (shared/clips.py: a short first one, then cut at multiples of size)
            return clip_end(published, size, first) - published

        def take(tracks: list) -> None:
            streamed.extend(_frame_ref(aid, ft, fps) for ft in tracks)
            pending.extend(tracks)
            while len(pending) > next_clip():   # keep >= 1 frame back so the last clip is known
                n = next_clip()
                publish(pending[:n], is_last=False)
                del pending[:n]

        # The gateway checks the duration a container declares; one that declares none (or lies)
        # is stopped here, so a stream without end cannot keep a worker forever.
        max_frames = int(s.max_duration_s * fps) + 1
        index = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if index >= max_frames:
                    raise AnalysisFailed(f"the video lasts longer than {s.max_duration_s:.0f} s, the most accepted "
                                         "(its header did not say so)")
                # encoded and stored off the tracking loop (imencode releases the GIL): the loop never waits
                # on the store; publish() waits for a clip's frames before it references them
                uploads[index] = pool.submit(_store_frame, ctx.store, keys.frame(aid, index), frame, s.jpeg_quality)
                take(tracker.push(frame))
                index += 1
                FRAMES.labels(SERVICE).inc()
                if index % 50 == 0:
                    ctx.status(aid, "running", progress(), frames=index)
            if index == 0:
                raise AnalysisFailed("the video has no decodable frames")
            try:
                take(tracker.finish())
            except NoPersonFound as exc:
                raise AnalysisFailed(f"nobody was found in the video: {exc}") from None
            final = getattr(tracker, "final", None)
            final_refs = None if final is None else [_frame_ref(aid, ft, fps) for ft in final]
            if final_refs is not None and _boxes(final_refs) != _boxes(streamed):
                # the athlete chosen over the whole clip is not (all) what was streamed: every clip
                # again, as the next revision (the streamed one never gets its last clip)
                for f in uploads.values():
                    f.result()
                uploads.clear()
                revision, clip_index, published = 1, 0, 0
                pending[:] = final
            choice = tracker.choice
            n_clips = clip_count(published + len(pending), size, first)   # the layout of every frame returned
            # tracking.json is written before the last clip goes out: the judge reads the clip
            # count from it to know when an analysis is complete.
            tracking = TrackingDocument(
                analysis_id=aid, frames=index, fps=fps, width=msg.video.width,
                height=msg.video.height, clip_count=n_clips, clip_frames=size,
                first_clip_frames=first if first < size else 0,
                athlete=ChosenAthlete(track_id=choice.track_id if choice else 0,
                                      reason=choice.reason if choice else "no choice made",
                                      candidates=_jsonable(choice.candidates if choice else [])),
                **people_doc(tracker, s, fps),
                seconds=round(time.perf_counter() - started, 3), revision=revision,
            )
            ctx.store.put_json(keys.tracking(aid), tracking)
            if revision:
                # the provisional poses of clips whose boxes changed are of someone else (or other crops):
                # removed, so the pose stage's progress counts this revision's clips (the unchanged ones
                # stay: pose reuses them); a late write of one is of the older revision, which the judge skips
                for k, (a, b) in enumerate(tracking.clip_spans()):
                    if _boxes(final_refs[a:b]) != _boxes(streamed[a:b]):
                        ctx.store.delete(keys.clip_poses(aid, k))
            while pending:
                n = next_clip()
                chunk = pending[:n]
                del pending[:n]
                publish(chunk, is_last=not pending)
        finally:
            cap.release()
            pool.shutdown(wait=True)
            if hasattr(tracker, "close"):   # the multi-person thread, when the analysis failed half way
                tracker.close()
    ctx.status(aid, "done", 1.0, frames=index, clip_count=clip_index,
               seconds=round(time.perf_counter() - started, 3))


class TrackerStage:
    """The tracker worker: owns its PersonDetectors, built once at start-up (LiteRT import +
    interpreter: ~0.4 s on the 2-core machine, which the first analysis used to pay before its
    first clip) and lent to each analysis's tracker, their pass counters restarted: one for the
    single-target tracker, one for the multi-person thread (an interpreter is not shared between
    threads). One analysis is tracked at a time per stage (athlete switches detect nothing)."""

    def __init__(self, detector=None, everyone_detector=None):
        from services.tracker.detector import PersonDetector
        self.detector = detector if detector is not None else PersonDetector()
        self.everyone_detector = everyone_detector if everyone_detector is not None else PersonDetector()

    def handle(self, msg: AnalysisRequested, ctx: Context) -> None:
        self.detector.passes = self.everyone_detector.passes = 0
        handle(msg, ctx, self.detector, self.everyone_detector)


def _boxes(refs) -> list:
    return [(r.index, r.bbox_px) for r in refs]


def make_tracker(s, target, fps: float, detector, path: Path | None = None, progress=None, everyone_detector=None):
    """The tracker the settings ask for (COACH_TRACKER, COACH_ATHLETE_POLICY, COACH_MIN_TRACK_S,
    COACH_TRACKER_REFINE), on the worker's detectors. "mot" streams a provisional athlete while a
    thread follows everyone on its own read of the video file, and chooses after the whole clip (a
    second read where the chosen athlete is someone else; frames are not kept in memory)."""
    if s.tracker == "legacy":
        from services.tracker.athlete import AthleteTracker
        return AthleteTracker(target_bbox_px=target, detector=detector)
    if s.tracker != "mot":
        raise ValueError(f"COACH_TRACKER={s.tracker!r}: expected mot or legacy")
    from services.tracker.mot import MotAthleteTracker

    def reread():
        return iter_frames(path)

    if path is None:   # no file to read again: the multi-person tracker alone, after the whole clip
        return MotAthleteTracker(target_bbox_px=target, detector=detector, fps=fps, policy=s.athlete_policy,
                                 min_track_s=s.min_track_s, refine=False, progress=progress)
    from services.tracker.mot import StreamingAthleteTracker
    return StreamingAthleteTracker(reread, detector, everyone_detector, fps=fps, policy=s.athlete_policy,
                                   min_track_s=s.min_track_s, target_bbox_px=target, refine=s.tracker_refine,
                                   progress=progress)


def people_doc(tracker, s, fps: float) -> dict:
    """tracking.json's everyone part: `athletes` (every person followed >= min_track_s: track_id,
    frames, boxes_px, score, seconds; the chosen one first) and `choice` (track_id, reason,
    alternatives, policy)."""
    choice = tracker.choice
    athletes = getattr(tracker, "athletes", None)
    if athletes is None:   # legacy tracker: its tracks, athlete included
        min_frames = max(1, int(round(s.min_track_s * fps)))
        athletes = [{"track_id": k, "frames": [i for i, _ in v], "boxes_px": [[round(float(x), 1) for x in b] for _, b in v],
                     "score": None, "seconds": round(len(v) / fps, 2)}
                    for k, v in tracker.tracks().items() if len(v) >= min_frames or (choice and k == choice.track_id)]
    if choice is not None:
        athletes = sorted(athletes, key=lambda a: a["track_id"] != choice.track_id)
    return {"athletes": athletes,
            "choice": {"track_id": choice.track_id if choice else None, "reason": choice.reason if choice else None,
                       "alternatives": _jsonable(getattr(tracker, "alternatives", [])),
                       "policy": getattr(tracker, "policy", "legacy")}}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        return round(float(obj), 3)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def main() -> None:
    from services.tracker.retarget import handle_selection
    from shared.messages import AthleteSelected
    from shared.settings import Settings

    s = Settings.from_env()
    # One OpenCV thread, as the tracker is measured (docs/tracker.md): the stack gives the tracker and pose
    # two cores, and OpenCV's pool splitting small images (KCF, resizes) across both only waits on pose.
    # Frames are JPEG-encoded on the upload pool's threads, alongside the tracking loop.
    cv2.setNumThreads(1)
    stage = TrackerStage()   # the detector loaded before the first analysis comes, not on its way to the first clip
    # athlete switches get their own loop (and group): a short retarget never waits behind a long tracking
    run_service(WorkerSpec(SERVICE, s.topics.analyses, AnalysisRequested, stage.handle), s,
                also=(WorkerSpec(SERVICE, s.topics.athlete_selections, AthleteSelected, handle_selection,
                                 group=f"coach-{SERVICE}-selections"),))


if __name__ == "__main__":
    main()
