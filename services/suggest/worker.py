"""Suggest service: exemplar clips for each fault, the annotated video, the result document.

consume `verdicts` (AnalysisVerdict) -> for each fault segment retrieve the closest exemplar
clips of correct form (library kept in object storage under exemplars/<sport>/) -> render the
annotated MP4 (skeleton; faulty frames red, correct green) -> store result.json -> produce
`results` (AnalysisCompleted).
"""
from __future__ import annotations

import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from shared import result_pages
from shared.documents import (AnalysisRequest, ClipPosesDocument, MalformedDocument, PoseFrame, StageStatus,
                              TrackingDocument, VerdictDocument)
from shared.features import frame_features
from shared.messages import AnalysisCompleted, AnalysisVerdict
from shared.observability import ANALYSES_COMPLETED, ANALYSIS_SECONDS, FRAMES, log_fields
from shared.poses import NotAllPosed, load_sequence
from shared.render import H264Writer, draw_label, draw_pose
from shared.result import AnalysisResult, Artifact, ResultSummary
from shared.skeleton import LANDMARK_NAMES
from shared.store import ObjectNotFound, ObjectStore, keys
from shared.worker import Context, WorkerSpec, run_service

SERVICE = "suggest"
log = logging.getLogger(SERVICE)
RED, GREEN, GREY = (40, 40, 230), (60, 200, 60), (160, 160, 160)


def render_annotated(store: ObjectStore, aid: str, frames: list[PoseFrame], flagged: list[bool | None],
                     fps: float, width: int, height: int, out: Path) -> None:
    """Draw each frame's skeleton: red where a fault is flagged, green where judged fine, grey where
    not judged (flagged None: not performing the exercise, or too few joints for a verdict)."""
    def load(f: PoseFrame) -> np.ndarray:   # fetch + decode off the main thread (imdecode releases the GIL)
        return cv2.imdecode(np.frombuffer(store.get_bytes(keys.frame(aid, f.index)), np.uint8), cv2.IMREAD_COLOR)

    fetch = ThreadPoolExecutor(max_workers=4, thread_name_prefix="render-fetch")
    images = fetch.map(load, frames)
    # ultrafast: this encode sits at the end of every analysis, after all other stages
    with H264Writer(out, fps, width, height, preset="ultrafast") as writer:
        for f, bad, img in zip(frames, flagged, images):
            if f.bbox_px is not None:
                x, y, w, h = (int(round(v)) for v in f.bbox_px)
                cv2.rectangle(img, (x, y), (x + w, y + h), GREY, 1)
            if f.keypoints is not None:
                kps = np.array([r if r is not None else (np.nan,) * 3 for r in f.keypoints], dtype=np.float32)
                draw_pose(img, kps, GREY if bad is None else RED if bad else GREEN)
            draw_label(img, f"frame {f.index}" + (" FAULT" if bad else " not judged" if bad is None and f.keypoints
                                                  else ""), RED if bad else (255, 255, 255))
            writer.write(img)
    fetch.shutdown()


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
        try:
            frames, kps = load_sequence(ctx.store, aid, tracking.clip_count, revision)
        except NotAllPosed as exc:
            log.info("verdict dropped: poses changed under it", extra=log_fields(error=str(exc)))
            return
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
        thresholds = verdict.thresholds
        flagged = []
        for f in frames:
            probs = per_frame[f.index].faults
            flagged.append(None if probs is None else any(p is not None and p >= thresholds[k] for k, p in probs.items()))
        with tempfile.TemporaryDirectory(prefix="coach-render-") as tmp:
            out = Path(tmp) / "annotated.mp4"
            render_annotated(ctx.store, aid, frames, flagged, fps, msg.video.width, msg.video.height, out)
            ctx.store.put_file(keys.annotated_video(aid), out, "video/mp4")
        FRAMES.labels(SERVICE).inc(len(frames))
        ctx.status(aid, "running", 0.9)

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
            timings_s=self._timings(ctx.store, aid, tracking, started),
            models={**_first_clip(ctx.store, aid), "judge": msg.model_version,
                    "exemplars": self.catalog.version(msg.sport)},
            repetitions=msg.repetitions, score=msg.score,   # exercise sports (#5): from the verdict
            judgement={"synthetic": msg.synthetic, "label_source": msg.label_source, "finding": msg.finding,
                       "frames_performing": msg.frames_performing, "not_judgeable": msg.not_judgeable},
            revision=revision,
        )
        # -- biomechanics (#11): per-frame angles_3d_deg, the `biomechanics` section, plot + CSV artifacts --
        from services.suggest.biomech_report import attach_biomechanics
        attach_biomechanics(ctx.store, aid, result, frames, fps)
        store_pages(ctx.store, aid, result)   # before result.json: a stored result always has its pages
        ctx.store.put_json(keys.result(aid), result)
        ctx.status(aid, "done", 1.0, seconds=round(time.perf_counter() - started, 3), revision=revision,
                   result_revision=revision)
        ctx.emit(ctx.settings.topics.results, AnalysisCompleted(analysis_id=aid, status="done", result_key=keys.result(aid)), key=aid)
        ANALYSES_COMPLETED.labels(SERVICE, "done").inc()
        _observe_end_to_end(ctx.store, aid, msg.sport)

    @staticmethod
    def _timings(store: ObjectStore, aid: str, tracking: TrackingDocument, started: float) -> dict[str, float]:
        pose_s = sum(ClipPosesDocument.read(store, k).seconds for k in store.list(keys.poses_prefix(aid)))
        judge = StageStatus.read(store, keys.status(aid, "judge"))
        return {"tracker": tracking.seconds, "pose": round(pose_s, 3),
                "judge": judge.seconds or 0.0, "suggest": round(time.perf_counter() - started, 3)}


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
    run_service(WorkerSpec(SERVICE, s.topics.verdicts, AnalysisVerdict, stage.handle), s)


if __name__ == "__main__":
    main()
