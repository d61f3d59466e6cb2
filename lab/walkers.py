"""The vtest.avi walker set: 27 real people cut out of real video, frame by frame.

People ("sprites"). vtest.avi (Debian's opencv-doc examples) is filmed by a fixed camera: the
per-pixel median of 50 frames spread over the video is the empty scene, and a walker is the
connected component of |frame - background| > 28 (opened 3x3, closed with a 5x7 ellipse,
holes filled) around their box. `SPRITES` lists 27 walkers (first frame, frames, box in that
frame); each is followed frame by frame inside a window around its previous box, so a sprite is
a real walk cycle of 22-104 frames (articulated: legs and arms move), not a rigid cut-out. The
walkers were picked because they stay isolated from other people over those frames.

The person-disjoint split of the target walkers (`TUNE_ATHLETES`, `TEST_ATHLETES`) is shared by the
tracker's evaluation set (services/tracker/lab/evalset.py) and the pose STRN data recipe
(services/pose/lab/strn_data.py), so neither evaluation ever tunes on the other's test people;
`line_kernel` is the motion blur both apply. Lab code: no service's runtime imports it.

The sprite library is built once (~10 s: decoding vtest.avi + the median) and cached as an
.npz in `cache_dir()` ($COACH_TRACKER_EVAL_CACHE, default ~/.cache/coach/tracker-eval).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from shared.video import read_frames as read_frames_of

DATA = "/usr/share/doc/opencv-doc/examples/data"
VTEST = f"{DATA}/vtest.avi"
VERSION = 1

# name -> (first frame in vtest.avi, frames, x, y, w, h of the walker in the first frame).
SPRITES: dict[str, tuple[int, int, int, int, int, int]] = {
    "w000": (0, 22, 254, 220, 31, 89),
    "w043": (43, 104, 720, 273, 40, 116),
    "w064": (64, 24, 336, 168, 24, 70),
    "w109": (109, 42, 375, 175, 30, 81),
    "w168": (168, 42, 645, 121, 17, 69),
    "w169": (169, 35, 503, 210, 51, 86),
    "w174": (174, 69, 457, 215, 42, 90),
    "w214": (214, 88, 395, 160, 31, 77),
    "w232": (232, 38, 704, 284, 44, 112),
    "w247": (247, 24, 402, 237, 35, 99),
    "w369a": (369, 35, 483, 173, 33, 74),
    "w369b": (369, 35, 496, 253, 33, 100),
    "w404": (404, 53, 573, 138, 29, 63),
    "w423": (423, 34, 727, 279, 37, 104),
    "w464": (464, 25, 720, 314, 42, 130),
    "w536a": (536, 45, 634, 280, 39, 105),
    "w536b": (536, 49, 613, 187, 37, 85),
    "w586": (586, 33, 296, 323, 50, 124),
    "w629a": (629, 46, 563, 273, 41, 102),
    "w629b": (629, 51, 615, 238, 38, 100),
    "w629c": (629, 95, 357, 401, 54, 146),
    "w635": (635, 33, 114, 142, 23, 68),
    "w675": (675, 30, 200, 155, 32, 68),
    "w695": (695, 27, 718, 222, 45, 95),
    "w712": (712, 42, 525, 129, 21, 63),
    "w742": (742, 38, 595, 220, 25, 100),
    "w756": (756, 39, 678, 120, 22, 60),
}
# Targets: front- or side-facing walkers (the detector needs a face). Disjoint by person.
TUNE_ATHLETES = ("w109", "w169", "w423", "w536a")
TEST_ATHLETES = ("w174", "w369b", "w635", "w675", "w695", "w742")
DISTRACTORS = tuple(n for n in SPRITES if n not in TUNE_ATHLETES + TEST_ATHLETES)


def cache_dir() -> Path:
    return Path(os.environ.get("COACH_TRACKER_EVAL_CACHE", Path.home() / ".cache" / "coach" / "tracker-eval"))


# ---------------------------------------------------------------- sprites

@dataclass
class Sprite:
    name: str
    patches: list[np.ndarray]        # per frame (h, w, 3) uint8 BGR, cut to the mask's bounds
    masks: list[np.ndarray]          # per frame (h, w) bool
    dx: float                        # mean horizontal walking direction in the source (px/frame)

    @property
    def height(self) -> float:
        return float(np.median([m.shape[0] for m in self.masks]))

    def __len__(self) -> int:
        return len(self.masks)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a binary (h, w) uint8 mask (flood the outside from a 1-px border)."""
    pad = np.pad(mask, 1)
    flood = pad.copy()
    ff = np.zeros((pad.shape[0] + 2, pad.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff, (0, 0), 1)
    return (pad | (1 - flood))[1:-1, 1:-1]


def read_frames(video: str = VTEST, limit: int | None = None) -> list[np.ndarray]:
    """The first `limit` frames (all by default) of a video, BGR."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise FileNotFoundError(f"{video}: apt-get install opencv-doc")
    return read_frames_of(cap, limit)


def median_background(frames: list[np.ndarray]) -> np.ndarray:
    """The empty scene of a fixed camera: the per-pixel median of every 16th frame."""
    sample = np.stack(frames[::16])
    return np.partition(sample, len(sample) // 2, axis=0)[len(sample) // 2]


def follow_walker(frames: list[np.ndarray], bg: np.ndarray, start: int, n: int,
                  box: tuple[int, int, int, int]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Follow one walker from `box` (x, y, w, h px in frame `start`) for up to n frames by background
    subtraction; yields (frame index, box [4] x, y, w, h px, the walker's mask [h, w] bool within the
    box). Stops early where the walker merges with someone or is lost."""
    k_open = np.ones((3, 3), np.uint8)
    k_close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 7))
    hgt, wid = bg.shape[:2]
    prev = np.array(box, float)
    for i in range(start, start + n):
        x, y, w, h = prev
        m = 24
        rx0, ry0 = int(max(x - m, 0)), int(max(y - m, 0))
        rx1, ry1 = int(min(x + w + m, wid)), int(min(y + h + m, hgt))
        fg = (cv2.absdiff(frames[i][ry0:ry1, rx0:rx1], bg[ry0:ry1, rx0:rx1]).max(axis=2) > 28).astype(np.uint8)
        fg = cv2.morphologyEx(cv2.morphologyEx(fg, cv2.MORPH_OPEN, k_open), cv2.MORPH_CLOSE, k_close)
        num, lab, stats, _ = cv2.connectedComponentsWithStats(fg)
        # the component covering most of the previous box
        bx0, by0 = int(x) - rx0, int(y) - ry0
        inside = lab[max(by0, 0):by0 + int(h), max(bx0, 0):bx0 + int(w)]
        counts = np.bincount(inside.ravel(), minlength=num)
        counts[0] = 0
        j = int(np.argmax(counts))
        if j == 0:
            return
        cx, cy, cw, ch = (int(v) for v in stats[j, :4])
        if not 0.8 <= ch / h <= 1.25:                           # merged with someone / lost: stop here
            return
        prev = np.array([rx0 + cx, ry0 + cy, cw, ch], float)
        yield i, prev, lab[cy:cy + ch, cx:cx + cw] == j


