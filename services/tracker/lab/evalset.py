"""Long-term tracking evaluation set with exact ground truth: real people on real backgrounds.

No VOT2018-LT / LaSOT data can be reached from here, so the set is *built*: real people cut
out of real video and composited, deterministically, onto real backgrounds with controlled
motion, so that the ground-truth box of every person in every frame is known exactly.

People: the vtest.avi walkers of `lab/walkers.py` (sprites, cut out frame by frame); for the
`exerciser` case (`EXTRA_CASES`: run only when named) the man warming up in the Sports2D demo clip
(`lab/exerciser.py`, cut out by BlazePose's segmentation; loaded into the library on first use).

Composition. A sequence is a background (a crop of a real image, or a moving crop for a
camera pan) plus actors painted back to front by their foot position (lower in the image =
nearer = in front). An actor is a sprite scaled to a height, placed by its foot point, mirrored
to face where it walks, advanced one sprite frame per frame (ping-pong), and optionally
motion-blurred along its image velocity (a line kernel: premultiplied colour and alpha alike).
A pan blurs the background along the camera's velocity. The alpha of an unblurred sprite is
binary (the mask, resized and cut at 0.5).

Ground truth. For every actor and frame: its visible alpha = its alpha x (1 - alpha) of every
actor painted over it, inside the frame. The box is the bounds of the pixels with visible alpha
>= 0.5; the actor is ABSENT (None) when those pixels are under 25% of the actor's whole-body
area (fully or mostly occluded, or out of the frame). The target is actor 0.

Cases (`CASES`; `HARD` are the long-term ones) and splits (`SPLITS`): seeds 0-3 of every case
are for tuning (their athletes come from `TUNE_ATHLETES`); seeds 100-104 are the held-out test
part (athletes from `TEST_ATHLETES`, people never used as a tuning target). Nothing in
the tracker was tuned on the test part. See docs/tracker.md.

The sprite library is built once (~10 s: decoding vtest.avi + the median) and cached as an
.npz in `cache_dir()` ($COACH_TRACKER_EVAL_CACHE, default ~/.cache/coach/tracker-eval);
frames are rendered on the fly (~2 ms each), nothing large is stored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from lab.exerciser import NAME as EXERCISER
from lab.exerciser import load_exerciser
from lab.walkers import (
    DATA,
    DISTRACTORS,
    TEST_ATHLETES,
    TUNE_ATHLETES,
    VERSION,
    VTEST,
    Sprite,
    cache_dir,
    line_kernel,
    load_sprites,
    median_background,
    read_frames,
)

SPLITS = {"tune": (0, 1, 2, 3), "test": (100, 101, 102, 103, 104), "disjoint": (200, 201, 202, 203, 204)}
# The "disjoint" split shares nobody and no scene with the tuning part: its people are the test
# athletes plus the one distractor no tuning sequence uses (the "test" split draws its passers-by
# from the same pool as the tuning part, and paints on the same three scenes); its scenes are
# two images no other split uses (`DISJOINT_SCENES`, also behind the vtest-scale cases).
UNSEEN_DISTRACTORS = ("w000",)
DISJOINT_SCENES = ("home.jpg", "graf1.png")
CASES = ("fast_motion", "motion_blur", "occlusion", "exit_reentry", "camera_pan", "crowd")
# Cases outside the default set (asked for by name, `--cases exerciser`), so that the figures of the
# six above stay comparable with the ones published before: an exercising athlete (lab/exerciser.py)
# among walkers.
EXTRA_CASES = ("exerciser",)
ALL_CASES = CASES + EXTRA_CASES
HARD = ("occlusion", "exit_reentry", "camera_pan", "crowd")
ABSENT_BELOW = 0.25          # visible share of the body under which the target counts as absent


# ---------------------------------------------------------------- backgrounds

def _vtest_background() -> np.ndarray:
    return median_background(read_frames(VTEST))


def load_background(name: str, cache: Path | None = None) -> np.ndarray:
    """Backgrounds: "vtest" (the empty vtest.avi scene, median of 50 frames) or an image of
    the opencv-doc data folder ("leuvenA.jpg", "building.jpg", ...)."""
    if name != "vtest":
        img = cv2.imread(f"{DATA}/{name}")
        if img is None:
            raise FileNotFoundError(f"{DATA}/{name}: apt-get install opencv-doc")
        return img
    path = (cache or cache_dir()) / f"vtest-background-v{VERSION}.png"
    if path.exists():
        return cv2.imread(str(path))
    bg = _vtest_background()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.png")
    cv2.imwrite(str(tmp), bg)
    os.replace(tmp, path)
    return bg


# ---------------------------------------------------------------- composition

# ---------------------------------------------------------------- composition

@dataclass
class Actor:
    sprite: str
    foot: np.ndarray                 # (T, 2) foot point (bottom centre) in world pixels
    height: np.ndarray               # (T,) body height in pixels
    phase: int = 0                   # first sprite frame
    exposure: float = 0.0            # motion blur length = exposure x image speed (px)

    def facing_left(self, t: int) -> bool:
        """Walking direction over a 5-frame window (kept through pauses)."""
        for span in range(2, len(self.foot)):
            a, b = max(t - span, 0), min(t + span, len(self.foot) - 1)
            dx = self.foot[b, 0] - self.foot[a, 0]
            if abs(dx) > 1.0:
                return bool(dx < 0)
        return False


@dataclass
class Sequence:
    name: str
    case: str
    seed: int
    split: str
    size: tuple[int, int]            # (W, H) of the frames
    background: np.ndarray           # world image (Hw, Ww, 3)
    camera: np.ndarray               # (T, 2) top-left of the view in the world, px (ints)
    actors: list[Actor]              # actor 0 is the target
    sprites: dict[str, Sprite] = field(repr=False, default_factory=dict)
    cam_exposure: float = 0.0        # background blur = this x camera speed
    scene: str = ""                  # the background's name ("vtest" or an opencv-doc image)

    @property
    def n_frames(self) -> int:
        return len(self.camera)

    def _sprite_frame(self, a: Actor, t: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.sprites[a.sprite]
        period = 2 * len(s) - 2
        k = (a.phase + t) % period
        k = k if k < len(s) else period - k                        # ping-pong through the walk cycle
        patch, mask = s.patches[k], s.masks[k]
        if a.facing_left(t) != (s.dx < 0):                          # mirror to face the walking direction
            patch, mask = patch[:, ::-1], mask[:, ::-1]
        return patch, mask

    def _layer(self, a: Actor, t: int) -> tuple[int, int, np.ndarray, np.ndarray, int]:
        """(x0, y0, premultiplied colour (h,w,3) f32, alpha (h,w) f32, whole-body area) in frame px."""
        s = self.sprites[a.sprite]
        patch, mask = self._sprite_frame(a, t)
        scale = float(a.height[t]) / s.height
        w = max(2, int(round(patch.shape[1] * scale)))
        h = max(2, int(round(patch.shape[0] * scale)))
        colour = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        alpha = (cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)
        area = int(alpha.sum())
        cam = self.camera[t]
        x0 = int(round(a.foot[t, 0] - cam[0] - w / 2))
        y0 = int(round(a.foot[t, 1] - cam[1] - h))
        colour *= alpha[..., None]
        if a.exposure > 0:
            tp, tn = max(t - 1, 0), min(t + 1, self.n_frames - 1)
            v = ((a.foot[tn] - self.camera[tn]) - (a.foot[tp] - self.camera[tp])) / max(tn - tp, 1)
            k = line_kernel(*(a.exposure * v))
            if k is not None:
                p = k.shape[0] // 2
                colour = cv2.filter2D(cv2.copyMakeBorder(colour, p, p, p, p, cv2.BORDER_CONSTANT), -1, k,
                                      borderType=cv2.BORDER_CONSTANT)
                alpha = cv2.filter2D(cv2.copyMakeBorder(alpha, p, p, p, p, cv2.BORDER_CONSTANT), -1, k,
                                     borderType=cv2.BORDER_CONSTANT)
                x0, y0 = x0 - p, y0 - p
        return x0, y0, colour, alpha, area

    def render(self, t: int, hide: tuple[int, ...] = ()) -> tuple[np.ndarray, list[np.ndarray | None], list[float]]:
        """Frame t: (BGR frame (H,W,3) uint8, per-actor ground-truth box x,y,w,h or None, per-actor
        visible share of the body). `hide` leaves actors out of the picture (tests)."""
        wid, hgt = self.size
        cx, cy = (int(v) for v in self.camera[t])
        view = self.background[cy:cy + hgt, cx:cx + wid]
        if self.cam_exposure > 0:
            tp, tn = max(t - 1, 0), min(t + 1, self.n_frames - 1)
            k = line_kernel(*(self.cam_exposure * (self.camera[tn] - self.camera[tp]) / max(tn - tp, 1)))
            if k is not None:
                view = cv2.filter2D(view, -1, k, borderType=cv2.BORDER_REFLECT)
        out = view.astype(np.float32)
        order = sorted(range(len(self.actors)), key=lambda i: (self.actors[i].foot[t, 1], i))   # far to near
        layers = {}
        for i in order:
            x0, y0, colour, alpha, area = self._layer(self.actors[i], t)
            layers[i] = (x0, y0, alpha, area)
            # paste the part inside the frame
            fx0, fy0 = max(x0, 0), max(y0, 0)
            fx1, fy1 = min(x0 + alpha.shape[1], wid), min(y0 + alpha.shape[0], hgt)
            if fx1 <= fx0 or fy1 <= fy0 or i in hide:
                continue
            a = alpha[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0, None]
            c = colour[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            out[fy0:fy1, fx0:fx1] = out[fy0:fy1, fx0:fx1] * (1.0 - a) + c
        frame = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        boxes: list[np.ndarray | None] = []
        shares: list[float] = []
        for i in range(len(self.actors)):
            box, share = self._visible_box(i, order, layers, hide)
            boxes.append(box)
            shares.append(share)
        return frame, boxes, shares

    def _visible_box(self, i: int, order: list[int], layers: dict, hide: tuple[int, ...]) -> tuple[np.ndarray | None, float]:
        wid, hgt = self.size
        x0, y0, alpha, area = layers[i]
        vis = alpha.copy()
        for j in order[order.index(i) + 1:]:                     # painted over actor i
            if j in hide:
                continue
            jx0, jy0, ja, _ = layers[j]
            ox0, oy0 = max(x0, jx0), max(y0, jy0)
            ox1, oy1 = min(x0 + vis.shape[1], jx0 + ja.shape[1]), min(y0 + vis.shape[0], jy0 + ja.shape[0])
            if ox1 > ox0 and oy1 > oy0:
                vis[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0] *= 1.0 - ja[oy0 - jy0:oy1 - jy0, ox0 - jx0:ox1 - jx0]
        # inside the frame only
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + vis.shape[1], wid), min(y0 + vis.shape[0], hgt)
        if fx1 <= fx0 or fy1 <= fy0:
            return None, 0.0
        on = vis[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] >= 0.5
        share = float(on.sum()) / max(area, 1)
        if share < ABSENT_BELOW or not on.any():
            return None, share
        rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
        return (np.array([fx0 + cols[0], fy0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], np.float32),
                share)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(frame, target's ground-truth box or None) for every frame."""
        for t in range(self.n_frames):
            frame, boxes, _ = self.render(t)
            yield frame, boxes[0]

    def ground_truth(self, actor: int = 0) -> list[np.ndarray | None]:
        return [self.render(t)[1][actor] for t in range(self.n_frames)]


