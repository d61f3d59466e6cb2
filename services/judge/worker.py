"""Judge service: per-frame fault probabilities and fault segments for a whole analysis.

consume `poses` (ClipPoses) -> when every clip of the analysis has its poses stored, judge the
whole sequence at once (the packs use temporal deltas, which clip edges would cut) -> store
verdict.json -> produce `verdicts` (AnalysisVerdict, keyed by analysis id) for the suggest
service and for integrators.

Completeness is read from object storage (poses/ objects vs the tracker's clip count), not from
worker memory, so a restarted or rebalanced judge picks up where another left off. The verdict is
published once per stored sequence: the judge's `done` status (written once the broker has
acknowledged the verdict) carries a fingerprint of the clip documents judged, and a later message
finding the same ones (the last clips stored before the judge handled their messages, or a
redelivery) publishes nothing; a clip posed again is judged again. Integrators keep the latest
verdict per analysis id.

While clips are still coming, the judge also judges the contiguous prefix posed so far now and
then (the first clip, then each time the prefix has grown by half) and publishes a provisional
PartialVerdict on `partial-verdicts` (stored as partial.json): only the faults that ended at least
1 s before the prefix's end, under the same activity gating (services/judge/partial.py). A
partial never fails or holds up the analysis: an error in one is logged and the message goes on.

Models come from the registry in object storage (services/judge/registry.py: the current version
of each sport; the shipped packs are uploaded as first versions on first use, and used directly
if the store has no version of a sport). A background thread consumes the `control` topic with
its own consumer group (unique per worker process, so every worker sees every message; offsets
start at the latest): on ModelPublished it loads that version and swaps it in, with no restart.
An analysis keeps the pack it started with; the next one uses the new version, which its verdict
names. Every `recheck_s` (60 s) the thread also compares the loaded versions with current.json,
which covers a control message missed while the consumer was (re)joining.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid

import numpy as np

from services.judge.segments import fault_segments
from services.judge import partial
from shared.documents import (
    AnalysisRequest, MalformedDocument, PartialVerdictDocument, StageStatus, TrackingDocument, VerdictDocument,
    VerdictFrame,
)
from shared.messages import (
    AnalysisVerdict, ClipPoses, FaultSegment, ModelPublished, NotJudgeable, PartialVerdict, VideoInfo,
)
from shared.observability import FRAMES, log_fields
from shared.poses import NotAllPosed, keypoints_array, load_clip_documents
from shared.store import ObjectNotFound, ObjectStore, keys
from shared.worker import AnalysisFailed, Context, HandlerDeadlineExceeded, WorkerSpec, run_service

SERVICE = "judge"
log = logging.getLogger(SERVICE)


class JudgeStage:
    def __init__(self, settings=None, store: ObjectStore | None = None, recheck_s: float = 60.0) -> None:
        self._packs: dict = {}               # sport -> SportPack in use
        self._lock = threading.Lock()
        self.settings = settings
        self._store = store
        self.registry = None
        self.recheck_s = recheck_s
        self.reloads: list[dict] = []        # {"sport", "version", "reason", "at"}: what was swapped in, and why
        self.control_ready = threading.Event()  # set once the control consumer has its partitions and start offsets
        self._stop = threading.Event()
        self._control_thread: threading.Thread | None = None

    # -- models -----------------------------------------------------------------------
    def _registry(self, store: ObjectStore | None = None):
        from services.judge.registry import ModelRegistry

        if self.registry is None:
            store = store or self._store or (ObjectStore(self.settings) if self.settings is not None else None)
            if store is not None:
                self.registry = ModelRegistry(store)
        return self.registry

    def pack(self, sport: str, store: ObjectStore | None = None):
        """The pack in use for sport: the registry's current version, else the shipped pack."""
        from services.judge.packs import available_packs, load_pack
        from shared.sports import SPORT_RE

        with self._lock:
            if sport in self._packs:
                return self._packs[sport]
        reg = self._registry(store)
        pack, known = None, set(available_packs())
        if reg is not None and SPORT_RE.match(sport):
            reg.ensure_seeded()
            version = reg.current_version(sport)
            if version:
                pack = reg.load(sport, version)
            else:
                known |= set(reg.sports())
        if pack is None:
            try:
                pack = load_pack(sport)
            except KeyError:
                raise AnalysisFailed(f"unknown sport {sport!r}; known: {', '.join(sorted(known))}") from None
        with self._lock:
            return self._packs.setdefault(sport, pack)  # a reload that raced us wins

    def reload(self, sport: str, version: str, reason: str) -> bool:
        """Load a registry version and swap it in for the next analyses; False if already in use."""
        with self._lock:
            cur = self._packs.get(sport)
        if cur is not None and cur.model_version == version:
            return False
        pack = self._registry().load(sport, version)      # outside the lock: judging goes on meanwhile
        with self._lock:
            self._packs[sport] = pack
        self.reloads.append({"sport": sport, "version": version, "reason": reason, "at": time.time()})
        log.info("model reloaded", extra=log_fields(sport=sport, version=version, reason=reason,
                                                    previous=cur.model_version if cur else None))
        return True

    def recheck(self) -> None:
        """Compare the packs in use with the registry's current versions (safety net for missed messages)."""
        reg = self._registry()
        if reg is None:
            return
        with self._lock:
            loaded = {s: p.model_version for s, p in self._packs.items()}
        for sport, version in loaded.items():
            cur = reg.current_version(sport)
            if cur and cur != version:
                self.reload(sport, cur, "recheck")

    def warm(self, sport: str) -> None:
        """Load a sport's pack before its first clip comes (in a background thread at start-up), so
        the first provisional verdict of a fresh worker does not wait ~2 s for it; a failure here
        only means the first analysis loads it, as before."""
        try:
            self.pack(sport)
        except Exception as exc:  # noqa: BLE001
            log.warning("pack not preloaded", extra=log_fields(sport=sport, error=f"{type(exc).__name__}: {exc}"[:300]))

    def versions(self) -> dict[str, str]:
        with self._lock:
            return {s: p.model_version for s, p in self._packs.items()}

    def health(self) -> dict:
        return {"models": self.versions(), "control_consumer": self.control_ready.is_set()}

    # -- control topic ----------------------------------------------------------------
    def start_control(self, settings=None, stop: threading.Event | None = None) -> threading.Thread:
        """Start the background thread that hot-reloads models on ModelPublished."""
        settings = settings or self.settings
        self.settings = self.settings or settings
        self._control_thread = threading.Thread(target=self._control_loop, args=(settings, stop or self._stop),
                                                name="judge-control", daemon=True)
        self._control_thread.start()
        return self._control_thread

    def stop_control(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._control_thread is not None:
            self._control_thread.join(timeout_s)

    def _control_loop(self, settings, stop: threading.Event) -> None:
        from shared import bus

        group = f"coach-judge-control-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        consumer, last_check = None, time.monotonic()
        while not stop.is_set():
            try:
                if consumer is None:
                    consumer = bus.make_consumer(settings, group, [settings.topics.control], client_id="judge-control",
                                                 max_poll_records=20, auto_offset_reset="latest")
                    log.info("control consumer started", extra=log_fields(topic=settings.topics.control, group=group))
                batch = consumer.poll(timeout_ms=500)
                if not self.control_ready.is_set() and consumer.assignment():
                    for tp in consumer.assignment():
                        consumer.position(tp)   # resolve "latest" now: later messages are all seen
                    self.control_ready.set()
                for records in batch.values():
                    for rec in records:
                        self._on_control(rec.value)
                if time.monotonic() - last_check > self.recheck_s:
                    last_check = time.monotonic()
                    self.recheck()
            except Exception:  # noqa: BLE001 — keep the models in use; try again
                log.exception("control loop error; retrying")
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001
                        pass
                    consumer = None
                    self.control_ready.clear()
                stop.wait(2.0)
        if consumer is not None:
            consumer.close()

    def _on_control(self, value: bytes) -> None:
        from services.judge.registry import RegistryError

        try:
            msg = ModelPublished.from_bytes(value)
        except ValueError as exc:
            log.warning("ignoring a malformed control message", extra=log_fields(error=str(exc)[:300]))
            return
        try:
            self.reload(msg.sport, msg.version, "control")
        except RegistryError as exc:
            log.error("cannot load a published model; keeping the one in use",
                      extra=log_fields(sport=msg.sport, version=msg.version, error=str(exc)))

    def handle(self, msg: ClipPoses, ctx: Context) -> None:
        aid = msg.analysis_id
        try:
            tracking = TrackingDocument.read(ctx.store, keys.tracking(aid))
        except ObjectNotFound:
            tracking = None   # the tracker is still going: more clips will come
        revision = tracking.revision if tracking else 0
        if msg.revision < revision:
            log.info("stale poses dropped", extra=log_fields(revision=msg.revision, current=revision))
            return
        stored = ctx.store.list(keys.poses_prefix(aid))
        done = len(stored)
        if tracking is None or done < tracking.clip_count:
            total = tracking.clip_count if tracking else None
            ctx.status(aid, "waiting", 0.0, clips_posed=done, clip_count=total, revision=revision)
            try:
                self.partial_verdict(msg, tracking, stored, ctx)
            except HandlerDeadlineExceeded:
                raise
            except Exception as exc:  # noqa: BLE001 — a provisional verdict is a bonus: never fail the analysis on it
                log.warning("partial verdict skipped", extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:300]))
            return
        started = time.perf_counter()
        try:
            judged_sha1 = self.judge_analysis(msg, tracking, ctx)
        except NotAllPosed as exc:   # after an athlete switch, a clip of the new athlete is still coming
            ctx.status(aid, "waiting", 0.0, clips_posed=done, clip_count=tracking.clip_count, revision=revision,
                       note=str(exc))
            return
        if judged_sha1 is None:
            return   # this exact sequence was judged and its verdict acknowledged already
        ctx.flush()   # "done" below means the verdict is on the topic: a later message may then skip it
        FRAMES.labels(SERVICE).inc(tracking.frames)
        ctx.status(aid, "done", 1.0, seconds=round(time.perf_counter() - started, 3), revision=revision,
                   poses_sha1=judged_sha1)

    def judge_analysis(self, msg: ClipPoses, tracking: TrackingDocument, ctx: Context) -> str | None:
        """Judge the whole posed sequence, store verdict.json and publish the AnalysisVerdict. Returns
        the fingerprint of what was judged, or None (nothing published) when the judge's status already
        says that exact sequence was judged and its verdict acknowledged: when the last clips are stored
        before the judge handles their messages, each of those messages finds the analysis complete,
        and only the first must publish (integrators and suggest would otherwise get the same final
        verdict twice). A redelivery after a crash before that status finds no match and publishes."""
        from services.judge.exercise import exercise_report
        from shared.features import ANGLE_NAMES, joint_angles_deg

        aid, fps = msg.analysis_id, float(tracking.fps)
        revision, track_id = tracking.revision, tracking.athlete.track_id
        docs = load_clip_documents(ctx.store, aid, tracking.clip_count, revision)   # NotAllPosed: wait
        frames = [f for doc in docs for f in doc.frames]
        kps = keypoints_array(frames)                      # [N, 33, 3]
        pack = self.pack(msg.sport, ctx.store)             # kept for the whole analysis, even if a reload comes
        judged_sha1 = _sequence_sha1(docs, kps, revision, pack.model_version)
        if _already_judged(ctx.store, aid, revision, judged_sha1):
            log.info("final verdict already published for these poses", extra=log_fields(clip_index=msg.clip_index))
            return None
        size = (tracking.width, tracking.height)
        raw = pack.judge(kps, fps, size)                  # [N, n_faults], NaN rows: no pose
        if not np.isfinite(raw).all(axis=1).any():
            raise AnalysisFailed("no body pose was found in any frame: is a whole person visible?")
        angles = joint_angles_deg(kps)                     # [N, A]
        judged = judge_while_performing(msg.sport, pack, kps, fps, raw, size)
        probs = judged["probs"]
        # exercise sports: repetitions (count, quality + attention) and the action score (services/judge/reps.py)
        exercise = {} if judged["finding"] else (
            exercise_report(msg.sport, kps, fps, [f.index for f in frames], log=log.warning,
                            reps=judged["repetitions"]) or {})
        if not exercise and judged["counted_reps"]:   # repetitions found by the class-agnostic counter
            exercise = {"repetitions": [
                {"index": k + 1, "start_frame": int(frames[s0].index), "end_frame": int(frames[e0].index),
                 "quality": None, "attention": None, "range_of_motion_deg": None, "tempo_s": None, "partial": False}
                for k, (s0, e0) in enumerate(judged["counted_reps"])]}
        segments = fault_segments(probs, list(pack.fault_ids), pack.threshold_list())
        for rep in exercise.get("repetitions") or []:   # per-repetition verdict: the faults seen during it
            lo, hi = rep["start_frame"], rep["end_frame"]
            rep["faults"] = sorted({sg["type"] for sg in segments
                                    if frames[sg["start_frame"]].index <= hi and frames[sg["end_frame"]].index >= lo})
        synthetic, label_source = _provenance(pack)

        def at(t: int) -> int:
            return int(frames[t].index)

        not_judgeable = [{"type": fid, "start_frame": at(s0), "end_frame": at(e0), "start_s": round(s0 / fps, 3),
                          "end_s": round(e0 / fps, 3), "view": view, "reason": reason}
                         for fid, s0, e0, view, reason in judged["not_judgeable"]]
        ctx.store.put_json(keys.verdict(aid), VerdictDocument(
            analysis_id=aid, sport=msg.sport, model_version=pack.model_version,
            track_id=track_id, revision=revision,
            fault_types=list(pack.fault_ids), thresholds=pack.thresholds,
            fault_titles={f.id: f.title for f in pack.faults},
            angle_names=list(ANGLE_NAMES),
            synthetic=synthetic, label_source=label_source, finding=judged["finding"],
            frames_performing=judged["frames_performing"], not_judgeable=not_judgeable,
            frames=[
                VerdictFrame(
                    index=f.index,
                    faults=None if not judged["performing"][t] else
                    {fid: (None if not np.isfinite(p) else round(float(p), 4)) for fid, p in zip(pack.fault_ids, probs[t])},
                    activity=judged["activity"][t], view=judged["view"][t],
                    phase="bottom" if judged["bottom"][t] else None,
                    angles_deg={a: (None if not np.isfinite(v) else round(float(v), 2)) for a, v in zip(ANGLE_NAMES, angles[t])})
                for t, f in enumerate(frames)
            ],
            segments=segments,
            **{k: exercise[k] for k in ("repetitions", "score", "sequence_model_version") if k in exercise},
        ))
        faults = [FaultSegment(
            type=s["type"], start_frame=at(s["start_frame"]), end_frame=at(s["end_frame"]),
            start_s=round(s["start_frame"] / fps, 3), end_s=round(s["end_frame"] / fps, 3),
            peak_probability=round(float(s["peak_probability"]), 4), track_id=track_id,
        ) for s in segments]
        if judged["finding"]:
            log.info("exercise not performed", extra=log_fields(finding=judged["finding"], **judged["reasons"]))
        ctx.emit(ctx.settings.topics.verdicts, AnalysisVerdict(
            analysis_id=aid, sport=msg.sport, model_version=pack.model_version,
            video=VideoInfo(fps=fps, width=tracking.width, height=tracking.height, frames=tracking.frames),
            frames_judged=judged["frames_performing"], faults=faults, fault_types=list(pack.fault_ids),
            verdict_key=keys.verdict(aid), repetitions=exercise.get("repetitions"), score=exercise.get("score"),
            synthetic=synthetic, label_source=label_source, finding=judged["finding"],
            frames_performing=judged["frames_performing"],
            not_judgeable=[NotJudgeable(**n) for n in not_judgeable], track_id=track_id, revision=revision,
        ), key=aid)
        return judged_sha1

    def partial_verdict(self, msg: ClipPoses, tracking: TrackingDocument | None, stored: list[str],
                        ctx: Context) -> PartialVerdict | None:
        """Judge the contiguous posed prefix of an analysis that is not complete, when a partial is
        due (services/judge/partial.py); store partial.json and publish it. None when none is due."""
        from services.judge.activity import rule_for
        from services.judge.reps import EXERCISES

        aid = msg.analysis_id
        revision = tracking.revision if tracking else msg.revision
        clip_count = tracking.clip_count if tracking else None
        if msg.revision != revision:
            return None
        ready = partial.contiguous_clips(aid, stored, clip_count)
        try:
            last = PartialVerdictDocument.read(ctx.store, keys.partial_verdict(aid))
        except (ObjectNotFound, MalformedDocument):
            last = None
        if not partial.due(ready, last, revision, clip_count):
            return None
        started = time.perf_counter()
        ready, frames, kps = partial.load_prefix(ctx.store, aid, ready, revision)
        sequence = partial.due(ready, last, revision, clip_count)   # again: a clip of another revision cut it
        if not sequence:
            return None
        if tracking is not None:
            fps, size, frames_total = float(tracking.fps), (tracking.width, tracking.height), tracking.frames
            track_id = tracking.athlete.track_id
        else:   # the tracker is still reading: the upload's own figures (the gateway probed them)
            video = AnalysisRequest.read(ctx.store, keys.request(aid)).video
            fps, size, frames_total, track_id = float(video.fps), (video.width, video.height), video.frames, msg.track_id
        pack = self.pack(msg.sport, ctx.store)
        raw = pack.judge(kps, fps, size)
        judged, segments = None, []
        if np.isfinite(raw).all(axis=1).any():
            judged = judge_while_performing(msg.sport, pack, kps, fps, raw, size)
            segments = fault_segments(judged["probs"], list(pack.fault_ids), pack.threshold_list())
        exercise_sport = msg.sport in EXERCISES or rule_for(msg.sport).movement == "repetitions"
        body = partial.provisional(judged, segments, [f.index for f in frames], fps, track_id, frames_total,
                                   exercise_sport)
        synthetic, label_source = _provenance(pack)
        doc = PartialVerdictDocument(
            analysis_id=aid, sport=msg.sport, model_version=pack.model_version, revision=revision, sequence=sequence,
            track_id=track_id, clips_posed=ready, clip_count=clip_count, frames_posed=len(frames),
            # the default tracker chooses the athlete once it has seen the whole clip (tracking.json)
            athlete_settled=tracking is not None or ctx.settings.tracker == "legacy",
            frames_total=frames_total, fault_types=list(pack.fault_ids), synthetic=synthetic,
            label_source=label_source,
            frame_flags=partial.frame_flags(judged, list(pack.fault_ids), pack.thresholds, len(frames)), **body)
        ctx.put_json(keys.partial_verdict(aid), doc)
        # per-frame flags stay in partial.json (the suggest stage reads them): the message stays small
        out = PartialVerdict(**doc.model_dump(exclude={"schema_", "frame_flags"}), partial_key=keys.partial_verdict(aid))
        ctx.emit(ctx.settings.topics.partial_verdicts, out, key=aid)
        log.info("partial verdict", extra=log_fields(sequence=sequence, clips_posed=ready, frames=len(frames),
                                                     faults=len(out.faults), withheld=out.withheld,
                                                     finding=out.finding,
                                                     seconds=round(time.perf_counter() - started, 3)))
        return out