def extract_sprites(video: str = VTEST) -> dict[str, Sprite]:
    """Cut every walker in SPRITES out of vtest.avi (background subtraction, see module doc)."""
    last = max(s[0] + s[1] for s in SPRITES.values())
    frames = read_frames(video, last)
    if len(frames) < last:
        raise ValueError(f"{video}: {len(frames)} frames, the sprites need {last}")
    bg = median_background(frames)                                # 50 frames across the video
    out: dict[str, Sprite] = {}
    for name, (start, n, *box) in SPRITES.items():
        patches, masks, xs = [], [], []
        for i, (x, y, w, h), inside in follow_walker(frames, bg, start, n, box):
            x, y, w, h = int(x), int(y), int(w), int(h)
            masks.append(_fill_holes(inside.astype(np.uint8)).astype(bool))
            patches.append(frames[i][y:y + h, x:x + w].copy())
            xs.append(x + w / 2)
        if len(masks) < 10:
            raise ValueError(f"sprite {name}: only {len(masks)} frames extracted")
        out[name] = Sprite(name, patches, masks, float((xs[-1] - xs[0]) / max(len(xs) - 1, 1)))
    return out


def _cache_key() -> str:
    h = hashlib.sha1(repr((VERSION, sorted(SPRITES.items()))).encode()).hexdigest()[:10]
    return f"sprites-v{VERSION}-{h}.npz"


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a cache .npz atomically (a temporary file, then a rename): a concurrent reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def load_sprites(cache: Path | None = None) -> dict[str, Sprite]:
    """The sprite library, from the cache or built (and cached) from vtest.avi."""
    path = (cache or cache_dir()) / _cache_key()
    if path.exists():
        z = np.load(path, allow_pickle=False)
        out = {}
        for name in SPRITES:
            n = int(z[f"{name}/n"])
            out[name] = Sprite(name, [z[f"{name}/p{k}"] for k in range(n)],
                               [z[f"{name}/m{k}"] for k in range(n)], float(z[f"{name}/dx"]))
        return out
    sprites = extract_sprites()
    arrays: dict[str, np.ndarray] = {}
    for name, s in sprites.items():
        arrays[f"{name}/n"] = np.array(len(s))
        arrays[f"{name}/dx"] = np.array(s.dx)
        for k, (p, m) in enumerate(zip(s.patches, s.masks)):
            arrays[f"{name}/p{k}"], arrays[f"{name}/m{k}"] = p, m
    save_npz(path, arrays)
    return sprites



# ---------------------------------------------------------------- motion blur

def line_kernel(vx: float, vy: float) -> np.ndarray | None:
    """Normalised linear motion-blur kernel of length |(vx, vy)| px along that direction; None if < 2 px."""
    length = float(np.hypot(vx, vy))
    if length < 2.0:
        return None
    size = int(np.ceil(length)) | 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    ux, uy = vx / length, vy / length
    for s in np.linspace(-length / 2, length / 2, 2 * size + 1):
        k[int(round(c + s * uy)), int(round(c + s * ux))] = 1.0
    return k / k.sum()

