"""Judge service: per-frame fault probabilities and fault segments for a whole analysis.

consume `poses` (ClipPoses) -> when every clip of the analysis has its poses stored, judge the
whole sequence at once (the packs use temporal deltas, which clip edges would cut) -> store
verdict.json -> produce `verdicts` (AnalysisVerdict, keyed by analysis id) for the suggest
service and for integrators.

Completeness is read from object storage (poses/ objects vs the tracker's clip count), not from
worker memory, so a restarted or rebalanced judge picks up where another left off. A duplicate
delivery re-judges and overwrites the same verdict.json; integrators keep the latest verdict per
analysis id.
"""
from __future__ import annotations

import time

import numpy as np

from shared.messages import AnalysisVerdict, ClipPoses, FaultSegment, VideoInfo
from shared.observability import FRAMES
from shared.skeleton import NUM_LANDMARKS
from shared.store import ObjectNotFound, ObjectStore, keys
from shared.worker import AnalysisFailed, Context, WorkerSpec, run_service

SERVICE = "judge"


def load_sequence(store: ObjectStore, aid: str, clip_count: int) -> tuple[list[dict], np.ndarray]:
    """All frames of an analysis in order, and keypoints [N,33,3] (NaN where no pose)."""
    frames: list[dict] = []
    for k in range(clip_count):
        frames.extend(store.get_json(keys.clip_poses(aid, k))["frames"])
    kps = np.full((len(frames), NUM_LANDMARKS, 3), np.nan, dtype=np.float64)
    for t, f in enumerate(frames):
        if f["keypoints"] is not None:
            kps[t] = [r if r is not None else (np.nan,) * 3 for r in f["keypoints"]]
    return frames, kps


class JudgeStage:
    def __init__(self) -> None:
        self._packs: dict = {}

    def pack(self, sport: str):
        from services.judge.packs import available_packs, load_pack

        if sport not in self._packs:
            try:
                self._packs[sport] = load_pack(sport)
            except KeyError:
                raise AnalysisFailed(f"unknown sport {sport!r}; known: {', '.join(available_packs())}") from None
        return self._packs[sport]

    def handle(self, msg: ClipPoses, ctx: Context) -> None:
        aid = msg.analysis_id
        try:
            tracking = ctx.store.get_json(keys.tracking(aid))
        except ObjectNotFound:
            tracking = None   # the tracker is still going: more clips will come
        done = len(ctx.store.list(keys.poses_prefix(aid)))
        if tracking is None or done < tracking["clip_count"]:
            total = tracking["clip_count"] if tracking else None
            ctx.status(aid, "waiting", 0.0, clips_posed=done, clip_count=total)
            return
        started = time.perf_counter()
        self.judge_analysis(msg, tracking, ctx)
        FRAMES.labels(SERVICE).inc(tracking["frames"])
        ctx.status(aid, "done", 1.0, seconds=round(time.perf_counter() - started, 3))

    def judge_analysis(self, msg: ClipPoses, tracking: dict, ctx: Context) -> None:
        from services.judge.features import ANGLE_NAMES, joint_angles_deg
        from services.judge.segments import fault_segments

        aid, fps = msg.analysis_id, float(tracking["fps"])
        pack = self.pack(msg.sport)
        frames, kps = load_sequence(ctx.store, aid, tracking["clip_count"])
        probs = pack.judge(kps, fps)                      # [N, n_faults], NaN rows: no pose
        angles = joint_angles_deg(kps)                     # [N, A]
        segments = fault_segments(probs, list(pack.fault_ids), pack.threshold_list())
        judged = int(np.isfinite(probs).all(axis=1).sum())
        if judged == 0:
            raise AnalysisFailed("no body pose was found in any frame: is a whole person visible?")
        ctx.store.put_json(keys.verdict(aid), {
            "analysis_id": aid, "sport": msg.sport, "model_version": pack.model_version,
            "fault_types": list(pack.fault_ids), "thresholds": pack.thresholds,
            "angle_names": list(ANGLE_NAMES),
            "frames": [
                {"index": f["index"],
                 "faults": None if not np.isfinite(probs[t]).all() else
                 {fid: round(float(p), 4) for fid, p in zip(pack.fault_ids, probs[t])},
                 "angles_deg": {a: (None if not np.isfinite(v) else round(float(v), 2)) for a, v in zip(ANGLE_NAMES, angles[t])}}
                for t, f in enumerate(frames)
            ],
            "segments": segments,
        })
        faults = [FaultSegment(
            type=s["type"], start_frame=frames[s["start_frame"]]["index"], end_frame=frames[s["end_frame"]]["index"],
            start_s=round(s["start_frame"] / fps, 3), end_s=round(s["end_frame"] / fps, 3),
            peak_probability=round(float(s["peak_probability"]), 4),
        ) for s in segments]
        ctx.emit(ctx.settings.topics.verdicts, AnalysisVerdict(
            analysis_id=aid, sport=msg.sport, model_version=pack.model_version,
            video=VideoInfo(fps=fps, width=tracking["width"], height=tracking["height"], frames=tracking["frames"]),
            frames_judged=judged, faults=faults, fault_types=list(pack.fault_ids), verdict_key=keys.verdict(aid),
        ), key=aid)


def main() -> None:
    from shared.settings import Settings

    s = Settings.from_env()
    stage = JudgeStage()
    run_service(WorkerSpec(SERVICE, s.topics.poses, ClipPoses, stage.handle), s)


if __name__ == "__main__":
    main()
