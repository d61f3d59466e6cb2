"""Suggest service: exemplar clips for each fault, the annotated video, the result document.

consume `verdicts` (AnalysisVerdict) -> for each fault segment retrieve the closest exemplar
clips of correct form (library kept in object storage under exemplars/<sport>/) -> render the
annotated MP4 (skeleton; faulty frames red, correct green) -> store result.json -> produce
`results` (AnalysisCompleted).
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from services.suggest import annotate
from services.suggest.biomech_report import Ahead, attach_biomechanics, warm_up
from shared import result_pages
from shared.documents import (AnalysisRequest, ClipPosesDocument, MalformedDocument, PartialVerdictDocument,
                              PoseFrame, StageStatus, TrackingDocument, VerdictDocument)
from shared.features import frame_features
from shared.messages import AnalysisCompleted, AnalysisVerdict, ClipPoses, PartialVerdict
from shared.observability import ANALYSES_COMPLETED, ANALYSIS_SECONDS, FRAMES, log_fields
from shared.poses import NotAllPosed, keypoints_array, load_clips
from shared.render import fault_flag
from shared.result import AnalysisResult, Artifact, ResultSummary
from shared.skeleton import LANDMARK_NAMES
from shared.store import ObjectNotFound, ObjectStore, keys
from shared.worker import Context, WorkerSpec, run_service

SERVICE = "suggest"
log = logging.getLogger(SERVICE)
FINAL_PARALLEL = 2   # segments drawn at once after the final verdict (nothing else runs then; 2 cores here)


class SegmentRenderer:
    """Renders the annotated video's segments (services/suggest/annotate.py) into the store, once each.

    The store is the truth: a segment whose key is stored is done, whoever rendered it (a worker
    before a restart, another replica, the pre-render of a provisional verdict). Within a process,
    a segment being rendered by one loop is waited for by the other instead of rendered twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}
        self._fetch = ThreadPoolExecutor(max_workers=4, thread_name_prefix="render-fetch")

    def ensure(self, store: ObjectStore, aid: str, segments: list[annotate.Segment], fps: float, width: int,
               height: int, workdir: Path, stop: Callable[[], bool] = lambda: False,
               parallel: int = 1) -> dict[str, Path]:
        """Render and store every segment whose key is not stored yet (until `stop()` says so),
        `parallel` at a time; returns the local files of those rendered here, by key."""
        stored = set(store.list(keys.render_prefix(aid)))
        local: dict[str, Path] = {}

        def load(index: int) -> np.ndarray:   # fetch + decode off the main thread (imdecode releases the GIL)
            return cv2.imdecode(np.frombuffer(store.get_bytes(keys.frame(aid, index)), np.uint8), cv2.IMREAD_COLOR)

        def one(seg: annotate.Segment) -> None:
            key = keys.render_segment(aid, seg.first_frame, seg.content_hash)
            if key in stored or stop():
                return
            with self._lock:
                busy = self._inflight.get(key)
                if busy is None:
                    mine = self._inflight[key] = threading.Event()
            if busy is not None:   # the other loop is drawing this very segment: take its result
                busy.wait(timeout=120)
                if store.exists(key):
                    return
                mine = None
            try:
                path = workdir / f"{seg.first_frame:06d}-{seg.content_hash}.mp4"
                annotate.render(seg.frames, seg.flags, load, fps, width, height, path, pool=self._fetch)
                store.put_file(key, path, "video/mp4")
                local[key] = path
            finally:
                if mine is not None:
                    with self._lock:
                        self._inflight.pop(key, None)
                    mine.set()

        if parallel <= 1:
            for seg in segments:
                one(seg)
        else:   # the final verdict's tail: the other stages are done, both cores are free
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="render-seg") as pool:
                list(pool.map(one, segments))
        return local


