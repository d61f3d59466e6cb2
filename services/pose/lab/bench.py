"""Throughput of BlazePose: the bare model on whole frames vs. our crop path, and the three models.

    python -m services.pose.lab.bench VIDEO [--max-frames N] [--crops] [--box x,y,w,h] [--model lite|full|heavy]
    python -m services.pose.lab.bench --models [VIDEO ...] [--max-frames N]    (= coach pose bench-models)

prints JSON. The first form's timings include decoding (cv2.VideoCapture), as a user would
experience; --models times the pose alone (ms per frame), on whole frames and on crops.
The model defaults to COACH_POSE_MODEL.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from services.pose.blazepose import POSE_MODELS, BlazePoseEstimator, PoseSequence, StartupQuiet, check_pose_model, mp
from shared.settings import Settings
from shared.video import read_frames

# OpenCV's street scene (768x576, small walkers) and Sports2D's demo (1768x994, one large athlete), both installed by setup
BENCH_VIDEOS = ("/usr/share/doc/opencv-doc/examples/data/vtest.avi",
                str(Path(__file__).resolve().parents[3] / ".media" / "sports2d-demo.mp4"))


def bare_model_fps(video_path: str, max_frames: int | None = None, model: str = "full") -> dict[str, float | int]:
    """Plain loop: decode -> RGB -> mp.solutions.pose.Pose(model_complexity=...).process, default options.

    Graph construction is outside the timing.
    """
    check_pose_model(model)  # a clear error instead of MediaPipe's download attempt
    cap = cv2.VideoCapture(video_path)
    if not cap.isOpened():
        raise FileNotFoundError(video_path)
    quiet = StartupQuiet()  # only hides MediaPipe's start-up warnings, as the estimator does
    quiet.open()
    pose = None
    frames = with_pose = 0
    try:
        pose = mp.solutions.pose.Pose(model_complexity=POSE_MODELS[model])
        t0 = time.perf_counter()
        while max_frames is None or frames < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            res = pose.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            frames += 1
            if res.pose_landmarks is not None:
                with_pose += 1
                quiet.close()
        seconds = time.perf_counter() - t0
    finally:
        quiet.close()
        if pose is not None:
            pose.close()
        cap.release()
    return {"model": model, "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 1) if seconds > 0 else 0.0, "frames_with_pose": with_pose}


def held_boxes(seq: PoseSequence) -> list[np.ndarray]:
    """Boxes of the whole-frame pose, the last seen one held over frames where it found nobody
    (the first one before any was seen), so every frame gets a crop; ValueError when it found nobody."""
    found = boxes_from_pose(seq)
    held = next((b for b in found if b is not None), None)
    if held is None:
        raise ValueError("the whole-frame model found nobody: pass boxes_px or fixed_box")
    out = []
    for b in found:
        held = b if b is not None else held
        out.append(held)
    return out


def boxes_from_pose(seq: PoseSequence, min_confidence: float = 0.3) -> list[np.ndarray | None]:
    """Box (x, y, w, h) around each frame's confident keypoints; frames without a pose get None."""
    boxes: list[np.ndarray | None] = []
    for kp, ok in zip(seq.keypoints_px, seq.present):
        sel = kp[kp[:, 2] >= min_confidence, :2] if ok else np.empty((0, 2))
        if len(sel) < 2:
            boxes.append(None)
            continue
        lo, hi = sel.min(axis=0), sel.max(axis=0)
        boxes.append(np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], dtype=np.float32))
    return boxes


def crop_fps(video_path: str, boxes_px: list[np.ndarray | None] | None = None, max_frames: int | None = None,
             fixed_box: np.ndarray | None = None, estimator: BlazePoseEstimator | None = None) -> dict[str, float | int]:
    """Time decode + BlazePoseEstimator.estimate_sequence on crops.

    Boxes: boxes_px (one per frame), else fixed_box on every frame, else boxes from the
    whole-frame pose (estimate_frames, not timed) with the last seen box held over frames
    where it found nobody (and the first box before any was seen), so every frame is cropped.
    """
    cap = cv2.VideoCapture(video_path)
    if not cap.isOpened():
        raise FileNotFoundError(video_path)
    t0 = time.perf_counter()
    frames = read_frames(cap, max_frames)
    decode_s = time.perf_counter() - t0
    est = estimator or BlazePoseEstimator()
    try:
        if boxes_px is None and fixed_box is not None:
            boxes_px = [np.asarray(fixed_box, dtype=np.float32)] * len(frames)
        elif boxes_px is None:
            boxes_px = held_boxes(est.estimate_frames(frames))
        boxes_px = list(boxes_px)[: len(frames)]
        est.estimate_sequence(frames[:2], boxes_px[:2])  # load the models outside the timing
        t1 = time.perf_counter()
        seq = est.estimate_sequence(frames, boxes_px)
        pose_s = time.perf_counter() - t1
    finally:
        if estimator is None:
            est.close()
    n_boxes = sum(b is not None for b in boxes_px)
    total = decode_s + pose_s
    return {"frames": len(frames), "frames_with_box": n_boxes, "frames_with_pose": int(seq.present.sum()),
            "seconds": round(total, 3), "fps": round(len(frames) / total, 1) if total > 0 else 0.0,
            "pose_only_fps": round(len(frames) / pose_s, 1) if pose_s > 0 else 0.0}


