"""Training/evaluation data for the STRN refiner: BlazePose on real walkers of vtest.avi, clean and degraded.

Recipe (deterministic; `build_cache` writes one .npz per walker under the cache dir, never committed):

1. Tubelets. The 27 walkers of `SPRITES` (first frame, frames, first box; people who stay isolated
   from others over those frames) are followed frame by frame in vtest.avi by background subtraction (fixed camera: the median of
   50 frames is the empty scene; the walker is the connected component of |frame - background| > 28
   covering most of the previous box) -> a box per frame. Boxes are smoothed over 5 frames, as a
   tracker's would be, and that is the crop box given to BlazePose.
2. Pseudo ground truth ("gt"): BlazePose (`BlazePoseEstimator.estimate_sequence`, video mode, crops)
   on the CLEAN frames, three times (crop margin 0.25, crop margin 0.4, mirrored crop with left/right
   swapped back); the per-coordinate median of the three. A joint needs >= 2 of the 3 runs.
   No temporal smoothing is involved, so no filter is favoured by the ground truth.
3. Inputs: BlazePose with the box jittered like a tracker's (centre +-4 % of the height, size +-6 %) on
     clean     the clean frames;
     blur      the frames blurred IN PIXELS before the model (line kernel along a per-sequence
               direction, 5-14 px, varying per frame: the walkers are 60-150 px tall, so that is
               ~5-15 % of the body, a heavy sports-video blur);
     occlusion an occluder (a patch of the same frame from elsewhere, i.e. real clutter) sliding
               across the walker for a stretch of frames, covering 25-60 % of the box width;
     mixed     blur and occlusion together.
   Each degraded variant is run with 2 seeds. Dropped detections and left/right swaps are applied
   to keypoints later (`degrade_keypoints`), so they are cheap to vary in training.
4. Splits by walker: test = TEST_ATHLETES (6 walkers, 5 people: w635 and w675 are one), val = TUNE_ATHLETES (4),
   train = the other 17. No frame of a test walker is ever trained or tuned on, but some test people
   reappear as other walkers in train / val (SAME_PERSON, identity_leaks(); docs/pose.md).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

# The walkers (name -> first frame, frames, first box) and the person-disjoint test / tuning split
# are the tracker evaluation's (people who stay isolated from others over those frames), so
# neither evaluation ever tunes on the other's test people.
from lab.walkers import (SPRITES, TEST_ATHLETES, TUNE_ATHLETES, follow_walker, line_kernel,
                                     median_background, read_frames)
from shared.skeleton import LANDMARK_INDEX, LANDMARK_NAMES

RECIPE_VERSION = 1
VARIANTS = ("clean", "blur", "occlusion", "mixed")
DEGRADED_SEEDS = (0, 1)
SPLITS = {
    "test": tuple(TEST_ATHLETES),
    "val": tuple(TUNE_ATHLETES),
    "train": tuple(n for n in SPRITES if n not in TEST_ATHLETES + TUNE_ATHLETES),
}

# Tubelets that are one person. vtest.avi has few people, who walk back and forth, so one person
# is several walkers. Judged by eye on crops of every walker plus where one walker's track ends and
# the next begins (docs/pose.md, "Identity"); not exhaustive: several men wear a dark jacket and jeans.
SAME_PERSON: tuple[tuple[str, ...], ...] = (
    ("w635", "w675"),                    # w675 starts 8 frames after w635 ends, 4 px away (issue #18)
    ("w174", "w247"),                    # w247 starts 5 frames after w174 ends, 9 px from w174's path
    ("w169", "w232", "w369b", "w695"),   # glasses, black leather jacket, black trousers, white papers in hand
    ("w423", "w712", "w756"),            # the woman in the red jacket
    ("w168", "w214"), ("w369a", "w404"), ("w586", "w629b"),   # track continued after 1-11 frames
)
# Groups the split must keep together (a test checks it). The others cross splits today: see
# identity_leaks() and docs/pose.md; re-splitting them leaves too few people to train on.
SPLIT_TOGETHER = (("w635", "w675"),)


def persons(names) -> list[list[str]]:
    """The walkers among `names` grouped by person (SAME_PERSON; a walker in no group is its own person)."""
    out: list[list[str]] = []
    for n in names:
        grp = next((g for g in SAME_PERSON if n in g), (n,))
        hit = next((o for o in out if o[0] in grp), None)
        (hit.append(n) if hit is not None else out.append([n]))
    return out


def identity_leaks(splits: dict[str, tuple[str, ...]] | None = None) -> list[dict[str, list[str]]]:
    """Persons (SAME_PERSON groups) whose walkers fall in more than one split: split -> walkers."""
    splits = splits or SPLITS
    where = {n: k for k, v in splits.items() for n in v}
    leaks = []
    for g in SAME_PERSON:
        by = {}
        for n in g:
            by.setdefault(where[n], []).append(n)
        if len(by) > 1:
            leaks.append(by)
    return leaks


# Left/right pairs of the 33 landmarks (for mirroring and for the swap degradation).
LR_PERM = np.array([LANDMARK_INDEX[n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")]
                    for n in LANDMARK_NAMES])


def cache_dir() -> Path:
    return Path(os.environ.get("COACH_STRN_CACHE", Path.home() / ".cache" / "coach" / "strn"))


def _recipe_key() -> str:
    return hashlib.sha1(repr((RECIPE_VERSION, sorted(SPRITES.items()), VARIANTS, DEGRADED_SEEDS)).encode()).hexdigest()[:10]


# ---------------------------------------------------------------- tubelets

def follow_walkers(frames: list[np.ndarray]) -> dict[str, tuple[int, np.ndarray]]:
    """name -> (first frame, boxes [n, 4] x, y, w, h px), each walker followed by background
    subtraction as the tracker evaluation cuts them out (stops where the walker merges with someone
    or is lost)."""
    bg = median_background(frames)
    return {name: (start, np.array([box for _, box, _ in follow_walker(frames, bg, start, n, first)]))
            for name, (start, n, *first) in SPRITES.items()}


def smooth_boxes(boxes: np.ndarray, k: int = 5) -> np.ndarray:
    """Moving average of centre and size over k frames (edges: shorter windows) -> [n, 4] x, y, w, h."""
    c = np.concatenate([boxes[:, :2] + boxes[:, 2:] / 2, boxes[:, 2:]], axis=1)  # [n, 4] cx, cy, w, h
    sm = np.stack([c[max(0, i - k // 2):i + k // 2 + 1].mean(axis=0) for i in range(len(c))])
    return np.concatenate([sm[:, :2] - sm[:, 2:] / 2, sm[:, 2:]], axis=1)


# ---------------------------------------------------------------- pixel degradations

def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tracker-like box noise: centre +-4 % of the height, size +-6 % (slowly varying)."""
    n = len(boxes)
    walk = lambda s: np.convolve(rng.normal(0, s, n + 4), np.ones(5) / 5 ** 0.5, "valid")  # noqa: E731  correlated noise
    h = boxes[:, 3]
    cx = boxes[:, 0] + boxes[:, 2] / 2 + walk(0.04) * h
    cy = boxes[:, 1] + boxes[:, 3] / 2 + walk(0.04) * h
    s = np.exp(walk(0.06))
    w2, h2 = boxes[:, 2] * s, boxes[:, 3] * s
    return np.stack([cx - w2 / 2, cy - h2 / 2, w2, h2], axis=1)