# ---------------------------------------------------------------- trajectories

def _segments(rng: np.random.Generator, n: int, start: np.ndarray, speed: tuple[float, float],
              turn_every: tuple[int, int], box: tuple[float, float, float, float],
              vy_share: float = 0.2) -> np.ndarray:
    """(n, 2) zig-zag: constant velocity for 6..14 frames, then a new random velocity (sign of vx
    flips; bounces off the box x0, y0, x1, y1)."""
    p = np.zeros((n, 2))
    p[0] = start
    sign = rng.choice((-1.0, 1.0))
    t = 1
    while t < n:
        seg = int(rng.integers(*turn_every))
        v = np.array([sign * rng.uniform(*speed), rng.uniform(-1, 1) * vy_share * speed[1]])
        sign = -sign
        for _ in range(seg):
            if t >= n:
                break
            q = p[t - 1] + v
            if not box[0] <= q[0] <= box[2]:
                v[0] = -v[0]
            if not box[1] <= q[1] <= box[3]:
                v[1] = -v[1]
            p[t] = p[t - 1] + v
            t += 1
    return p


def _walk(n: int, points: list[tuple[float, float]], times: list[int]) -> np.ndarray:
    """(n, 2) piecewise-linear path through `points` at frame `times` (held before/after)."""
    ts = np.arange(n)
    pts = np.array(points, float)
    return np.stack([np.interp(ts, times, pts[:, 0]), np.interp(ts, times, pts[:, 1])], axis=1)


