"""Pose on rotating athletes: how much of BlazePose's upright accuracy survives a somersault.

    python -m services.pose.lab.eval_rotation [--video .media/sports2d-demo.mp4] [--steps 12 20 30] [--json]
        [--clips [--clip-frames 32 --first-clip-frames 8]]

No human-labelled flip ships here, so the flip is made from real frames: Sports2D's demo clip
(BSD-3, docs/media.md) while the athlete warms up upright (frames 40-99, every 2nd), each frame
turned about the image centre by `step` deg more than the last, after 4 upright frames (12 deg per
frame at 30 fps is a somersault in one second; 20-30 deg is an aerialist's twist). The athlete's
box turns with the frame. The reference is BlazePose's own pose on the unturned whole frame, turned
the same way: a *pseudo* ground truth, so the figures say how much of the upright result survives
the rotation, not how close either is to the true joints.

Scored per frame: coverage (a pose at all) and PCK@0.2 (joints within 0.2 x the box side of the
reference; a frame without a pose scores 0), with the crops turned upright after a tilted pose
(`BlazePoseEstimator(align_rotated=True)`, the default) and without.

--clips also cuts the sequence into the pose worker's clips (shared/clips.py layout) and poses them
one by one, each from scratch ("fresh": the worker before sessions) or continuing one session
("continued": services/pose/sessions.py), beside the uncut sequence ("whole").
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from services.pose.blazepose import BlazePoseEstimator, PoseSequence
from shared.clips import clip_spans
from shared.video import read_frames

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_VIDEO = ROOT / ".media" / "sports2d-demo.mp4"   # scripts/setup.sh installs it
UPRIGHT = 4


def rotating_clip(frames: list[np.ndarray], ref: np.ndarray, step_deg: float):
    """Upright frames + their reference poses [T,33,3] -> turned frames, boxes [T,4], turned
    reference [T,33,3] and angles [T] (deg), for frames whose reference pose is complete."""
    out_f, boxes, out_ref, angles = [], [], [], []
    for t, (f, k) in enumerate(zip(frames, ref)):
        if not np.isfinite(k).all():
            continue
        deg = max(0, len(out_f) - UPRIGHT + 1) * step_deg
        h, w = f.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)              # [2,3]
        xy = np.c_[k[:, :2], np.ones(len(k))] @ m.T                        # [33,2] turned reference
        lo, hi = k[:, :2].min(axis=0), k[:, :2].max(axis=0)
        c = np.r_[(lo + hi) / 2, 1.0] @ m.T                                # the box turns with the body
        side = float(max(hi - lo))
        out_f.append(cv2.warpAffine(f, m, (w, h)))
        boxes.append(np.array([c[0] - side / 2, c[1] - side / 2, side, side]))
        out_ref.append(np.c_[xy, k[:, 2]])
        angles.append(deg % 360)
    return out_f, np.array(boxes), np.array(out_ref), np.array(angles)


def score(pred: np.ndarray, present: np.ndarray, ref: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[T] PCK@0.2 per frame (0 where no pose)."""
    err = np.linalg.norm(pred[..., :2] - ref[..., :2], axis=-1)            # [T,33]
    pck = np.nanmean(err < 0.2 * boxes[:, 2:3], axis=1)
    return np.where(present, pck, 0.0)


def pose_clipwise(est: BlazePoseEstimator, frames: list, boxes: list, spans: list[tuple[int, int]],
                  continued: bool) -> PoseSequence:
    """The sequence posed clip by clip: one session throughout (continued) or from scratch at each clip."""
    session = est.new_session() if continued else None
    parts = [est.estimate_sequence(frames[s:e], boxes[s:e], session) for s, e in spans]
    if session is not None:
        est.end_session(session)
    return PoseSequence(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("keypoints_px", "world_m", "present")))


def run(video: Path = DEFAULT_VIDEO, steps=(12.0, 20.0, 30.0), model: str = "full", clips: bool = False,
        clip_frames: int = 32, first_clip_frames: int = 8) -> dict:
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {video} as a video (scripts/setup.sh installs the Sports2D demo clip)")
    frames = read_frames(cap, 100)[40:100:2]
    with BlazePoseEstimator(model=model, align_rotated=False) as est:
        ref = est.estimate_frames(frames).keypoints_px                     # [T,33,3] upright reference
    rows = []
    for step in steps:
        f, boxes, turned, angles = rotating_clip(frames, ref, step)
        moving = np.arange(len(f)) >= UPRIGHT
        spans = clip_spans(len(f), clip_frames, first_clip_frames)
        for align, mode in [(a, m) for a in (False, True) for m in (("whole", "fresh", "continued") if clips else ("whole",))]:
            with BlazePoseEstimator(model=model, align_rotated=align) as est:
                if mode == "whole":
                    seq = est.estimate_sequence(f, list(boxes))
                else:
                    seq = pose_clipwise(est, f, list(boxes), spans, continued=mode == "continued")
                turns = dict(est.retries)
            pck = score(seq.keypoints_px, seq.present, turned, boxes)
            inverted = moving & (np.abs(angles - 180) <= 60)
            rows.append({"step_deg": step, "align_rotated": align, "clips": mode, "frames": int(moving.sum()),
                         "coverage": round(float(seq.present[moving].mean()), 3),
                         "pck@0.2": round(float(pck[moving].mean()), 3),
                         "pck@0.2_inverted": round(float(pck[inverted].mean()), 3) if inverted.any() else None,
                         "turned_passes": turns})
    return {"video": str(video), "frames_used": len(frames), "reference": "BlazePose on the unturned frames (pseudo ground truth)",
            "model": model, "clip_spans": clip_spans(len(frames), clip_frames, first_clip_frames) if clips else None,
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--steps", type=float, nargs="+", default=[12.0, 20.0, 30.0], help="deg of rotation per frame")
    ap.add_argument("--model", default="full", choices=("lite", "full", "heavy"))
    ap.add_argument("--clips", action="store_true", help="also pose it cut into the worker's clips, fresh vs continued")
    ap.add_argument("--clip-frames", type=int, default=32)
    ap.add_argument("--first-clip-frames", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rep = run(args.video, tuple(args.steps), args.model, args.clips, args.clip_frames, args.first_clip_frames)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{rep['video']}: {rep['frames_used']} frames; reference: {rep['reference']}")
    if rep["clip_spans"]:
        print(f"clips: {rep['clip_spans']}")
    print(f"{'deg/frame':>9} {'aligned':>8} {'clips':>10} {'coverage':>9} {'PCK@0.2':>8} {'inverted':>9}")
    for r in rep["rows"]:
        inv = "-" if r["pck@0.2_inverted"] is None else f"{r['pck@0.2_inverted']:.3f}"
        print(f"{r['step_deg']:>9g} {str(r['align_rotated']):>8} {r['clips']:>10} {r['coverage']:>9.3f} {r['pck@0.2']:>8.3f} {inv:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