def render_annotated(store: ObjectStore, aid: str, segments: list[annotate.Segment], fps: float, width: int,
                     height: int, out: Path, renderer: SegmentRenderer) -> dict:
    """The annotated MP4 at `out`: fetch the segments already stored (while the others are drawn),
    render and store the missing ones, join them all without re-encoding. Returns what it did:
    segments rendered now and reused, the first frame of each rendered one, seconds per step."""
    workdir = out.parent
    t0 = time.perf_counter()
    seg_key = {seg.first_frame: keys.render_segment(aid, seg.first_frame, seg.content_hash) for seg in segments}
    stored = set(store.list(keys.render_prefix(aid)))
    fetch = ThreadPoolExecutor(max_workers=4, thread_name_prefix="render-get")
    fetched = {k: fetch.submit(store.get_file, k, workdir / k.rsplit("/", 1)[-1]) for k in seg_key.values() if k in stored}
    local = renderer.ensure(store, aid, [s for s in segments if seg_key[s.first_frame] not in stored], fps, width,
                            height, workdir, parallel=FINAL_PARALLEL)
    t1 = time.perf_counter()
    parts = []
    for seg in segments:   # a segment another worker stored meanwhile is fetched too
        key = seg_key[seg.first_frame]
        parts.append(local.get(key) or (fetched[key].result() if key in fetched else
                                        store.get_file(key, workdir / key.rsplit("/", 1)[-1])))
    fetch.shutdown()
    t2 = time.perf_counter()
    annotate.join(parts, out)
    return {"rendered": len(local), "reused": len(segments) - len(local),
            "rendered_from": sorted(int(k.rsplit("/", 1)[-1].split("-")[0]) for k in local),
            "render_s": round(t1 - t0, 3), "fetch_wait_s": round(t2 - t1, 3),
            "join_s": round(time.perf_counter() - t2, 3)}


def _other_people(tracking: TrackingDocument, fps: float) -> list[dict]:
    """Everybody else the tracker followed (tracking.json `athletes`, the chosen one excluded):
    frames with index, t_s and box only (no pose is estimated for them)."""
    target = tracking.athlete.track_id
    return [{"track_id": a.track_id, "is_target": False,
             "frames": [{"index": i, "t_s": round(i / fps, 4), "bbox_px": b} for i, b in zip(a.frames, a.boxes_px)]}
            for a in tracking.athletes if a.track_id != target]


