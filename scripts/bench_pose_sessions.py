"""The pose stage over a whole video's clips, BlazePose restarted at every clip vs sessions kept across clips.

    .venv/bin/python scripts/bench_pose_sessions.py [VIDEO ...] [--rounds 3] [--refiner one_euro] [--json]

Default videos: vtest.avi (795 frames 768x576 @ 10 fps) and the Sports2D demo (230 frames 1768x994 @ 30 fps).
Each video is read once: the pipeline's tracker (services/tracker AthleteTracker, as `coach pose run`)
gives the athlete's box per frame (cached in ~/.cache/coach/bench-pose-sessions/), and every frame is
stored as the tracker stores it (JPEG q90) in an in-memory store. Then the real pose worker
(PoseStage.handle: fetch, decode, BlazePose, swap fix, refiner, store) poses every clip of the
worker's layout (shared/clips.py: 8, 24, then 32 frames) in order, as a fresh analysis each round:

  * fresh:     COACH_POSE_SESSIONS=0, the graph restarted at every clip (the worker before sessions);
  * continued: COACH_POSE_SESSIONS=2, each clip continues the previous clip's session.

Rounds alternate (fresh, continued, fresh, ...) so both see the same load. Per round: the stage's
seconds summed over clips (the documents' `seconds`, what `coach bench` reports as the pose stage),
wall and process CPU seconds of the loop. Agreement of the stored keypoints, continued vs fresh (the
most a clip's result can change with delivery order: a redelivered clip is posed fresh): PCK@0.2 of the
box's longer side, mean px, and frames with a pose, over all frames and over each clip's first 3.
--reference heavy|full also scores both against a pseudo ground truth: that BlazePose model over the
same decoded frames and boxes in one uninterrupted run (no clip boundaries), refined the same way per
clip; a frame the reference poses and a mode does not counts wrong.
A benchmark, not a test: figures depend on the machine and its load (docs/benchmarks.md names them).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.pose.worker import PoseStage  # noqa: E402
from shared.clips import clip_spans  # noqa: E402
from shared.messages import FrameRef, TrackedClip, VideoInfo  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.store import keys  # noqa: E402
from shared.testing import MemoryStore  # noqa: E402
from shared.worker import Context  # noqa: E402

VIDEOS = ("/usr/share/doc/opencv-doc/examples/data/vtest.avi", str(ROOT / ".media" / "sports2d-demo.mp4"))
CACHE = Path.home() / ".cache" / "coach" / "bench-pose-sessions"
MODES = {"fresh": 0, "continued": 2}


def load(video: str, store: MemoryStore, aid_prefix: str) -> tuple[list, VideoInfo]:
    """Every frame stored as JPEG under aid_prefix's frame keys; the tracker's boxes (cached)."""
    st = os.stat(video)
    cached = CACHE / f"{Path(video).stem}-{hashlib.sha1(f'{video}:{st.st_size}:{st.st_mtime}'.encode()).hexdigest()[:10]}.json"
    boxes = json.loads(cached.read_text()) if cached.exists() else None
    tracker = None
    if boxes is None:
        from services.tracker.athlete import AthleteTracker
        tracker, found = AthleteTracker(), []
    cap = cv2.VideoCapture(video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    n = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        store.put_bytes(keys.frame(aid_prefix, n), cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        if tracker is not None:
            found += tracker.push(f)
        h, w = f.shape[:2]
        n += 1
    cap.release()
    if tracker is not None:
        found += tracker.finish()
        boxes = [None] * n
        for ft in found:
            boxes[ft.index] = None if ft.bbox_px is None else [round(float(v), 2) for v in ft.bbox_px[:4]]
        CACHE.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(boxes))
    return boxes, VideoInfo(fps=fps, width=w, height=h, frames=n)


def clips(aid: str, frames_aid: str, boxes: list, video: VideoInfo, settings: Settings) -> list[TrackedClip]:
    out = []
    for k, (s, e) in enumerate(clip_spans(video.frames, settings.clip_frames, settings.first_clip_frames)):
        out.append(TrackedClip(analysis_id=aid, sport="squat", clip_index=k, video=video, frames=[
            FrameRef(index=i, t_s=round(i / video.fps, 4), frame_key=keys.frame(frames_aid, i), bbox_px=boxes[i],
                     track_state="tracked" if boxes[i] else "lost") for i in range(s, e)]))
    return out


def stored(store: MemoryStore, aid: str, n_clips: int) -> tuple[np.ndarray, list[bool]]:
    """[T,33,2] stored keypoints (NaN without a pose) and session_continued per clip."""
    rows, cont = [], []
    for k in range(n_clips):
        doc = store.get_json(keys.clip_poses(aid, k))
        cont.append(doc["session_continued"])
        for f in doc["frames"]:
            kp = f["keypoints"]
            rows.append(np.full((33, 2), np.nan) if kp is None else
                        np.array([p[:2] if p else [np.nan, np.nan] for p in kp], float))
    return np.array(rows), cont


def agreement(a: np.ndarray, b: np.ndarray, boxes: list, mask: np.ndarray) -> dict:
    side = np.array([max(bx[2], bx[3]) if bx else np.nan for bx in boxes], float)
    both = mask & np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=(1, 2))
    err = np.linalg.norm(a[both] - b[both], axis=-1)                       # [F,33]
    return {"frames": int(mask.sum()), "both_posed": int(both.sum()),
            "posed_only_one": int((mask & (np.isfinite(a).all(axis=(1, 2)) != np.isfinite(b).all(axis=(1, 2)))).sum()),
            "pck@0.2": round(float((err < 0.2 * side[both, None]).mean()), 4) if both.any() else None,
            "mean_px": round(float(err.mean()), 3) if both.any() else None,
            "p99_px": round(float(np.percentile(err, 99)), 2) if both.any() else None,
            "identical_frames": int((err.max(axis=1) < 0.01).sum()) if both.any() else 0}


def reference(store: MemoryStore, frames_aid: str, boxes: list, model: str, settings: Settings, refiner: str,
              fps: float) -> np.ndarray:
    """[T,33,2]: `model` over every frame in one uninterrupted session (fed clip by clip: the same as one
    call), then the worker's per-clip swap fix and refiner; NaN where it found no pose."""
    from services.pose.blazepose import BlazePoseEstimator
    from services.pose.refine import make_refiner, refine_clip

    out = []
    with BlazePoseEstimator(model=model) as est:
        session = est.new_session()
        for s, e in clip_spans(len(boxes), settings.clip_frames, settings.first_clip_frames):
            frames = [cv2.imdecode(np.frombuffer(store.get_bytes(keys.frame(frames_aid, i)), np.uint8), cv2.IMREAD_COLOR)
                      for i in range(s, e)]
            bx = [None if b is None else np.asarray(b, float) for b in boxes[s:e]]
            seq = est.estimate_sequence(frames, bx, session)
            params = {"freq_hz": fps} if refiner in ("one_euro", "strn") else {}   # as the worker
            kps, _ = refine_clip(make_refiner(refiner, **params), seq.keypoints_px, seq.present, bx, None)
            out.append(np.where(seq.present[:, None, None], kps[..., :2], np.nan))
    return np.concatenate(out)


