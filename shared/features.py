"""Per-frame pose features for fault classification (AI Coach, Sec. 5.2, Table 1) and joint angles.

Input everywhere: keypoints [T, 33, 3] = x_px, y_px, confidence in BlazePose order
(shared.skeleton.LANDMARK_NAMES); NaN rows where no pose was found. Image y points down.

Paper features (Table 1). Each is cos(V1, V2) with V1 = P_j - P_i, V2 = P_k - P_l over a
quadruple (P_i, P_j, P_l, P_k). The extracted table lost its P_j column; we reconstruct it
anatomically (each row names a limb pair whose relative direction encodes one fault):

    name             P_i         P_j           P_l        P_k            straight/parallel ->
    cos_hip_flex_l   L shoulder  L hip         L hip      L knee         +1 (trunk in line with thigh)
    cos_hip_flex_r   R shoulder  R hip         R hip      R knee         +1
    cos_thigh_split  L knee      L hip         R hip      R knee         -1 (thighs parallel)
    cos_shin_cross   L ankle     L knee        R knee     R ankle        -1 (shins parallel)
    cos_leg_split    L ankle     L hip         R hip      R ankle        -1 (legs parallel)
    cos_knee_l       L hip       L knee        L knee     L ankle        +1 (knee straight)
    cos_knee_r       R hip       R knee        R knee     R ankle        +1
    cos_skis         L heel      L foot_index  R heel     R foot_index   +1 (skis parallel)

The paper's snowboard/ski points (bottom and front of each ski) map to BlazePose's heel and
foot index: the ski is rigidly bound to the boot, so heel -> foot index is the ski direction.

Extensions (not in the paper; used by the squat / push-up / plank packs):
    cos_elbow_l/r       cos(elbow - shoulder, wrist - elbow): +1 = arm straight
    cos_trunk_vertical  cos(hip_mid - shoulder_mid, image down): +1 = upright trunk
    body_line_offset    signed distance of hip_mid from the shoulder_mid-ankle_mid line / that
                        line's length; > 0 = hips below the line (toward the floor, sagging),
                        < 0 = above it (piked). Meaningful when the body is roughly horizontal.
    hip_above_knee      (knee_y - hip_y) / |ankle - knee| (mean of both sides): hip height above
                        the knee in shin lengths; <= 0 = hips at or below the knees (deep squat).
                        Uses only image-vertical offsets, so it reads the same from front or side.
    knee_width_ratio    (L knee x - R knee x) / (L ankle x - R ankle x): < 1 = knees closer together
                        than the ankles (knees caving in). Needs a front or oblique view.

Every feature is a cosine or a ratio of lengths in the same image, so it is invariant to
translation and uniform scaling of the pose by construction. The paper's cosines are also
invariant to in-plane rotation (somersaults); the extensions use image-vertical as gravity.
"""
from __future__ import annotations

import numpy as np

from shared.skeleton import ANGLE_NAMES, ANGLE_VECTORS, LANDMARK_INDEX as LI

# (name, P_i, P_j, P_l, P_k): V1 = P_j - P_i, V2 = P_k - P_l.
PAPER_QUADRUPLES: tuple[tuple[str, str, str, str, str], ...] = (
    ("cos_hip_flex_l", "left_shoulder", "left_hip", "left_hip", "left_knee"),
    ("cos_hip_flex_r", "right_shoulder", "right_hip", "right_hip", "right_knee"),
    ("cos_thigh_split", "left_knee", "left_hip", "right_hip", "right_knee"),
    ("cos_shin_cross", "left_ankle", "left_knee", "right_knee", "right_ankle"),
    ("cos_leg_split", "left_ankle", "left_hip", "right_hip", "right_ankle"),
    ("cos_knee_l", "left_hip", "left_knee", "left_knee", "left_ankle"),
    ("cos_knee_r", "right_hip", "right_knee", "right_knee", "right_ankle"),
    ("cos_skis", "left_heel", "left_foot_index", "right_heel", "right_foot_index"),
)
EXTRA_QUADRUPLES: tuple[tuple[str, str, str, str, str], ...] = (
    ("cos_elbow_l", "left_shoulder", "left_elbow", "left_elbow", "left_wrist"),
    ("cos_elbow_r", "right_shoulder", "right_elbow", "right_elbow", "right_wrist"),
)
PAPER_FEATURES: tuple[str, ...] = tuple(q[0] for q in PAPER_QUADRUPLES)
FEATURE_NAMES: tuple[str, ...] = PAPER_FEATURES + tuple(q[0] for q in EXTRA_QUADRUPLES) + (
    "cos_trunk_vertical", "body_line_offset", "hip_above_knee", "knee_width_ratio",
)
FEATURE_INDEX: dict[str, int] = {n: i for i, n in enumerate(FEATURE_NAMES)}

# Joint angles (names, conventions): shared.skeleton.ANGLE_NAMES.
_ANGLE_QUADS = ANGLE_VECTORS
_DOWN = np.array([0.0, 1.0])  # gravity in image coordinates (y down)