def _crop_origin(rng: np.random.Generator, bg: np.ndarray, wid: int, hgt: int) -> np.ndarray:
    return np.array([int(rng.integers(0, bg.shape[1] - wid + 1)), int(rng.integers(0, bg.shape[0] - hgt + 1))])


def _fit(bg: np.ndarray, wid: int, hgt: int, scale: float = 1.0) -> np.ndarray:
    """Scale the background so that it covers wid x hgt (x `scale`)."""
    s = max(wid / bg.shape[1], hgt / bg.shape[0]) * scale
    if abs(s - 1.0) < 1e-6:
        return bg
    return cv2.resize(bg, (int(np.ceil(bg.shape[1] * s)), int(np.ceil(bg.shape[0] * s))), interpolation=cv2.INTER_LINEAR)


def _lookalikes(sprites: dict[str, Sprite], target: str, pool: tuple[str, ...], k: int) -> list[str]:
    """The k people of `pool` whose clothes look most like the target's (hue-saturation-value histograms)."""
    def hist(name: str) -> np.ndarray:
        s = sprites[name]
        mid = len(s) // 2
        hsv = cv2.cvtColor(s.patches[mid], cv2.COLOR_BGR2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], s.masks[mid].astype(np.uint8), [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        return h / max(h.sum(), 1e-9)
    ht = hist(target)
    return sorted(pool, key=lambda n: -float(np.sqrt(ht * hist(n)).sum()))[:k]


def _actor(name: str, foot: np.ndarray, height, rng: np.random.Generator, sprites: dict[str, Sprite],
           exposure: float = 0.0) -> Actor:
    n = len(foot)
    hs = np.full(n, float(height)) if np.isscalar(height) else np.asarray(height, float)
    return Actor(name, foot, hs, int(rng.integers(0, len(sprites[name]))), exposure)


def _scene(split: str, seed: int, names: tuple[str, str]) -> str:
    return (DISJOINT_SCENES if split == "disjoint" else names)[seed % 2]


def _vtest_scale_scene(split: str, seed: int, wid: int, hgt: int, cache: Path | None) -> tuple[np.ndarray, str]:
    """The empty vtest scene, or (disjoint split) another image scaled to its size; + its name."""
    if split != "disjoint":
        return load_background("vtest", cache), "vtest"
    name = _scene(split, seed, ("", ""))
    return _fit(load_background(name, cache), wid, hgt), name


def make_sequence(case: str, seed: int, sprites: dict[str, Sprite] | None = None,
                  cache: Path | None = None) -> Sequence:
    """One sequence of a case. Seeds in SPLITS["tune"] draw tuning athletes, others test athletes."""
    if case not in ALL_CASES:
        raise ValueError(f"unknown case {case!r}: {', '.join(ALL_CASES)}")
    sprites = sprites if sprites is not None else load_sprites(cache)
    split = "tune" if seed in SPLITS["tune"] else "disjoint" if seed in SPLITS["disjoint"] else "test"
    # A case-and-seed specific generator: the same (case, seed) is the same sequence everywhere.
    rng = np.random.default_rng([ALL_CASES.index(case), seed, VERSION])
    athletes = TUNE_ATHLETES if split == "tune" else TEST_ATHLETES
    target = athletes[int(rng.integers(len(athletes)))]
    if case == "exerciser":
        # the one exercising person there is (every split: the splits differ in walkers, scenes, places)
        if EXERCISER not in sprites:
            sprites[EXERCISER] = load_exerciser(cache)
        target = EXERCISER
    pool = tuple(n for n in DISTRACTORS) if split != "disjoint" else \
        tuple(n for n in TEST_ATHLETES + UNSEEN_DISTRACTORS if n != target)
    others = list(rng.permutation(pool))
    look = _lookalikes(sprites, target, pool, 2)
    others = look + [o for o in others if o not in look]           # lookalikes first
    cam_exposure = 0.0

    if case in ("fast_motion", "motion_blur"):
        wid, hgt, n = 640, 480, 90
        bg = _fit(load_background(scene := _scene(split, seed, ("leuvenA.jpg", "building.jpg")), cache), wid, hgt, 1.2)
        cam0 = _crop_origin(rng, bg, wid, hgt)
        speed = (12.0, 26.0) if case == "fast_motion" else (18.0, 32.0)
        foot = _segments(rng, n, np.array([wid * rng.uniform(0.3, 0.7), hgt * rng.uniform(0.75, 0.85)]), speed,
                         (6, 14), (60, hgt * 0.55, wid - 60, hgt - 5)) + cam0
        hgt_t = rng.uniform(140, 170) * (1 + 0.2 * np.sin(np.arange(n) / rng.uniform(8, 14)))   # approach / retreat
        actors = [_actor(target, foot, hgt_t, rng, sprites, 0.0 if case == "fast_motion" else 0.8)]
        for k in range(2):
            y = hgt * rng.uniform(0.55, 0.7)
            x0, x1 = (wid * rng.uniform(0.0, 0.3), wid * rng.uniform(0.7, 1.0))[::(1 if k else -1)]
            actors.append(_actor(others[k + 1], _walk(n, [(x0, y), (x1, y + 10)], [0, n - 1]) + cam0,
                                 rng.uniform(110, 130), rng, sprites))
        camera = np.tile(cam0, (n, 1))

    elif case == "occlusion":
        # vtest scale: ~90 px people on the empty vtest scene; people walk across the athlete's
        # path nearer the camera (in front), one stops in front of the athlete for a while.
        wid, hgt, n = 768, 576, 120
        bg, scene = _vtest_scale_scene(split, seed, wid, hgt, cache)
        y = rng.uniform(260, 330)
        left = rng.random() < 0.5
        xs = (60.0, 700.0) if left else (700.0, 60.0)
        foot = _walk(n, [(xs[0], y), (xs[1], y + rng.uniform(-20, 20))], [0, n - 1])
        actors = [_actor(target, foot, 92, rng, sprites)]
        # three crossers in front (walking the other way), meeting the athlete at t_meet
        for k, t_meet in enumerate(sorted(rng.choice(np.arange(20, n - 15), 3, replace=False))):
            meet = foot[t_meet]
            v = rng.uniform(4, 8) * (1 if not left else -1)
            path = np.stack([meet[0] + v * (np.arange(n) - t_meet), np.full(n, meet[1] + rng.uniform(10, 22))], 1)
            actors.append(_actor(others[k], path, rng.uniform(98, 108), rng, sprites))
        # a person who walks in, stands in front of the athlete's path for ~12 frames, walks on
        t_stop = int(rng.integers(35, n - 40))
        stop = foot[t_stop + 6] + (0, 14)
        actors.append(_actor(others[3], _walk(n, [(stop[0], stop[1] + 120), stop, stop, (stop[0] + 200, stop[1] + 60)],
                                              [0, t_stop, t_stop + 14, n - 1]), 104, rng, sprites))
        camera = np.zeros((n, 2), int)

    elif case == "exit_reentry":
        wid, hgt, n = 640, 480, 130
        bg = _fit(load_background(scene := _scene(split, seed, ("building.jpg", "leuvenA.jpg")), cache), wid, hgt, 1.1)
        cam0 = _crop_origin(rng, bg, wid, hgt)
        y = hgt * rng.uniform(0.78, 0.88)
        t_out = int(rng.integers(30, 45))           # leaves the frame completely at t_out
        gap = int(rng.integers(20, 40))             # frames fully outside
        same_side = rng.random() < 0.5
        x_start = wid * rng.uniform(0.4, 0.6)
        out_x = -60.0                                # just outside the left edge
        in_x = -60.0 if same_side else wid + 60.0
        back_x = wid * rng.uniform(0.3, 0.7)
        # walks out, waits outside (moving to the other side unseen, if it comes back there), walks back in
        foot = _walk(n, [(x_start, y), (out_x, y - 10), (in_x, y + 5), (in_x, y + 5), (back_x, y)],
                     [0, t_out, t_out + 1, t_out + gap, n - 1]) + cam0
        actors = [_actor(target, foot, rng.uniform(130, 150), rng, sprites)]
        # two people stay in view (a lookalike walks through where the athlete left)
        y2 = hgt * rng.uniform(0.6, 0.72)
        actors.append(_actor(others[0], _walk(n, [(wid * 0.9, y2), (wid * 0.05, y2 + 15)], [0, n - 1]) + cam0,
                             rng.uniform(115, 125), rng, sprites))
        y3 = hgt * rng.uniform(0.62, 0.75)
        actors.append(_actor(others[2], _walk(n, [(wid * 0.15, y3), (wid * 0.75, y3)], [0, n - 1]) + cam0,
                             rng.uniform(115, 125), rng, sprites))
        camera = np.tile(cam0, (n, 1))

    elif case == "camera_pan":
        # A camera on a tripod pans after the athlete across a wide scene (world = the background
        # upscaled 2.2x), lagging and overshooting; once it pans away and the athlete leaves the view.
        wid, hgt, n = 640, 480, 120
        bg = _fit(load_background(scene := _scene(split, seed, ("leuvenA.jpg", "building.jpg")), cache), wid, hgt, 2.2)
        ww, wh = bg.shape[1], bg.shape[0]
        y = wh * rng.uniform(0.7, 0.8)
        x_a, x_b = 0.15 * ww, 0.85 * ww
        if rng.random() < 0.5:
            x_a, x_b = x_b, x_a
        foot = _walk(n, [(x_a, y), (x_b, y + rng.uniform(-30, 30))], [0, n - 1])
        foot[:, 0] += 25 * np.sin(np.arange(n) / 6.0)            # stop-and-go along the way
        actors = [_actor(target, foot, rng.uniform(120, 140), rng, sprites)]
        # camera: smoothed follow with lag, plus a look-away excursion
        cam_x = np.empty(n)
        cam_x[0] = foot[0, 0] - wid / 2
        v = 0.0
        t_away = int(rng.integers(45, 65))
        away = np.zeros(n)
        away[t_away:t_away + 30] = np.sin(np.linspace(0, np.pi, 30)) * (wid * 0.85) * rng.choice((-1, 1))
        for t in range(1, n):
            goal = foot[t, 0] - wid / 2 + away[t]
            v = 0.75 * v + 0.25 * np.clip(goal - cam_x[t - 1], -40, 40)
            cam_x[t] = cam_x[t - 1] + v
        cam_y = y - hgt * 0.8 + 12 * np.sin(np.arange(n) / 9.0)
        camera = np.stack([np.clip(cam_x, 0, ww - wid), np.clip(cam_y, 0, wh - hgt)], 1).round().astype(int)
        for k in range(3):
            xk = rng.uniform(0.1, 0.9) * ww
            yk = y + rng.uniform(-50, 20)
            actors.append(_actor(others[k], _walk(n, [(xk, yk), (xk + rng.uniform(-300, 300), yk)], [0, n - 1]),
                                 rng.uniform(110, 135), rng, sprites))
        for a in actors:
            a.exposure = 0.5
        cam_exposure = 0.5

    elif case == "exerciser":
        # An athlete warming up nearly in place (jumping jacks, arm and leg swings: a real person,
        # lab/exerciser.py) while 3-6 walkers cross the view, two of them just in front of him.
        # Odd pairs of seeds (2-3, 102-103, 202-203) are zoomed in 1.7x: everyone is larger.
        wid, hgt, n = 768, 576, 100
        bg, scene = _vtest_scale_scene(split, seed, wid, hgt, cache)
        zoom = 1.7 if (seed // 2) % 2 else 1.0

        def tall(y: float) -> float:                           # the vtest scene's perspective (crowd), zoomed
            return zoom * (82.0 + (y - 230.0) * 22.0 / 170.0)
        y = rng.uniform(280, 360) if zoom == 1.0 else rng.uniform(330, 390)
        x = rng.uniform(200, 570)
        drift = (rng.uniform(-40, 40), rng.uniform(-10, 10))   # moving little: a slow drift of a step or two
        foot = _walk(n, [(x, y), (x + drift[0], y + drift[1])], [0, n - 1])
        actors = [_actor(target, foot, tall(y), rng, sprites)]
        k_walkers = int(rng.integers(3, 7))
        t_meets = sorted(rng.choice(np.arange(15, n - 15), 2, replace=False))
        for k in range(k_walkers):
            v = rng.uniform(4, 8) * zoom * rng.choice((-1, 1))
            if k < 2:      # passes just in front of him (nearer the camera) at t_meet
                t_meet = int(t_meets[k])
                yk = foot[t_meet, 1] + rng.uniform(8, 25)
                x0 = foot[t_meet, 0] - v * t_meet
            else:          # crosses elsewhere, in front or behind
                yk = rng.uniform(230, 420) if zoom == 1.0 else rng.uniform(250, 460)
                x0 = rng.uniform(-100, 0) if v > 0 else rng.uniform(wid, wid + 100)
            path = np.stack([x0 + v * np.arange(n), np.full(n, yk) + rng.uniform(-10, 10) * np.arange(n) / n], 1)
            actors.append(_actor(others[k], path, tall(yk), rng, sprites))
        camera = np.zeros((n, 2), int)

    else:  # crowd
        wid, hgt, n = 768, 576, 120
        bg, scene = _vtest_scale_scene(split, seed, wid, hgt, cache)
        foot = _segments(rng, n, np.array([rng.uniform(250, 500), rng.uniform(280, 330)]), (3.0, 7.0), (10, 25),
                         (80, 230, 690, 400), vy_share=0.5)
        actors = [_actor(target, foot, np.interp(foot[:, 1], [230, 400], [82, 104]), rng, sprites)]
        for k in range(6):
            y0, y1 = rng.uniform(230, 400), rng.uniform(230, 400)
            x0, x1 = (rng.uniform(0, 200), rng.uniform(560, 768))[::rng.choice((-1, 1))]
            actors.append(_actor(others[k], _walk(n, [(x0, y0), (x1, y1)], [0, n - 1]),
                                 float(np.interp((y0 + y1) / 2, [230, 400], [82, 104])), rng, sprites))
        camera = np.zeros((n, 2), int)

    camera = np.asarray(camera, int)
    return Sequence(f"{case}-{seed}", case, seed, split, (wid, hgt), bg, camera, actors, sprites, cam_exposure, scene)


def make_split(split: str = "test", cases: tuple[str, ...] = CASES,
               sprites: dict[str, Sprite] | None = None) -> list[Sequence]:
    if split not in SPLITS and split != "all":
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, all; got {split!r}")
    seeds = SPLITS["tune"] + SPLITS["test"] if split == "all" else SPLITS[split]
    sprites = sprites if sprites is not None else load_sprites()
    return [make_sequence(c, s, sprites) for c in cases for s in seeds]


def write_preview(seq: Sequence, path: str, every: int = 1) -> None:
    """An MP4 of the sequence with the target's ground truth drawn (green), for eyeballing."""
    wid, hgt = seq.size
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (wid, hgt))
    for t in range(0, seq.n_frames, every):
        frame, boxes, _ = seq.render(t)
        for i, b in enumerate(boxes):
            if b is not None:
                x, y, w, h = (int(v) for v in b)
                cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), (0, 255, 0) if i == 0 else (0, 0, 255), 1)
        cv2.putText(frame, f"{seq.name} t={t}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        out.write(frame)
    out.release()