def _sequence_sha1(docs, kps: np.ndarray, revision: int, model_version: str) -> str:
    """The exact stored inputs of a final verdict: each clip document's frames, poses and run (its
    `seconds`: a clip posed again, e.g. when the watchdog re-drives the analysis, counts as new),
    the athlete revision and the model version."""
    h = hashlib.sha1(f"{revision}|{model_version}|".encode())
    h.update(repr([(d.clip_index, d.seconds, d.frames[0].index if d.frames else -1, len(d.frames))
                   for d in docs]).encode())
    h.update(np.ascontiguousarray(kps, np.float32).tobytes())
    return h.hexdigest()


def _already_judged(store: ObjectStore, aid: str, revision: int, sha1: str) -> bool:
    try:
        st = StageStatus.read(store, keys.status(aid, SERVICE))
    except (ObjectNotFound, MalformedDocument):
        return False
    return st.state == "done" and st.revision == revision and getattr(st, "poses_sha1", None) == sha1


def _provenance(pack) -> tuple[bool, str]:
    """(synthetic, label_source) of a pack: criteria-based or trained on people's labels."""
    meta = pack.describe()
    # packs written before these fields existed say "+synth." in their version
    synthetic = bool(meta.get("synthetic", "+synth." in pack.model_version))
    label_source = str(meta.get("label_source") or (pack.info or {}).get("labels", ""))
    return synthetic, label_source