def against(pred: np.ndarray, ref: np.ndarray, boxes: list, mask: np.ndarray) -> dict:
    side = np.array([max(bx[2], bx[3]) if bx else np.nan for bx in boxes], float)
    has_ref = mask & np.isfinite(ref).all(axis=(1, 2))
    err = np.linalg.norm(pred[has_ref] - ref[has_ref], axis=-1)             # [F,33], NaN where pred has none
    ok = np.where(np.isfinite(err), err < 0.2 * side[has_ref, None], False)
    return {"frames": int(has_ref.sum()), "pck@0.2": round(float(ok.mean()), 4),
            "mean_px": round(float(np.nanmean(err)), 3), "coverage": round(float(np.isfinite(err).all(axis=1).mean()), 4)}


def bench(video: str, rounds: int, refiner: str, ref_model: str | None = None) -> dict:
    settings = Settings(first_clip_frames=8, refiner=refiner)
    store = MemoryStore()
    frames_aid = "f" * 32
    boxes, info = load(video, store, frames_aid)
    stages = {m: PoseStage(refiner, pose_model=settings.pose_model, pose_sessions=n) for m, n in MODES.items()}
    for st in stages.values():
        st.warm_up()
    log = logging.getLogger("bench")
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    last_aid = {}
    for r in range(rounds):
        for mode, stage in stages.items():
            aid = hashlib.md5(f"{mode}{r}".encode()).hexdigest()
            ctx = Context("pose", settings, store, producer=None, log=log)
            ctx.status = lambda *a, **k: None
            ctx.emit = lambda *a, **k: None
            msgs = clips(aid, frames_aid, boxes, info, settings)
            load_before = os.getloadavg()[0]
            w0, c0 = time.perf_counter(), time.process_time()
            for m in msgs:
                stage.handle(m, ctx)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            docs = [store.get_json(keys.clip_poses(aid, k)) for k in range(len(msgs))]
            runs[mode].append({"round": r, "stage_s": round(sum(d["seconds"] for d in docs), 3), "wall_s": round(wall, 3),
                               "cpu_s": round(cpu, 3),
                               "continued_clips": sum(d["session_continued"] for d in docs), "clips": len(msgs),
                               "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
            last_aid[mode] = aid
    for st in stages.values():
        st.sessions.close()
        st.estimator.close()
    n_clips = len(clip_spans(info.frames, settings.clip_frames, settings.first_clip_frames))
    kp = {m: stored(store, last_aid[m], n_clips)[0] for m in MODES}
    starts = np.zeros(info.frames, bool)
    for s, _ in clip_spans(info.frames, settings.clip_frames, settings.first_clip_frames)[1:]:
        starts[s:s + 3] = True
    every = np.ones(info.frames, bool)
    present = {m: int(np.isfinite(kp[m]).all(axis=(1, 2)).sum()) for m in MODES}
    refd = {}
    if ref_model:
        ref = reference(store, frames_aid, boxes, ref_model, settings, refiner, info.fps)
        refd = {"reference": f"BlazePose {ref_model}, one uninterrupted run, refiner {refiner}",
                **{m: {"all_frames": against(kp[m], ref, boxes, every), "first_3_frames_of_clips_1_on": against(kp[m], ref, boxes, starts)}
                   for m in MODES}}
    summary = {m: {k: round(float(np.median([x[k] for x in runs[m]])), 3) for k in ("stage_s", "wall_s", "cpu_s")}
               for m in MODES}
    return {"video": video, "frames": info.frames, "size": f"{info.width}x{info.height}", "fps": info.fps,
            "frames_with_box": sum(b is not None for b in boxes), "clips": n_clips, "refiner": refiner,
            "runs": runs, "median": summary, "frames_with_pose": present,
            "agreement_continued_vs_fresh": {"all_frames": agreement(kp["continued"], kp["fresh"], boxes, every),
                                             "first_3_frames_of_clips_1_on": agreement(kp["continued"], kp["fresh"], boxes, starts)},
            "against_reference": refd}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="*", default=list(VIDEOS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--refiner", default=Settings.from_env().refiner)
    ap.add_argument("--reference", choices=("lite", "full", "heavy"), default=None,
                    help="also score both modes against this model's uninterrupted run (pseudo ground truth)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    reports = [bench(v, args.rounds, args.refiner, args.reference) for v in args.videos]
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for rep in reports:
        print(f"{rep['video']}: {rep['frames']} frames {rep['size']} @ {rep['fps']:g} fps, {rep['clips']} clips, "
              f"{rep['frames_with_box']} frames with a box, refiner {rep['refiner']}")
        for m in MODES:
            for x in rep["runs"][m]:
                print(f"  {m:>9} round {x['round']}: stage {x['stage_s']:.2f} s, wall {x['wall_s']:.2f} s, cpu {x['cpu_s']:.2f} s, "
                      f"continued clips {x['continued_clips']}/{x['clips']}, load {x['load_avg_1m']}")
            md = rep["median"][m]
            print(f"  {m:>9} median: stage {md['stage_s']:.2f} s, wall {md['wall_s']:.2f} s, cpu {md['cpu_s']:.2f} s; "
                  f"frames with a pose {rep['frames_with_pose'][m]}")
        for part, a in rep["agreement_continued_vs_fresh"].items():
            print(f"  continued vs fresh, {part}: {a}")
        for m, a in rep["against_reference"].items():
            print(f"  against the reference, {m}: {a}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