def _points(kps: np.ndarray, min_confidence: float) -> np.ndarray:
    """[T,33,3] -> [T,33,2] float64 positions, NaN where the joint is missing or below min_confidence."""
    kps = np.asarray(kps, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[1:] != (33, 3):
        raise ValueError(f"keypoints must be [T,33,3], got {kps.shape}")
    xy = kps[..., :2].copy()
    conf = kps[..., 2]
    bad = ~(conf >= min_confidence)  # NaN confidence counts as missing
    xy[bad] = np.nan
    return xy


def _cos(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """Row-wise cosine of [T,2] vectors; NaN if either is missing or has zero length."""
    n1 = np.linalg.norm(v1, axis=-1)
    n2 = np.linalg.norm(v2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.sum(v1 * v2, axis=-1) / (n1 * n2)
    c[~((n1 > 1e-9) & (n2 > 1e-9))] = np.nan
    return np.clip(c, -1.0, 1.0)


def _quad_cos(xy: np.ndarray, pi: str, pj: str, pl: str, pk: str) -> np.ndarray:
    return _cos(xy[:, LI[pj]] - xy[:, LI[pi]], xy[:, LI[pk]] - xy[:, LI[pl]])


def _mid(xy: np.ndarray, a: str, b: str) -> np.ndarray:
    return 0.5 * (xy[:, LI[a]] + xy[:, LI[b]])


def _body_line(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed offset of hip_mid from the shoulder-ankle line / line length, signed bend in degrees).

    Sign: + when the hips lie below the line in the image (toward the floor)."""
    s = _mid(xy, "left_shoulder", "right_shoulder")
    h = _mid(xy, "left_hip", "right_hip")
    a = _mid(xy, "left_ankle", "right_ankle")
    d = a - s  # [T,2]
    length = np.linalg.norm(d, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.stack([-d[:, 1], d[:, 0]], axis=-1) / length[:, None]  # unit normal
        n *= np.where(n[:, 1] < 0, -1.0, 1.0)[:, None]  # make it point down (toward the floor)
        offset = np.sum((h - s) * n, axis=-1) / length
        bend = np.degrees(np.pi - np.arccos(_cos(s - h, a - h)))  # 0 = straight line
    sign = np.where(offset > 0, -1.0, 1.0)  # below the line = sagging = negative bend
    offset[~(length > 1e-9)] = np.nan
    return offset, sign * bend


def frame_features(kps: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """Keypoints [T,33,3] -> features [T,F] in FEATURE_NAMES order; NaN where a needed joint is missing."""
    xy = _points(kps, min_confidence)  # [T,33,2]
    cols = [_quad_cos(xy, *q[1:]) for q in PAPER_QUADRUPLES + EXTRA_QUADRUPLES]
    trunk = _mid(xy, "left_hip", "right_hip") - _mid(xy, "left_shoulder", "right_shoulder")
    cols.append(_cos(trunk, np.broadcast_to(_DOWN, trunk.shape)))
    cols.append(_body_line(xy)[0])

    # hip height above the knee in shin lengths, averaged over the sides that are visible
    sides = []
    for s in ("left", "right"):
        hip, knee, ankle = xy[:, LI[f"{s}_hip"]], xy[:, LI[f"{s}_knee"]], xy[:, LI[f"{s}_ankle"]]
        shin = np.linalg.norm(ankle - knee, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sides.append(np.where(shin > 1e-9, (knee[:, 1] - hip[:, 1]) / shin, np.nan))
    sides_arr = np.stack(sides, axis=-1)  # [T,2]
    n_ok = np.sum(np.isfinite(sides_arr), axis=-1)
    cols.append(np.where(n_ok > 0, np.nansum(sides_arr, axis=-1) / np.maximum(n_ok, 1), np.nan))

    # knee separation / ankle separation (horizontal); undefined when the ankles overlap (side view)
    kx = xy[:, LI["left_knee"], 0] - xy[:, LI["right_knee"], 0]
    ax = xy[:, LI["left_ankle"], 0] - xy[:, LI["right_ankle"], 0]
    shin_l = np.linalg.norm(xy[:, LI["left_ankle"]] - xy[:, LI["left_knee"]], axis=-1)
    shin_r = np.linalg.norm(xy[:, LI["right_ankle"]] - xy[:, LI["right_knee"]], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = kx / ax
    ratio[~(np.abs(ax) > 0.15 * 0.5 * (shin_l + shin_r))] = np.nan
    cols.append(np.clip(ratio, -3.0, 3.0))

    return np.stack(cols, axis=-1)  # [T,F]


def joint_angles_deg(kps: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """Keypoints [T,33,3] -> angles [T,A] in degrees, ANGLE_NAMES order (flexion: 0 = straight)."""
    xy = _points(kps, min_confidence)
    out = []
    for name in ANGLE_NAMES:
        if name in _ANGLE_QUADS:
            out.append(np.degrees(np.arccos(_quad_cos(xy, *_ANGLE_QUADS[name]))))
        elif name == "trunk":
            trunk = _mid(xy, "left_hip", "right_hip") - _mid(xy, "left_shoulder", "right_shoulder")
            out.append(np.degrees(np.arccos(_cos(trunk, np.broadcast_to(_DOWN, trunk.shape)))))
        elif name == "body_line":
            out.append(_body_line(xy)[1])
    return np.stack(out, axis=-1)  # [T,A]


def temporal_deltas(features: np.ndarray, lag: int) -> np.ndarray:
    """features [T,k] -> central differences f[t+lag] - f[t-lag], [T,k] (edges use the nearest frame).

    Gives a per-frame classifier the motion direction: ~0 at the turnaround of a repetition."""
    T = features.shape[0]
    idx = np.arange(T)
    ahead = np.clip(idx + lag, 0, T - 1)
    behind = np.clip(idx - lag, 0, T - 1)
    return features[ahead] - features[behind]


def moving_median(features: np.ndarray, half: int) -> np.ndarray:
    """Centred NaN-aware median over 2*half+1 frames, [T,k] -> [T,k]; frames with no data stay NaN.

    Keypoint jitter is nearly independent frame to frame, so a short median cuts feature noise
    (short vectors such as heel -> toe suffer most) without moving the edges of a fault episode."""
    T = features.shape[0]
    if half <= 0 or T == 0:
        return features
    pad = np.pad(features, ((half, half), (0, 0)), constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1, axis=0)  # [T,k,w]
    out = np.full_like(features, np.nan)
    ok = np.isfinite(win).any(axis=-1)
    with np.errstate(all="ignore"):
        out[ok] = np.nanmedian(win[ok], axis=-1)
    out[~np.isfinite(features).any(axis=1)] = np.nan  # keep "no pose" frames without a verdict
    return out[:T]


# ----------------------------------------------------------------------------- named features (real-label packs)
# Packs trained on real landmark data pick their inputs by name from these families, so a data
# set with only some landmarks (a bicep curl: upper body only) still gets a feature set:
#   any FEATURE_NAMES entry                 the cosines / ratios above
#   cos3_<a>__<b>__<c>                      cosine of the angle at b between b->a and b->c (joint angle)
#   seg_<a>__<b>_x / _y                     unit direction of a->b in the image: segment orientation
#                                           against image horizontal / vertical (y down = gravity)
#   rel_<lm>_x / _y                         (lm - hip midpoint) / torso length (shoulder mid - hip mid)
#   rels_<lm>_x / _y                        (lm - shoulder midpoint) / mean upper-arm length (no hips)
# All are invariant to translation and uniform scale, like the paper's cosines.


def _torso_frame(xy: np.ndarray, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """(origin [T,2], scale [T]) for rel_ (hips) or rels_ (shoulders) coordinates; NaN where unmeasured."""
    sm = _mid(xy, "left_shoulder", "right_shoulder")
    if origin == "rel":
        hm = _mid(xy, "left_hip", "right_hip")
        return hm, np.linalg.norm(sm - hm, axis=-1)
    arms = np.stack([np.linalg.norm(xy[:, LI[f"{s}_elbow"]] - xy[:, LI[f"{s}_shoulder"]], axis=-1)
                     for s in ("left", "right")], axis=-1)
    with np.errstate(all="ignore"):
        return sm, np.nanmean(arms, axis=-1)


def named_features(kps: np.ndarray, names, min_confidence: float = 0.3) -> np.ndarray:
    """Keypoints [T,33,3] -> [T,len(names)] features by name (see the families above); NaN where unmeasured."""
    xy = _points(kps, min_confidence)
    base = None
    frames: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cols = []
    for n in names:
        if n in FEATURE_INDEX:
            if base is None:
                base = frame_features(kps, min_confidence)
            cols.append(base[:, FEATURE_INDEX[n]])
        elif n.startswith("cos3_"):
            a, b, c = n[5:].split("__")
            cols.append(_cos(xy[:, LI[a]] - xy[:, LI[b]], xy[:, LI[c]] - xy[:, LI[b]]))
        elif n.startswith("seg_"):
            a, rest = n[4:].split("__")
            b, axis = rest[:-2], rest[-1]
            d = xy[:, LI[b]] - xy[:, LI[a]]
            with np.errstate(all="ignore"):
                u = d / np.linalg.norm(d, axis=-1, keepdims=True)
            cols.append(u[:, 0 if axis == "x" else 1])
        elif n.startswith(("rel_", "rels_")):
            kind, rest = n.split("_", 1)
            lm, axis = rest[:-2], rest[-1]
            if kind not in frames:
                frames[kind] = _torso_frame(xy, kind)
            o, s = frames[kind]
            with np.errstate(all="ignore"):
                v = (xy[:, LI[lm], 0 if axis == "x" else 1] - o[:, 0 if axis == "x" else 1]) / s
            v[~(s > 1e-9)] = np.nan
            cols.append(v)
        else:
            raise KeyError(f"unknown feature {n!r}")
    out = np.stack(cols, axis=-1) if cols else np.zeros((len(xy), 0))
    return np.where(np.isfinite(out), out, np.nan)


def is_named_feature(name: str) -> bool:
    return name in FEATURE_INDEX or name.startswith(("cos3_", "seg_", "rel_", "rels_"))