def judge_while_performing(sport: str, pack, kps: np.ndarray, fps: float, raw: np.ndarray,
                           frame_size: tuple[float, float] | None = None) -> dict:
    """Keep a pack's fault probabilities only where they can be trusted (services/judge/activity.py).

    raw [N, n_faults] -> probs [N, n_faults] NaN outside the exercise, outside the bottom of a
    repetition for depth faults, and in camera views a fault cannot be judged from; plus per-frame
    activity / view / phase, the not-judgeable stretches and a finding when the exercise never happens."""
    from services.judge.activity import decide, not_judgeable_runs, rule_for, view_mask
    from services.judge.reps import EXERCISES, primary_signal, segment

    rule = rule_for(sport)
    reps, signal, counted, found = None, None, None, None
    if sport in EXERCISES:
        signal = primary_signal(kps, sport)
        found = segment(kps, sport, fps)          # reused by exercise_report
        # partial repetitions are part of an exercise only when it has full ones: dips alone are not squats
        reps = [(r.start, r.end, r.bottom) for r in found] if any(not r.partial for r in found) else []
    elif rule.movement == "repetitions":
        # no exercise-specific rule (lunge, curl, a coach's new sport): the class-agnostic counter
        from shared.periodic import count_repetitions

        counted = count_repetitions(kps, fps)
        reps = [(s0, e0, (s0 + e0) // 2) for s0, e0 in counted.reps]
    # a pack's phase model (squat: trained on human up/down labels) says where the bottom is
    p_down = pack.phase_probs(kps, fps, frame_size) if getattr(pack, "phase", None) else None
    act = decide(kps, fps, rule, reps, signal, None if p_down is None else np.nan_to_num(p_down) >= 0.5)
    probs = np.array(raw, dtype=np.float64, copy=True)
    has_verdict = np.isfinite(raw).all(axis=1)
    probs[~act.performing] = np.nan
    titles = {f.id: f.title for f in pack.faults}
    nj = []
    for j, fault in enumerate(pack.faults):
        if fault.id in rule.bottom_faults:
            probs[~act.bottom, j] = np.nan
        views = getattr(fault, "views", None)
        ok = view_mask(act.view, views)
        probs[~ok, j] = np.nan
        for s0, e0, view in not_judgeable_runs(ok, act.performing & has_verdict, act.view, fps):
            nj.append((fault.id, s0, e0, view, f"{titles[fault.id].lower()} needs a {' or '.join(views)} view; "
                                               f"the camera sees the athlete from the {view}"))
    performing = act.performing & has_verdict
    activity = [None if not has_verdict[t] else "performing" if performing[t] else "not_performing" for t in range(len(kps))]
    return {"probs": probs, "performing": performing, "activity": activity, "view": act.view, "bottom": act.bottom,
            "finding": act.finding, "frames_performing": int(performing.sum()), "not_judgeable": nj,
            "reasons": act.reasons, "counted_reps": None if counted is None else counted.reps, "repetitions": found}

def main() -> None:
    from shared.settings import Settings

    s = Settings.from_env()
    stage = JudgeStage(s)
    stage.start_control(s)
    threading.Thread(target=stage.warm, args=(s.default_sport,), name="judge-warm", daemon=True).start()
    try:
        run_service(WorkerSpec(SERVICE, s.topics.poses, ClipPoses, stage.handle, health=stage.health), s)
    finally:
        stage.stop_control()


if __name__ == "__main__":
    main()