class SuggestStage:
    def __init__(self, store: ObjectStore):
        from services.suggest.catalog import ExemplarCatalog

        self.catalog = ExemplarCatalog(store)
        self.renderer = SegmentRenderer()
        self.biomech = Ahead()   # biomechanics computed when the last clip is posed (biomech_report.py)
        self._final_started: set[tuple[str, int]] = set()   # (analysis, revision): the pre-render stops

    def handle(self, msg: AnalysisVerdict, ctx: Context) -> None:
        aid = msg.analysis_id
        started = time.perf_counter()
        tracking = TrackingDocument.read(ctx.store, keys.tracking(aid))
        verdict = VerdictDocument.read(ctx.store, keys.verdict(aid))
        revision = tracking.revision
        if msg.revision < revision or verdict.revision != msg.revision:
            log.info("stale verdict dropped", extra=log_fields(revision=msg.revision, current=revision))
            return   # the athlete was switched since: a verdict of the new one follows
        # the revision of the result already stored, kept while this run overwrites the status
        # (a redelivered verdict must not make a finished analysis look unfinished: shared/status.is_done)
        ctx.status(aid, "running", 0.1, revision=revision, result_revision=_result_revision(ctx.store, aid))
        self._final_started.add((aid, revision))
        try:
            clips = load_clips(ctx.store, aid, tracking.clip_count, revision)
        except NotAllPosed as exc:
            log.info("verdict dropped: poses changed under it", extra=log_fields(error=str(exc)))
            return
        frames = [f for clip in clips for f in clip]
        kps = keypoints_array(frames)
        features = frame_features(kps)                                   # [N, F]
        titles = verdict.fault_titles   # from the model that judged (registry versions too)
        fps = msg.video.fps

        exemplars = self.catalog.for_sport(msg.sport)
        faults = []
        for seg in msg.faults:
            lo, hi = seg.start_frame, seg.end_frame + 1
            suggestions = self.catalog.suggest(features[lo:hi], exemplars, fault=seg.type, fps=fps)
            faults.append({**seg.model_dump(), "title": titles.get(seg.type, seg.type), "suggestions": suggestions})
        ctx.status(aid, "running", 0.3)

        per_frame = {f.index: f for f in verdict.frames}
        flags = {f.index: fault_flag(per_frame[f.index].faults, verdict.thresholds) for f in frames}
        width, height = msg.video.width, msg.video.height
        segments = annotate.plan(clips, flags, revision, fps, width, height)
        result = AnalysisResult(
            id=aid, sport=msg.sport, video=msg.video,
            athletes=[{
                "track_id": tracking.athlete.track_id, "is_target": True,
                "choice_reason": tracking.athlete.reason,
                "frames": [{
                    "index": f.index, "t_s": f.t_s, "bbox_px": f.bbox_px,
                    "keypoints": _named(f.keypoints), "keypoints_3d": _named(f.keypoints_3d),
                    "angles_deg": per_frame[f.index].angles_deg,
                    "faults": per_frame[f.index].faults or {},
                    "activity": per_frame[f.index].activity, "view": per_frame[f.index].view,
                    "phase": per_frame[f.index].phase,
                } for f in frames],
            }] + _other_people(tracking, fps),
            faults=faults,
            artifacts={"annotated_video": Artifact(key=keys.annotated_video(aid), content_type="video/mp4")},
            timings_s={},   # below, once the video is stored
            models={**_first_clip(ctx.store, aid), "judge": msg.model_version,
                    "exemplars": self.catalog.version(msg.sport)},
            repetitions=msg.repetitions, score=msg.score,   # exercise sports (#5): from the verdict
            judgement={"synthetic": msg.synthetic, "label_source": msg.label_source, "finding": msg.finding,
                       "frames_performing": msg.frames_performing, "not_judgeable": msg.not_judgeable},
            revision=revision,
        )
        # -- biomechanics (#11): per-frame angles_3d_deg, the `biomechanics` section, plot + CSV artifacts --
        # They need the poses only: computed when the last clip was posed (biomech_ahead) and reused
        # here when these poses have their fingerprint; else computed beside the video, as before
        def biomechanics() -> tuple[float, str]:
            t = time.perf_counter()
            how = attach_biomechanics(ctx.store, aid, result, frames, fps, ahead=self.biomech)
            return time.perf_counter() - t, how

        side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="biomech")
        bio = side.submit(biomechanics)
        render_started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="coach-render-") as tmp:
                out = Path(tmp) / "annotated.mp4"
                done = render_annotated(ctx.store, aid, segments, fps, width, height, out, self.renderer)
                ctx.store.put_file(keys.annotated_video(aid), out, "video/mp4")
            log.info("annotated video", extra=log_fields(segments=len(segments), **done,
                                                         seconds=round(time.perf_counter() - render_started, 3)))
            FRAMES.labels(SERVICE).inc(len(frames))
            # as before: the verdict -> the video stored (biomechanics, pages and result.json follow)
            result.timings_s = self._timings(ctx.store, aid, tracking, started)
        finally:
            side.shutdown(wait=True)
        bio_s, bio_how = bio.result()   # re-raises a store outage (attach_biomechanics logs and swallows the rest)
        ctx.status(aid, "running", 0.9)
        t_pages = time.perf_counter()
        store_pages(ctx.store, aid, result)   # before result.json: a stored result always has its pages
        ctx.store.put_json(keys.result(aid), result)
        log.info("result stored", extra=log_fields(biomechanics_s=round(bio_s, 3), biomechanics=bio_how,
                                                   pages_and_result_s=round(time.perf_counter() - t_pages, 3)))
        ctx.status(aid, "done", 1.0, seconds=round(time.perf_counter() - started, 3), revision=revision,
                   result_revision=revision)
        ctx.emit(ctx.settings.topics.results, AnalysisCompleted(analysis_id=aid, status="done", result_key=keys.result(aid)), key=aid)
        ANALYSES_COMPLETED.labels(SERVICE, "done").inc()
        _observe_end_to_end(ctx.store, aid, msg.sport)
        self._final_started.discard((aid, revision))   # from now on the stored result says so
        swept = sweep(ctx.store, aid, revision, {keys.render_segment(aid, g.first_frame, g.content_hash)
                                                 for g in segments})
        if swept:
            log.info("superseded objects deleted", extra=log_fields(deleted=swept))

    def prerender(self, msg: PartialVerdict, ctx: Context) -> None:
        """A provisional verdict came (`partial-verdicts`, this loop's own consumer group): draw and
        store the segments of the clips it covers with its per-frame flags, so that the final verdict
        finds them (annotate.py). A bonus: it never fails or holds up the analysis."""
        try:
            self._prerender_partial(msg, ctx)
        except Exception as exc:  # noqa: BLE001 — the final verdict renders whatever is missing
            log.warning("pre-render skipped", extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:300]))

    def biomech_ahead(self, msg: ClipPoses, ctx: Context) -> None:
        """A clip was posed (`poses`, a consumer group of its own: the check never waits behind the
        segments being drawn, which on large frames fall behind pose). When it completes the
        sequence, compute the biomechanics now (they need the poses only; the final verdict reuses
        them). Never fails the analysis: the final verdict computes them itself."""
        try:
            self._biomech_ahead(msg, ctx)
        except Exception as exc:  # noqa: BLE001
            log.warning("biomechanics ahead skipped", extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:300]))

    def prerender_clip(self, msg: ClipPoses, ctx: Context) -> None:
        """A clip was posed (`poses`, own consumer group) after the latest provisional verdict's prefix,
        and that verdict found no exercise so far: draw the clip all grey (not judged) now, as the
        final verdict will if the exercise never shows. If it does show, the final verdict's colours
        give other keys and the clip is drawn again then. Never fails the analysis either."""
        try:
            self._prerender_clip(msg, ctx)
        except Exception as exc:  # noqa: BLE001
            log.warning("pre-render skipped", extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:300]))

    def _final_or_done(self, store: ObjectStore, aid: str, revision: int) -> bool:
        """The final verdict of this revision is being drawn here, or a result of it is stored."""
        return (aid, revision) in self._final_started or _result_revision(store, aid) >= revision

    @staticmethod
    def _partial(store: ObjectStore, aid: str, revision: int) -> PartialVerdictDocument | None:
        try:
            doc = PartialVerdictDocument.read(store, keys.partial_verdict(aid))
        except (ObjectNotFound, MalformedDocument):
            return None
        return doc if doc.revision == revision else None   # another revision: its own partials follow

    @staticmethod
    def _geometry(store: ObjectStore, aid: str, revision: int) -> tuple[float, int, int] | None:
        """(fps, width, height) as the final verdict will give them; None when the athlete was switched."""
        try:
            tracking = TrackingDocument.read(store, keys.tracking(aid))
        except ObjectNotFound:   # the tracker is still reading: the upload's figures (the gateway probed them)
            video = AnalysisRequest.read(store, keys.request(aid)).video
            return float(video.fps), video.width, video.height
        if tracking.revision != revision:
            return None
        return float(tracking.fps), tracking.width, tracking.height

    def _prerender_partial(self, msg: PartialVerdict, ctx: Context) -> None:
        aid, revision = msg.analysis_id, msg.revision
        if self._final_or_done(ctx.store, aid, revision):
            return   # the final verdict renders what it needs itself
        doc = self._partial(ctx.store, aid, revision)
        geometry = self._geometry(ctx.store, aid, revision)
        if doc is None or doc.frame_flags is None or geometry is None:
            return   # a switch since, or a judge that gives no flags
        clips = load_clips(ctx.store, aid, doc.clips_posed, revision)   # NotAllPosed: a switch under way
        frames = [f for clip in clips for f in clip]
        if len(frames) != len(doc.frame_flags):
            log.info("pre-render skipped: the partial's flags do not match its clips",
                     extra=log_fields(frames=len(frames), flags=len(doc.frame_flags)))
            return
        self._prerender(ctx, aid, revision, clips, {f.index: fl for f, fl in zip(frames, doc.frame_flags)}, geometry,
                        sequence=doc.sequence)

    def _biomech_ahead(self, msg: ClipPoses, ctx: Context) -> None:
        """All clips of this revision are posed (tracking.json, written before the tracker's last clip
        goes out, gives their count, as for the judge): compute and store the biomechanics now."""
        aid, revision = msg.analysis_id, msg.revision
        if self._final_or_done(ctx.store, aid, revision):
            return   # the final verdict computes them itself
        try:
            tracking = TrackingDocument.read(ctx.store, keys.tracking(aid))
        except ObjectNotFound:
            return   # the tracker is still reading: the last clip comes after tracking.json
        if tracking.revision != revision or len(ctx.store.list(keys.poses_prefix(aid))) < tracking.clip_count:
            return
        try:
            clips = load_clips(ctx.store, aid, tracking.clip_count, revision)
        except NotAllPosed:
            return   # a switch under way, or a clip posed again

        def done(how: str, seconds: float) -> None:   # in the computing thread, a while later
            log.info("biomechanics ahead", extra=log_fields(analysis_id=aid, revision=revision, done=how,
                                                            seconds=round(seconds, 3)))

        how = self.biomech.start(ctx.store, aid, [f for clip in clips for f in clip], float(tracking.fps), done)
        if how != "started":
            log.info("biomechanics ahead", extra=log_fields(clip_index=msg.clip_index, done=how))

    def _prerender_clip(self, msg: ClipPoses, ctx: Context) -> None:
        aid, revision = msg.analysis_id, msg.revision
        if self._final_or_done(ctx.store, aid, revision):
            return
        doc = self._partial(ctx.store, aid, revision)
        if doc is None or doc.finding is None or msg.clip_index < doc.clips_posed:
            return   # no guess to draw from, or a clip the partial's own flags cover
        geometry = self._geometry(ctx.store, aid, revision)
        clip = ClipPosesDocument.read(ctx.store, keys.clip_poses(aid, msg.clip_index))
        if geometry is None or clip.revision != revision:
            return
        self._prerender(ctx, aid, revision, [clip.frames], {f.index: None for f in clip.frames}, geometry,
                        clip=msg.clip_index)

    def _prerender(self, ctx: Context, aid: str, revision: int, clips: list[list[PoseFrame]],
                   flags: dict[int, bool | None], geometry: tuple[float, int, int], **why) -> None:
        fps, width, height = geometry
        segments = annotate.plan(clips, flags, revision, fps, width, height)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="coach-prerender-") as tmp:
            done = self.renderer.ensure(ctx.store, aid, segments, fps, width, height, Path(tmp),
                                        stop=lambda: (aid, revision) in self._final_started)
        log.info("pre-rendered", extra=log_fields(**why, clips=len(segments), rendered=len(done),
                                                  seconds=round(time.perf_counter() - started, 3)))

    @staticmethod
    def _timings(store: ObjectStore, aid: str, tracking: TrackingDocument, started: float) -> dict[str, float]:
        pose_s = sum(ClipPosesDocument.read(store, k).seconds for k in store.list(keys.poses_prefix(aid)))
        judge = StageStatus.read(store, keys.status(aid, "judge"))
        return {"tracker": tracking.seconds, "pose": round(pose_s, 3),
                "judge": judge.seconds or 0.0, "suggest": round(time.perf_counter() - started, 3)}


