"""A real exercising person, cut out of the Sports2D demo clip frame by frame: the athlete of the
tracker evaluation set's `exerciser` case (services/tracker/lab/evalset.py).

Source. `.media/sports2d-demo.mp4` (Sports2D 0.8.34's demo, BSD-3-Clause, `.media/sports2d-LICENSE`;
scripts/setup.sh installs it): 1768x994 at 30 fps, a fixed camera; a man on a raised box warms up
(jumping jacks, frames ~0-75; arm swings and leg swings, ~75-140), then flips off it (~140-185).

Cut-out. Plain background subtraction gives holey masks there (bright sky, swaying trees, the
sun's flare), so the mask is BlazePose's own person segmentation (MediaPipe Pose with
`enable_segmentation=True`, the installed 0.10.21 wheel, run offline on its bundled full model)
on a crop of the box top (`CROP`; the woman who walks through stays below it), cut at 0.5, the
largest component, holes filled. Every 3rd clip frame of 0-138 (`FRAMES`): the sprite runs at
10 fps, the evaluation set's rate. The flip is left out (a rotating body on the trees is where
the segmentation is least sure, and the policies see the warm-up first).

Anchor. A walker's patch is cut to its mask's bounds and placed by its bottom centre; an
exerciser's hops would vanish that way (the feet are the bottom in the air too). So every patch
reaches down to the box top he stands on (`ground`: the median lowest mask row), and is centred on
the body's column centroid: a hop lifts him off the foot point, a one-sided arm swing does not
shift him. His own small steps on the box are dropped (he stays put; the case moves him).

Patches are stored at half the clip's resolution (~230 px tall; the case scales them to 90-180 px).
Built once (~5 s CPU) and cached as an .npz beside the walkers (`cache_dir()`).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

from lab.walkers import Sprite, _fill_holes, cache_dir, read_frames, save_npz

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / ".media" / "sports2d-demo.mp4"
CLIP_SHA256 = "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039"   # as scripts/setup.sh pins it
NAME = "x_s2d"                       # the sprite's name in the library
FRAMES = tuple(range(0, 139, 3))     # clip frames (30 fps) -> 10 fps
CROP = (300, 0, 1500, 475)           # x0, y0, x1, y1 px of the clip: the box top and the man above it
SCALE = 0.5                          # stored patch size / clip size
VERSION = 1


def _segment(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Per frame: BlazePose's person mask (bool, crop size) of the man, in video mode (the pose
    of one frame seeds the next)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import mediapipe as mp

    x0, y0, x1, y1 = CROP
    masks = []
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=True,
                                smooth_segmentation=True) as pose:
        for f in frames:
            res = pose.process(cv2.cvtColor(np.ascontiguousarray(f[y0:y1, x0:x1]), cv2.COLOR_BGR2RGB))
            if res.segmentation_mask is None:
                raise ValueError(f"{CLIP.name}: no person segmented in a frame of {FRAMES}")
            m = (res.segmentation_mask > 0.5).astype(np.uint8)
            num, lab, stats, _ = cv2.connectedComponentsWithStats(m)
            if num < 2:
                raise ValueError(f"{CLIP.name}: an empty person mask")
            j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            masks.append(_fill_holes((lab == j).astype(np.uint8)).astype(bool))
    return masks


def extract_exerciser(clip: Path = CLIP) -> Sprite:
    """Cut the man out of the clip (module doc): patches anchored on the box top and his centroid."""
    if not clip.exists():
        raise FileNotFoundError(f"{clip}: run scripts/setup.sh (it installs the Sports2D demo clip)")
    frames = read_frames(str(clip), FRAMES[-1] + 1)
    frames = [frames[i] for i in FRAMES]
    masks = _segment(frames)
    x0, y0, x1, y1 = CROP
    bottoms = [int(np.flatnonzero(m.any(axis=1))[-1]) for m in masks]
    ground = int(np.median(bottoms))                   # the box top he stands on (crop px)
    patches, out_masks = [], []
    for f, m in zip(frames, masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        cx = round(float(np.nonzero(m)[1].mean()))
        half = max(cx - cols[0], cols[-1] - cx) + 1
        top, bottom = rows[0], max(rows[-1], ground) + 1
        # a window centred on cx may leave the crop: pad image and mask alike (padding is masked out)
        pw = half + 1
        img = cv2.copyMakeBorder(np.ascontiguousarray(f[y0:y1, x0:x1]), 0, 0, pw, pw, cv2.BORDER_CONSTANT)
        msk = np.pad(m, ((0, 0), (pw, pw)))
        src, mm = img[top:bottom, cx - half + pw:cx + half + 1 + pw], msk[top:bottom, cx - half + pw:cx + half + 1 + pw]
        w, h = max(2, round(mm.shape[1] * SCALE)), max(2, round(mm.shape[0] * SCALE))
        patches.append(cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA))
        out_masks.append(cv2.resize(mm.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5)
    # dx 0: he faces the camera; the case mirrors him by the direction he drifts, like a walker
    return Sprite(NAME, patches, out_masks, 0.0)


def _cache_key() -> str:
    h = hashlib.sha1(repr((VERSION, NAME, FRAMES, CROP, SCALE, CLIP_SHA256)).encode()).hexdigest()[:10]
    return f"exerciser-v{VERSION}-{h}.npz"


def load_exerciser(cache: Path | None = None) -> Sprite:
    """The exerciser sprite, from the cache or built (and cached) from the clip."""
    path = (cache or cache_dir()) / _cache_key()
    if path.exists():
        z = np.load(path, allow_pickle=False)
        n = int(z["n"])
        return Sprite(NAME, [z[f"p{k}"] for k in range(n)], [z[f"m{k}"] for k in range(n)], float(z["dx"]))
    s = extract_exerciser()
    arrays: dict[str, np.ndarray] = {"n": np.array(len(s)), "dx": np.array(s.dx)}
    for k, (p, m) in enumerate(zip(s.patches, s.masks)):
        arrays[f"p{k}"], arrays[f"m{k}"] = p, m
    save_npz(path, arrays)
    return s


def write_masks_png(path: str, sprite: Sprite | None = None, every: int = 5) -> None:
    """Every `every`-th patch with its mask (outside darkened), side by side: for checking by eye."""
    s = sprite or load_exerciser()
    tiles = []
    for k in range(0, len(s), every):
        p = s.patches[k].copy()
        p[~s.masks[k]] = (p[~s.masks[k]] * 0.25).astype(np.uint8)
        p = cv2.resize(p, (max(1, int(p.shape[1] * 240 / p.shape[0])), 240))
        cv2.putText(p, str(FRAMES[k]), (3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
        tiles.append(p)
    cv2.imwrite(path, np.hstack(tiles))