def blur_frames(frames: list[np.ndarray], boxes: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Motion blur in pixels around the walker: a line kernel of 5-14 px (varying per frame) along a
    per-sequence direction that drifts by +-25 degrees."""
    base_len, base_dir = rng.uniform(6, 11), rng.uniform(0, np.pi)
    out = []
    for f, b in zip(frames, boxes):
        length = float(np.clip(base_len * rng.uniform(0.6, 1.4), 5, 14))
        ang = base_dir + rng.normal(0, 0.45)
        k = line_kernel(length * np.cos(ang), length * np.sin(ang))
        out.append(_apply_region(f, b, lambda r: cv2.filter2D(r, -1, k, borderType=cv2.BORDER_REFLECT)))
    return out


def _apply_region(frame: np.ndarray, box: np.ndarray, fn) -> np.ndarray:
    """fn applied to the region around the box (box grown by its size), the rest of the frame untouched."""
    x, y, w, h = box
    s = max(w, h)
    hgt, wid = frame.shape[:2]
    x0, y0 = int(max(x + w / 2 - s, 0)), int(max(y + h / 2 - s, 0))
    x1, y1 = int(min(x + w / 2 + s, wid)), int(min(y + h / 2 + s, hgt))
    out = frame.copy()
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = fn(frame[y0:y1, x0:x1])
    return out


def occlude_frames(frames: list[np.ndarray], boxes: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """An occluder (a patch of the same frame from elsewhere: real clutter) sliding across the walker
    for 40-80 % of the frames, 25-60 % of the box wide and 50-110 % of its height."""
    n = len(frames)
    span = max(3, int(n * rng.uniform(0.4, 0.8)))
    t0 = int(rng.integers(0, n - span + 1))
    wf, hf = rng.uniform(0.25, 0.6), rng.uniform(0.5, 1.1)
    y_rel = rng.uniform(-0.1, 1.0 - hf) if hf < 1.0 else 0.0
    src_dx, src_dy = rng.choice([-1, 1]) * rng.uniform(1.5, 3.0), rng.uniform(-0.5, 0.5)
    out = list(frames)
    for t in range(t0, t0 + span):
        x, y, w, h = boxes[t]
        u = (t - t0) / max(span - 1, 1)  # occluder centre goes from the left edge to the right edge
        ow, oh = int(max(2, wf * w)), int(max(2, hf * h))
        ox, oy = int(x - ow / 2 + u * w), int(y + y_rel * h)
        sx, sy = int(ox + src_dx * w), int(oy + src_dy * h)  # source patch: same frame, elsewhere
        f = frames[t].copy()
        hgt, wid = f.shape[:2]
        if 0 <= sx and sx + ow <= wid and 0 <= sy and sy + oh <= hgt:
            patch = frames[t][sy:sy + oh, sx:sx + ow]
        else:
            patch = np.full((oh, ow, 3), rng.integers(40, 200, 3), np.uint8)
        xa, ya, xb, yb = max(ox, 0), max(oy, 0), min(ox + ow, wid), min(oy + oh, hgt)
        if xb > xa and yb > ya:
            f[ya:yb, xa:xb] = patch[ya - oy:yb - oy, xa - ox:xb - ox]
        out[t] = f
    return out


# ---------------------------------------------------------------- keypoint degradations

def degrade_keypoints(kps: np.ndarray, present: np.ndarray, rng: np.random.Generator,
                      p_drop: float = 0.08, p_swap: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """Dropped detections (whole frame absent, runs of 1-3 frames) and left/right swaps (whole skeleton
    or legs only, runs of 1-3 frames) on [T, 33, 3] keypoints. Returns copies."""
    kps, present = kps.copy(), present.copy()
    t_len = len(kps)
    legs = np.array([LANDMARK_INDEX[f"{s}_{j}"] for s in ("left", "right")
                     for j in ("hip", "knee", "ankle", "heel", "foot_index")])
    t = 0
    while t < t_len:
        r = rng.random()
        run = int(rng.integers(1, 4))
        if r < p_drop:
            kps[t:t + run] = np.nan
            present[t:t + run] = False
            t += run
        elif r < p_drop + p_swap:
            for u in range(t, min(t + run, t_len)):
                if rng.random() < 0.5:
                    kps[u] = kps[u, LR_PERM]
                else:
                    kps[u, legs] = kps[u, LR_PERM[legs]]
            t += run
        else:
            t += 1
    return kps, present


# ---------------------------------------------------------------- BlazePose runs

def _pose(est, frames, boxes, margin: float = 0.25, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose on crops -> (kps [n, 33, 3] original px, present [n]). flip: crops are mirrored
    (about each frame's vertical centre line) and the result mirrored back with left/right swapped."""
    est.crop_margin = margin
    if flip:
        wid = frames[0].shape[1]
        frames = [f[:, ::-1].copy() for f in frames]
        boxes = np.stack([wid - boxes[:, 0] - boxes[:, 2], boxes[:, 1], boxes[:, 2], boxes[:, 3]], axis=1)
    seq = est.estimate_sequence(frames, list(boxes))
    kps = seq.keypoints_px.copy()
    if flip:
        kps[..., 0] = wid - kps[..., 0]
        kps = kps[:, LR_PERM]
    est.crop_margin = 0.25
    return kps, seq.present.copy()


def pseudo_ground_truth(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate median of the runs where present; a frame needs >= 2 runs with a pose."""
    kps = np.stack([k for k, _ in runs])  # [R, n, 33, 3]
    pres = np.stack([p for _, p in runs])  # [R, n]
    present = pres.sum(axis=0) >= 2
    with np.errstate(all="ignore"):
        gt = np.nanmedian(np.where(pres[..., None, None], kps, np.nan), axis=0)  # [n, 33, 3]
    gt[~present] = np.nan
    return gt.astype(np.float32), present


def clean_labels(est, clip: list[np.ndarray], crop_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 of the recipe: pseudo ground truth of clean frames from three runs of `est` (crop margin
    0.25, margin 0.4, mirrored), per-coordinate median."""
    return pseudo_ground_truth([_pose(est, clip, crop_boxes), _pose(est, clip, crop_boxes, margin=0.4),
                                _pose(est, clip, crop_boxes, flip=True)])


def build_walker(est, name: str, frames: list[np.ndarray], start: int, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """All BlazePose runs of one walker -> arrays for its .npz."""
    seed = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    clip = frames[start:start + len(boxes)]
    crop_boxes = smooth_boxes(boxes)
    gt, gt_present = clean_labels(est, clip, crop_boxes)
    arrays = {"box": boxes.astype(np.float32), "first_frame": np.array(start), "gt": gt, "gt_present": gt_present}
    for v in VARIANTS:
        for s in DEGRADED_SEEDS if v != "clean" else (0,):
            rng = np.random.default_rng([seed, VARIANTS.index(v), s])
            jb = jitter_boxes(crop_boxes, rng)
            img = clip
            if v in ("blur", "mixed"):
                img = blur_frames(img, boxes, rng)
            if v in ("occlusion", "mixed"):
                img = occlude_frames(img, boxes, rng)
            arrays[f"{v}/{s}"], arrays[f"{v}/{s}/present"] = _pose(est, img, jb)
    return arrays


def _build_each(root: Path, names: list[str], model: str, arrays_of, log) -> Path:
    """Write root/<walker>.npz = arrays_of(estimator, name, frames, start, boxes) for each walker not
    there yet (an existing file is kept; a new one appears whole or not at all)."""
    from services.pose.blazepose import BlazePoseEstimator

    root.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not (root / f"{n}.npz").exists()]
    if not todo:
        return root
    frames = read_frames()
    tubes = follow_walkers(frames)
    # without turning crops upright, explicitly: the shipped STRN weights were trained on that output
    # (turned crops came later and change the degraded runs); the model is the caller's, not COACH_POSE_MODEL
    with BlazePoseEstimator(model=model, align_rotated=False) as est:
        for n in todo:
            start, boxes = tubes[n]
            arrays = arrays_of(est, n, frames, start, boxes)
            tmp = root / f"{n}.tmp{os.getpid()}.npz"
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, root / f"{n}.npz")
            log(f"{model} {n}: {len(boxes)} frames, gt poses {int(arrays['gt_present'].sum())}"
                + "".join(f", {k} {int(arrays[k].sum())}" for k in arrays if k.endswith("/present")))
    return root


def build_cache(cache: Path | None = None, names: list[str] | None = None, log=print) -> Path:
    """Run BlazePose full for every walker (cached: an existing walker file is kept). ~10 s per walker on 2 cores."""
    return _build_each((cache or cache_dir()) / f"walkers-{_recipe_key()}", names or list(SPRITES), "full",
                       build_walker, log)


# ---------------------------------------------------------------- labels of another model

LABEL_MODELS = ("full", "heavy")  # "full": the recipe's own "gt" (the base model itself)


def label_dir(model: str, cache: Path | None = None) -> Path:
    """Where the pseudo labels of `model` live (one .npz per walker: gt, gt_present)."""
    return (cache or cache_dir()) / f"labels-{model}-{_recipe_key()}"


def build_labels(model: str, names: list[str] | None = None, cache: Path | None = None, log=print) -> Path:
    """Pseudo ground truth of the clean frames by BlazePose `model` (step 2 of the recipe with another
    landmark network: same tubelets and crop boxes, 3 runs, per-coordinate median). With model="heavy" the
    STRN (trained and run on full's output) is scored against a more accurate model than its own base,
    so it no longer gets credit for reproducing full's mistakes. Cached; ~3x the cost of full."""
    def labels(est, name, frames, start, boxes):
        gt, gt_present = clean_labels(est, frames[start:start + len(boxes)], smooth_boxes(boxes))
        return {"gt": gt, "gt_present": gt_present, "first_frame": np.array(start)}

    return _build_each(label_dir(model, cache), names or list(SPRITES), model, labels, log)


def load_labels(model: str, names: list[str], cache: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """name -> {"gt", "gt_present"} by `model` (building what is missing)."""
    root = build_labels(model, names, cache)
    return {n: dict(np.load(root / f"{n}.npz")) for n in names}


def load_walkers(split: str, cache: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """name -> arrays of every walker of a split ("train" | "val" | "test"), building what is missing."""
    return load_walkers_named(list(SPLITS[split]), cache)


def load_walkers_named(names: list[str], cache: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    root = build_cache(cache, names)
    return {n: dict(np.load(root / f"{n}.npz")) for n in names}