def sweep(store: ObjectStore, aid: str, revision: int, keep: set[str]) -> int:
    """After the result of `revision` is stored: delete this analysis's render segments that it does
    not use (`keep`: its own segments' keys) and its biomechanics computed ahead (copied beside the
    result by now). Returns how many objects were deleted.

    Order matters: list first, then check that tracking.json still has `revision`. Segments and
    biomechanics of a later revision can only be made after tracking.json says so (their poses and
    geometry come from it), so none of them is in a listing taken before that check: a pre-render of
    a later revision under way never loses its objects. Then the later revision's final verdict
    sweeps. A redelivery sweeps again and finds nothing more. Never fails the analysis."""
    try:
        listed = store.list(keys.render_prefix(aid)) + store.list(keys.biomech_ahead_prefix(aid))
        try:
            current = TrackingDocument.read(store, keys.tracking(aid)).revision
        except ObjectNotFound:
            return 0
        if current != revision:
            return 0   # the athlete was switched since: the later revision's final verdict sweeps
        gone = [k for k in listed if k not in keep]
        for k in gone:
            store.delete(k)
        return len(gone)
    except Exception as exc:  # noqa: BLE001 — the result is stored; what is left is only space
        log.warning("sweep skipped", extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:300]))
        return 0


def store_pages(store: ObjectStore, aid: str, result: AnalysisResult) -> None:
    """The result in pages (#17) beside result.json: the per-frame part in columnar chunks, then the
    summary (written last: a summary of revision R means every chunk of R is stored)."""
    doc = result.model_dump(mode="json", by_alias=True)
    for k, chunk in enumerate(result_pages.chunks(doc)):
        store.put_json(keys.result_frames(aid, k), chunk)
    store.put_json(keys.result_summary(aid), ResultSummary.model_validate(result_pages.summarize(doc)))


