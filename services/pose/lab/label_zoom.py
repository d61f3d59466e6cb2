"""Labelling aid (docs/pose.md, *Accuracy on hand-labelled real frames*): cut a frame around a person,
upscale it and draw a pixel grid labelled in ORIGINAL pixel coordinates, optionally with labels drawn back.

    python -m services.pose.lab.label_zoom sports2d 176 850,190,1030,380 --scale 4 --grid 10 -o /tmp/z.png
    python -m services.pose.lab.label_zoom sports2d 176 850,190,1030,380 --person s2d-athlete -o /tmp/z.png

Never draws a model's output: only the frame and (with --person / --labels) the hand labels.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from services.pose.lab.eval_real import LABELS, VIDEOS, read_span

# skeleton drawn back for checking: person's left = blue, right = red (BGR), centre = green
_EDGES = [("head_top", "upper_neck"), ("upper_neck", "left_shoulder"), ("upper_neck", "right_shoulder"),
          ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
          ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
          ("left_hip", "right_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
          ("right_hip", "right_knee"), ("right_knee", "right_ankle")]


def _colour(name: str) -> tuple[int, int, int]:
    return (255, 80, 0) if name.startswith("left") else (0, 0, 255) if name.startswith("right") else (0, 200, 0)


def zoom(frame: np.ndarray, region: tuple[int, int, int, int], scale: float, grid: int,
         joints: dict | None = None, box=None, gamma: float = 1.0) -> np.ndarray:
    x0, y0, x1, y1 = region
    cut = frame[y0:y1, x0:x1]
    if gamma != 1.0:  # against the sun: lift the shadows to see limbs (display only)
        cut = np.clip(255.0 * (cut / 255.0) ** (1.0 / gamma), 0, 255).astype(np.uint8)
    z = cv2.resize(cut, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pad = 40
    out = np.full((z.shape[0] + pad, z.shape[1] + pad, 3), 255, np.uint8)
    out[pad:, pad:] = z

    def to_z(x: float, y: float) -> tuple[int, int]:  # original pixel coords (edges at integers) -> zoom
        return int(round(pad + (x - x0) * scale)), int(round(pad + (y - y0) * scale))

    for gx in range((x0 // grid + 1) * grid, x1, grid):
        major = gx % (grid * 5) == 0
        px = to_z(gx, y0)[0]
        cv2.line(out, (px, pad), (px, out.shape[0]), (0, 255, 255) if major else (160, 160, 160), 1)
        if major:
            cv2.putText(out, str(gx), (px - 14, 15), 0, 0.4, (0, 0, 0), 1)
    for gy in range((y0 // grid + 1) * grid, y1, grid):
        major = gy % (grid * 5) == 0
        py = to_z(x0, gy)[1]
        cv2.line(out, (pad, py), (out.shape[1], py), (0, 255, 255) if major else (160, 160, 160), 1)
        if major:
            cv2.putText(out, str(gy), (2, py + 4), 0, 0.4, (0, 0, 0), 1)
    if box is not None:
        bx, by, bw, bh = box
        cv2.rectangle(out, to_z(bx, by), to_z(bx + bw, by + bh), (255, 0, 255), 1)
    if joints:
        for a, b in _EDGES:
            if joints.get(a) and joints.get(b):
                cv2.line(out, to_z(*joints[a][:2]), to_z(*joints[b][:2]), _colour(b), 1)
        for n, v in joints.items():
            if v:
                p = to_z(*v[:2])
                cv2.circle(out, p, 4, _colour(n), 1 if (len(v) > 2 and v[2] == 0) else -1)
                cv2.putText(out, n.replace("left_", "L").replace("right_", "R")[:6], (p[0] + 5, p[1] - 3),
                            0, 0.35, _colour(n), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("video", choices=sorted(VIDEOS))
    ap.add_argument("frame", type=int)
    ap.add_argument("region", help="x0,y0,x1,y1 in original pixels")
    ap.add_argument("--scale", type=float, default=4.0)
    ap.add_argument("--grid", type=int, default=10)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--person", help="draw this person's labels for the frame (from --labels)")
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--joints", help="a JSON file {joint: [x, y, v]} (and optional box) to draw instead")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    frame = read_span(VIDEOS[args.video], args.frame, args.frame)[0][0]
    joints = box = None
    if args.person:
        doc = json.loads(Path(args.labels).read_text())
        p = next(p for p in doc["people"] if p["id"] == args.person)
        f = next(f for f in p["frames"] if f["frame"] == args.frame)
        joints, box = f["joints"], f["box"]
    elif args.joints:
        d = json.loads(Path(args.joints).read_text())
        box = d.pop("box", None)
        joints = d
    region = tuple(int(v) for v in args.region.split(","))
    cv2.imwrite(args.out, zoom(frame, region, args.scale, args.grid, joints, box, args.gamma))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
