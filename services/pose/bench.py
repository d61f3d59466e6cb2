"""Throughput of BlazePose: the bare model on whole frames vs. our crop path.

    python -m services.pose.bench VIDEO [--max-frames N] [--crops] [--box x,y,w,h]

prints JSON. Both timings include decoding (cv2.VideoCapture), as a user would experience.
"""
from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from services.pose.blazepose import BlazePoseEstimator, PoseSequence, StartupQuiet, mp
from shared.video import read_frames


def bare_model_fps(video_path: str, max_frames: int | None = None) -> dict[str, float | int]:
    """Plain loop: decode -> RGB -> mp.solutions.pose.Pose(model_complexity=1).process, default options.

    Graph construction is outside the timing.
    """
    cap = cv2.VideoCapture(video_path)
    if not cap.isOpened():
        raise FileNotFoundError(video_path)
    quiet = StartupQuiet()  # only hides MediaPipe's start-up warnings, as the estimator does
    quiet.open()
    pose = None
    frames = with_pose = 0
    try:
        pose = mp.solutions.pose.Pose(model_complexity=1)
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
    return {"frames": frames, "seconds": round(seconds, 3), "fps": round(frames / seconds, 1) if seconds > 0 else 0.0,
            "frames_with_pose": with_pose}


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
            found = boxes_from_pose(est.estimate_frames(frames))
            first = next((b for b in found if b is not None), None)
            if first is None:
                raise ValueError("the whole-frame model found nobody: pass boxes_px or fixed_box")
            boxes_px, held = [], first  # hold the last seen box (the first one before any was seen)
            for b in found:
                held = b if b is not None else held
                boxes_px.append(held)
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--crops", action="store_true", help="also time estimate_sequence on crops")
    ap.add_argument("--box", default=None, help="fixed crop box x,y,w,h in px (default: boxes from the whole-frame pose)")
    args = ap.parse_args(argv)
    report: dict[str, object] = {"video": args.video, "bare": bare_model_fps(args.video, args.max_frames)}
    if args.crops:
        box = np.array([float(v) for v in args.box.split(",")], dtype=np.float32) if args.box else None
        report["crops"] = crop_fps(args.video, max_frames=args.max_frames, fixed_box=box)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