def _result_revision(store: ObjectStore, aid: str) -> int:
    """The athlete revision of the stored result (from suggest's last status), -1 when there is none."""
    try:
        st = StageStatus.read(store, keys.status(aid, SERVICE))
    except ObjectNotFound:
        return -1
    if st.result_revision is not None:
        return st.result_revision
    return 0 if st.state == "done" or store.exists(keys.result(aid)) else -1


def _observe_end_to_end(store: ObjectStore, aid: str, sport: str) -> None:
    """coach_analysis_seconds: from the request's submitted_at (written by the gateway) to now."""
    try:
        submitted = datetime.fromisoformat(AnalysisRequest.read(store, keys.request(aid)).submitted_at)
    except (ObjectNotFound, MalformedDocument, ValueError):
        return   # not submitted through the gateway: nothing to measure from
    if submitted.tzinfo is None:
        submitted = submitted.replace(tzinfo=timezone.utc)
    ANALYSIS_SECONDS.labels(sport).observe(max(0.0, (datetime.now(timezone.utc) - submitted).total_seconds()))


def _first_clip(store: ObjectStore, aid: str) -> dict:
    try:
        doc = ClipPosesDocument.read(store, keys.clip_poses(aid, 0))
        return {"pose_model": doc.pose_model, "refiner": doc.refiner}
    except ObjectNotFound:
        return {}


