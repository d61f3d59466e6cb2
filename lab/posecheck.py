"""Why tracking matters to pose: BlazePose on the tracker's tubelet crops vs on whole frames.

    python -m lab.posecheck [VIDEO] [--frames 150] [--start 0] [--target x,y,w,h] [--json]

Runs AthleteTracker over the first frames of a video (default vtest.avi: people ~40x90 px in
768x576), then services/pose/blazepose.py's BlazePoseEstimator twice on the same frames:
`estimate_sequence(frames, boxes)` (square crops around the tracker's boxes, upscaled to 256 px)
and `estimate_frames(frames)` (whole frames, the bare model). Reports, per person followed for
at least `--min-frames` frames (the athlete and the other tracks), the share of frames with a
pose, and the share with a pose *on that person* (the median of the landmarks with visibility
>= 0.5 inside the person's box grown by 20%). The whole-frame pose is checked against every
person: BlazePose follows one person per frame, whoever it finds.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

DEFAULT_VIDEO = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def _on_person(kp: np.ndarray, box: np.ndarray | None) -> bool:
    """Landmarks (33, 3: x, y, visibility) belong to the person in box (x, y, w, h)?"""
    if box is None or not np.isfinite(kp).all():
        return False
    vis = kp[kp[:, 2] >= 0.5]
    if len(vis) < 5:
        return False
    x, y, w, h = (float(v) for v in box)
    mx, my = np.median(vis[:, 0]), np.median(vis[:, 1])
    return x - 0.2 * w <= mx <= x + 1.2 * w and y - 0.2 * h <= my <= y + 1.2 * h


def run(video: str = DEFAULT_VIDEO, n_frames: int = 150, min_frames: int = 30, start: int = 0,
        target: tuple[float, float, float, float] | None = None, pose_model: str | None = None) -> dict:
    import cv2

    from services.pose.blazepose import BlazePoseEstimator
    from services.tracker.athlete import AthleteTracker

    cap = cv2.VideoCapture(video)
    for _ in range(start):
        cap.grab()
    frames = []
    while len(frames) < n_frames:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read {video}")
    t0 = time.perf_counter()
    tracker = AthleteTracker(target_bbox_px=target)
    out = []
    for f in frames:
        out += tracker.push(f)
    out += tracker.finish()
    track_s = time.perf_counter() - t0
    athlete = tracker.choice.track_id
    # per person: box per frame (None where not followed)
    people: dict[int, list[np.ndarray | None]] = {}
    for pid, seq in tracker.tracks().items():
        boxes: list[np.ndarray | None] = [None] * len(frames)
        for idx, b in seq:
            boxes[idx] = b
        if sum(b is not None for b in boxes) >= min_frames or pid == athlete:
            people[pid] = boxes
    t0 = time.perf_counter()
    from shared.settings import Settings

    with BlazePoseEstimator(model=pose_model or Settings.from_env().pose_model) as est:
        whole = est.estimate_frames(frames)
        whole_s = time.perf_counter() - t0
        crops = {}
        t0 = time.perf_counter()
        for pid, boxes in people.items():
            crops[pid] = est.estimate_sequence(frames, boxes)
        crops_s = time.perf_counter() - t0
    rows = []
    for pid, boxes in people.items():
        followed = [t for t, b in enumerate(boxes) if b is not None]
        c, n = crops[pid], max(len(followed), 1)
        rows.append({
            "track_id": pid, "athlete": pid == athlete, "frames_followed": len(followed),
            "crops": {"pose_share": round(float(np.mean([c.present[t] for t in followed])) if followed else 0.0, 3),
                      "pose_on_person_share": round(sum(_on_person(c.keypoints_px[t], boxes[t]) for t in followed) / n, 3)},
            "whole_frames": {"pose_share": round(float(np.mean([whole.present[t] for t in followed])) if followed else 0.0, 3),
                             "pose_on_person_share": round(sum(_on_person(whole.keypoints_px[t], boxes[t]) for t in followed) / n, 3)},
        })
    rows.sort(key=lambda r: (not r["athlete"], -r["frames_followed"]))
    return {"video": video, "start": start, "frames": len(frames), "pose_model": est.model_id,
            "athlete_track_id": athlete, "choice": tracker.choice.reason,
            "whole_frames_any_pose_share": round(float(whole.present.mean()), 3),
            "people": rows, "seconds": {"tracking": round(track_s, 1), "pose_whole_frames": round(whole_s, 1),
                                        "pose_crops": round(crops_s, 1)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", default=DEFAULT_VIDEO)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--min-frames", type=int, default=30, help="report people followed for at least this many frames")
    ap.add_argument("--start", type=int, default=0, help="skip this many frames first")
    ap.add_argument("--target", help="x,y,w,h of the athlete in the first frame used (default: who moves most)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    target = tuple(float(v) for v in args.target.split(",")) if args.target else None
    res = run(args.video, args.frames, args.min_frames, args.start, target)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"{res['video']}: {res['frames']} frames; athlete = track {res['athlete_track_id']} ({res['choice']}); "
          f"whole frames: a pose (anyone's) in {100 * res['whole_frames_any_pose_share']:.0f}% of frames")
    print(f"{'track':>6} {'frames':>7} {'crops: pose':>12} {'on person':>10} {'whole: pose':>12} {'on person':>10}")
    for r in res["people"]:
        print(f"{r['track_id']:>5}{'*' if r['athlete'] else ' '} {r['frames_followed']:>7} "
              f"{100 * r['crops']['pose_share']:>11.0f}% {100 * r['crops']['pose_on_person_share']:>9.0f}% "
              f"{100 * r['whole_frames']['pose_share']:>11.0f}% {100 * r['whole_frames']['pose_on_person_share']:>9.0f}%")


if __name__ == "__main__":
    main()