def _timed(fn, *args) -> tuple[PoseSequence, float, float]:
    """(result, wall seconds, CPU seconds of this process: all its threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    seq = fn(*args)
    return seq, time.perf_counter() - t0, time.process_time() - c0


def bench_models(video_path: str, models: tuple[str, ...] = tuple(POSE_MODELS), max_frames: int | None = None,
                 repeat: int = 1, boxes_fn=None) -> dict:
    """Each model on the same decoded frames: whole frames (estimate_frames) and tracked-size crops
    (estimate_sequence on the same boxes for every model). Boxes: boxes_fn(frames) -> a box or None
    per frame (`coach pose bench-models` passes the pipeline's tracker), else full's whole-frame pose
    held over misses, as crop_fps does. Pose time only, the graph's start-up (first call) excluded;
    best of `repeat`, and the CPU time the process used (all threads; on a machine shared with other
    jobs it moves much less than the wall time). Crop time is per frame with a box (frames without one cost nothing). Whole-frame
    time depends on coverage: a frame without a pose runs only the detector."""
    cap = cv2.VideoCapture(video_path)
    if not cap.isOpened():
        raise FileNotFoundError(video_path)
    frames = read_frames(cap, max_frames)
    cap.release()
    if not frames:
        raise ValueError(f"{video_path}: no frames")
    h, w = frames[0].shape[:2]
    if boxes_fn is not None:
        boxes, source = boxes_fn(frames), "tracker"
    else:
        with BlazePoseEstimator(model="full") as est:
            boxes, source = held_boxes(est.estimate_frames(frames)), "whole-frame pose (full), held"
    sides = [max(b[2], b[3]) for b in boxes if b is not None]
    out: dict = {"video": video_path, "frames": len(frames), "size": f"{w}x{h}", "boxes": source,
                 "frames_with_box": len(sides),
                 "box_side_px_median": round(float(np.median(sides)), 1) if sides else None, "models": {}}
    for model in models:
        with BlazePoseEstimator(model=model) as est:
            est.estimate_frames(frames[:2])  # graph start-up and model load outside the timing
            row = {}
            for path, fn, args, n in (("whole", est.estimate_frames, (frames,), len(frames)),
                                      ("crops", est.estimate_sequence, (frames, boxes), len(sides))):
                runs = [_timed(fn, *args) for _ in range(repeat)]
                seq, best, cpu = runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs)
                row[path] = {"ms_per_frame": round(1000 * best / max(n, 1), 1),
                             "cpu_ms_per_frame": round(1000 * cpu / max(n, 1), 1),
                             "frames_with_pose": int(seq.present.sum())}
            out["models"][model] = row
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="*", help="one video; with --models any number (default: vtest.avi and the Sports2D demo)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--crops", action="store_true", help="also time estimate_sequence on crops")
    ap.add_argument("--box", default=None, help="fixed crop box x,y,w,h in px (default: boxes from the whole-frame pose)")
    ap.add_argument("--model", default=None, choices=tuple(POSE_MODELS), help="default: COACH_POSE_MODEL")
    ap.add_argument("--models", action="store_true", help="compare lite, full and heavy (pose time only)")
    ap.add_argument("--repeat", type=int, default=1, help="--models: timed runs per model and path, best kept")
    args = ap.parse_args(argv)
    if args.models:
        videos = args.video or list(BENCH_VIDEOS)
        print(json.dumps({"models": list(POSE_MODELS), "videos": [bench_models(v, max_frames=args.max_frames,
                                                                               repeat=args.repeat) for v in videos]}, indent=2))
        return
    if len(args.video) != 1:
        ap.error("give one VIDEO (or --models)")
    video, model = args.video[0], args.model or Settings.from_env().pose_model
    report: dict[str, object] = {"video": video, "bare": bare_model_fps(video, args.max_frames, model)}
    if args.crops:
        box = np.array([float(v) for v in args.box.split(",")], dtype=np.float32) if args.box else None
        with BlazePoseEstimator(model=model) as est:
            report["crops"] = crop_fps(video, max_frames=args.max_frames, fixed_box=box, estimator=est)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