def _named(rows) -> dict[str, list[float]] | None:
    if rows is None:
        return None
    return {name: r for name, r in zip(LANDMARK_NAMES, rows) if r is not None}


def main() -> None:
    from shared.settings import Settings

    s = Settings.from_env()
    stage = SuggestStage(ObjectStore(s))
    threading.Thread(target=warm_up, name="matplotlib-warm-up", daemon=True).start()
    # provisional verdicts and posed clips get their own loops (and groups): segments are drawn while
    # clips are posed, the biomechanics once the last one is, and neither delays a final verdict's result
    partials = WorkerSpec(SERVICE, s.topics.partial_verdicts, PartialVerdict, stage.prerender,
                          group=f"coach-{SERVICE}-prerender", fail=_never_fail, dead_letter=False)
    clips = WorkerSpec(SERVICE, s.topics.poses, ClipPoses, stage.prerender_clip,
                       group=f"coach-{SERVICE}-prerender-clips", fail=_never_fail, dead_letter=False)
    biomech = WorkerSpec(SERVICE, s.topics.poses, ClipPoses, stage.biomech_ahead,
                         group=f"coach-{SERVICE}-biomech-ahead", fail=_never_fail, dead_letter=False)
    # COACH_SUGGEST_PRERENDER=false: no segment is drawn ahead (the final verdict draws them all); the
    # biomechanics are still computed ahead (no extra CPU: the same work, earlier)
    run_service(WorkerSpec(SERVICE, s.topics.verdicts, AnalysisVerdict, stage.handle), s,
                also=(partials, clips, biomech) if s.suggest_prerender else (biomech,))


def _never_fail(msg: PartialVerdict | ClipPoses, ctx: Context, reason: str) -> None:
    """A pre-render that cannot be done is not the analysis's failure: the final verdict renders it."""
    log.warning("pre-render given up", extra=log_fields(analysis_id=msg.analysis_id, reason=reason[:300]))


if __name__ == "__main__":
    main()
