"""Biomechanics from pose sequences: angles, angular and linear velocities, centre of mass, jumps.

Pure numpy, arrays in and arrays out; nothing here knows about Kafka, S3 or files
(services/suggest/biomech_report.py turns these into the result document's `biomechanics`
section, plots and CSV). Methods and formulas: docs/biomechanics.md.

Inputs, BlazePose order (shared.skeleton.LANDMARK_NAMES), time on axis 0:
    keypoints_px  [T, 33, 3]  x_px, y_px (image y points down), confidence; NaN where no pose
    world_m       [T, 33, 3]  BlazePose world landmarks: metres, origin between the hips, axes
                              aligned with the camera (x right, y down, z away from the camera)

Filtering: Savitzky-Golay (local quadratic least squares) over a window of ~0.2 s, applied
to each contiguous run of valid samples after short gaps (<= max_gap_s) are bridged linearly;
longer gaps stay NaN and split the signal, so nothing is smoothed across a missing stretch.
Derivatives come from the same local polynomial (the Savitzky-Golay derivative filter).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.skeleton import ANGLE_NAMES, ANGLE_VECTORS, LANDMARK_INDEX as LI

G = 9.81  # m/s^2

_ANGLE_QUADS = ANGLE_VECTORS   # names and conventions: shared.skeleton.ANGLE_NAMES

# Joints whose linear velocity is reported.
SPEED_JOINTS: tuple[str, ...] = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# Bones whose 3D length should not change over time (plausibility of the 3D output).
RIGID_BONES: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("right_hip", "right_knee"),
    ("left_knee", "left_ankle"), ("right_knee", "right_ankle"),
)

# Segment-mass model: Winter, "Biomechanics and Motor Control of Human Movement" (4th ed., 2009),
# Table 4.1 (Dempster's cadaver data). (name, proximal point, distal point, mass fraction of body
# mass, COM position from the proximal end as a fraction of the segment length). Points are
# landmark names or "mid:a+b" midpoints. Fractions sum to 1.000.
#   hand: wrist -> knuckles (mid of BlazePose index/pinky, both at the first knuckle)
#   foot: heel -> toe tip (Winter: ankle -> 2nd metatarsal head; 0.5 of the heel-toe line is
#         the same point to within a centimetre)
#   head and neck: COM at the ear canal (Winter: 1.000 from C7-T1 towards the ear canal)
#   trunk: shoulder (glenohumeral) -> hip (greater trochanter), 0.50
SEGMENTS: tuple[tuple[str, str, str, float, float], ...] = (
    ("head_neck", "mid:left_shoulder+right_shoulder", "mid:left_ear+right_ear", 0.081, 1.000),
    ("trunk", "mid:left_shoulder+right_shoulder", "mid:left_hip+right_hip", 0.497, 0.500),
    ("upper_arm_l", "left_shoulder", "left_elbow", 0.028, 0.436),
    ("upper_arm_r", "right_shoulder", "right_elbow", 0.028, 0.436),
    ("forearm_l", "left_elbow", "left_wrist", 0.016, 0.430),
    ("forearm_r", "right_elbow", "right_wrist", 0.016, 0.430),
    ("hand_l", "left_wrist", "mid:left_index+left_pinky", 0.006, 0.506),
    ("hand_r", "right_wrist", "mid:right_index+right_pinky", 0.006, 0.506),
    ("thigh_l", "left_hip", "left_knee", 0.100, 0.433),
    ("thigh_r", "right_hip", "right_knee", 0.100, 0.433),
    ("shank_l", "left_knee", "left_ankle", 0.0465, 0.433),
    ("shank_r", "right_knee", "right_ankle", 0.0465, 0.433),
    ("foot_l", "left_heel", "left_foot_index", 0.0145, 0.500),
    ("foot_r", "right_heel", "right_foot_index", 0.0145, 0.500),
)
COM_MODEL = ("14-segment model, Winter (2009) Table 4.1 / Dempster segment mass fractions and "
             "COM locations on BlazePose landmarks")

# Stature from the 3D skeleton: the chain ankle -> knee -> hip -> shoulder -> nose spans
# 0.246 + 0.245 + 0.288 + ~0.092 = 0.871 of standing height (Winter 2009, Fig. 4.1, Drillis &
# Contini segment lengths; nose ~0.91 H, shoulder 0.818 H, hip 0.530 H, knee 0.285 H, ankle 0.039 H).
STATURE_CHAIN_FRACTION = 0.871


# ---------------------------------------------------------------- filtering

def savgol_weights(window: int, order: int, deriv: int = 0, pos: int | None = None) -> np.ndarray:
    """Weights w such that sum(w * x[window]) is the `deriv`-th derivative (per sample) at sample
    `pos` of the window (default: its centre) of the least-squares polynomial of degree `order`."""
    if window < order + 1:
        raise ValueError(f"window {window} too short for order {order}")
    half = (window - 1) / 2.0
    pos = half if pos is None else pos
    s = np.arange(window, dtype=np.float64) - half            # sample offsets from the centre
    A = np.vander(s, order + 1, increasing=True)               # [W, order+1]
    p = pos - half
    # d^deriv/ds^deriv of [1, s, s^2, ...] at s = p
    v = np.zeros(order + 1)
    for k in range(deriv, order + 1):
        v[k] = np.prod(np.arange(k - deriv + 1, k + 1, dtype=np.float64)) * p ** (k - deriv)
    return v @ np.linalg.pinv(A)                                # [W]


def _savgol_run(x: np.ndarray, window: int, order: int, deriv: int) -> np.ndarray:
    """Savitzky-Golay on one gap-free run [N, ...] along axis 0; edges evaluate the polynomial of the
    first / last full window (scipy's mode='interp'). Short runs use the longest odd window that fits."""
    n = x.shape[0]
    w = min(window, n if n % 2 else n - 1)
    o = min(order, w - 1)
    if w < 3 or o < 1:
        if deriv == 0:
            return x.copy()
        if n >= 2:
            return np.gradient(x, axis=0)
        return np.full_like(x, np.nan)
    flat = x.reshape(n, -1)
    out = np.empty_like(flat)
    half = w // 2
    centre = savgol_weights(w, o, deriv)
    if n > 2 * half:
        win = np.lib.stride_tricks.sliding_window_view(flat, w, axis=0)   # [n-w+1, C, w]
        out[half:n - half] = win @ centre
    for i in range(half):
        out[i] = savgol_weights(w, o, deriv, pos=i) @ flat[:w]
        out[n - 1 - i] = savgol_weights(w, o, deriv, pos=w - 1 - i) @ flat[n - w:]
    return out.reshape(x.shape)


def fill_gaps(x: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly bridge interior NaN gaps of at most max_gap samples, per channel (axis 0 = time).
    Leading/trailing NaNs and longer gaps are left NaN."""
    x = np.array(x, dtype=np.float64, copy=True)
    if x.size == 0:
        return x
    flat = x.reshape(x.shape[0], -1)
    t = np.arange(flat.shape[0])
    for c in range(flat.shape[1]):
        col = flat[:, c]
        ok = np.isfinite(col)
        if ok.sum() < 2 or ok.all():
            continue
        idx = np.flatnonzero(ok)
        gaps = np.flatnonzero(np.diff(idx) > 1)
        for g in gaps:
            a, b = idx[g], idx[g + 1]
            if b - a - 1 <= max_gap:
                col[a + 1:b] = np.interp(t[a + 1:b], [a, b], [col[a], col[b]])
    return flat.reshape(x.shape)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D boolean array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def filter_window(fps: float, window_s: float = 0.2, minimum: int = 5) -> int:
    """Odd number of frames closest to window_s, at least `minimum`."""
    return max(minimum, int(round(fps * window_s)) | 1)


def smooth(x: np.ndarray, fps: float, deriv: int = 0, window_s: float = 0.2, order: int = 2,
           max_gap_s: float = 0.2, breaks: np.ndarray | None = None) -> np.ndarray:
    """Savitzky-Golay smoothing (deriv=0) or derivative per second (deriv=1, 2) along axis 0.

    Gaps of at most max_gap_s are bridged linearly first; a sample is valid only when all its
    channels (trailing axes) are finite, and each run of valid samples is filtered on its own.
    breaks [T] bool: a new run starts at every True (e.g. the tracker switched people there), and
    no gap is bridged across one."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        return x.copy()
    cut = np.zeros(x.shape[0], dtype=bool) if breaks is None else np.asarray(breaks, dtype=bool)
    filled = np.full_like(x, np.nan)
    bounds = [0, *np.flatnonzero(cut[1:]) + 1, x.shape[0]]
    for a, b in zip(bounds[:-1], bounds[1:]):
        filled[a:b] = fill_gaps(x[a:b], int(round(max_gap_s * fps)))
    valid = np.isfinite(filled.reshape(filled.shape[0], -1)).all(axis=1)
    out = np.full_like(filled, np.nan)
    window = filter_window(fps, window_s)
    for a0, b0 in runs(valid):
        inner = [a0, *[i for i in np.flatnonzero(cut[a0 + 1:b0]) + a0 + 1], b0]
        for a, b in zip(inner[:-1], inner[1:]):
            out[a:b] = _savgol_run(filled[a:b], window, order, deriv) * (fps ** deriv)
    return out


def identity_breaks(points: np.ndarray, fps: float, max_speed: np.ndarray | float) -> np.ndarray:
    """[T] bool, True where a point [T, D] moved faster than max_speed (units/s, scalar or [T]) since
    the previous frame where it was known: not the same person any more (tracker switch) or a
    pose flip. Smoothing and differentiation must not run across such a frame."""
    p = np.asarray(points, dtype=np.float64)
    T = len(p)
    out = np.zeros(T, dtype=bool)
    if T < 2:
        return out
    lim = np.broadcast_to(np.asarray(max_speed, dtype=np.float64), (T,))
    idx = np.flatnonzero(np.isfinite(p.reshape(T, -1)).all(axis=1))
    if len(idx) < 2:
        return out
    step = np.linalg.norm(np.diff(p[idx], axis=0), axis=-1)
    dt = np.diff(idx) / fps
    with np.errstate(invalid="ignore"):
        jump = step / dt > lim[idx[1:]]
    out[idx[1:][jump]] = True
    return out


def smooth_channels(x: np.ndarray, fps: float, deriv: int = 0, **kw) -> np.ndarray:  # noqa: D401
    """smooth() per channel [T, C] (each column has its own gaps)."""
    x = np.asarray(x, dtype=np.float64)
    return np.stack([smooth(x[:, c], fps, deriv, **kw) for c in range(x.shape[1])], axis=1) if x.shape[1] else x.copy()


# ---------------------------------------------------------------- geometry

def _masked_points(points: np.ndarray, conf: np.ndarray | None, min_confidence: float) -> np.ndarray:
    p = np.array(points, dtype=np.float64, copy=True)
    if conf is not None:
        p[~(np.asarray(conf) >= min_confidence)] = np.nan   # NaN confidence counts as missing
    return p


def _mid(p: np.ndarray, a: str, b: str) -> np.ndarray:
    return 0.5 * (p[:, LI[a]] + p[:, LI[b]])


def _point(p: np.ndarray, spec: str) -> np.ndarray:
    if spec.startswith("mid:"):
        a, b = spec[4:].split("+")
        return _mid(p, a, b)
    return p[:, LI[spec]]


def vector_angle_deg(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """Angle in degrees between rows of [T, D] vectors; NaN where either is missing or zero-length."""
    n1, n2 = np.linalg.norm(v1, axis=-1), np.linalg.norm(v2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.clip(np.sum(v1 * v2, axis=-1) / (n1 * n2), -1.0, 1.0)
    c[~((n1 > 1e-9) & (n2 > 1e-9))] = np.nan
    return np.degrees(np.arccos(c))


def joint_angles(points: np.ndarray, conf: np.ndarray | None = None, min_confidence: float = 0.3) -> np.ndarray:
    """[T, 33, D] (D = 2 image px or 3 world m) -> angles [T, A] in degrees, ANGLE_NAMES order.

    Same definitions as shared.features.joint_angles_deg; "down" is +y (image down in 2D,
    the camera's down axis for world landmarks). In 3D the sign of body_line comes from which side
    of the shoulder-ankle line the hips lie along +y (below = sagging = negative), as in 2D.
    """
    p = _masked_points(points, conf, min_confidence)
    T, _, D = p.shape
    down = np.zeros(D)
    down[1] = 1.0
    out = np.full((T, len(ANGLE_NAMES)), np.nan)
    for i, name in enumerate(ANGLE_NAMES):
        if name in _ANGLE_QUADS:
            a, b, c, d = _ANGLE_QUADS[name]
            out[:, i] = vector_angle_deg(p[:, LI[b]] - p[:, LI[a]], p[:, LI[d]] - p[:, LI[c]])
        elif name == "trunk":
            trunk = _mid(p, "left_hip", "right_hip") - _mid(p, "left_shoulder", "right_shoulder")
            out[:, i] = vector_angle_deg(trunk, np.broadcast_to(down, trunk.shape))
        elif name == "body_line":
            s, h, a = _mid(p, "left_shoulder", "right_shoulder"), _mid(p, "left_hip", "right_hip"), _mid(p, "left_ankle", "right_ankle")
            bend = 180.0 - vector_angle_deg(s - h, a - h)          # 0 = straight line
            d = a - s
            with np.errstate(invalid="ignore", divide="ignore"):
                u = d / np.linalg.norm(d, axis=-1, keepdims=True)
                off = (h - s) - np.sum((h - s) * u, axis=-1, keepdims=True) * u   # hip's offset from the line
            if D == 2:   # same sign rule as features._body_line: normal pointing down
                n = np.stack([-u[:, 1], u[:, 0]], axis=-1)
                n *= np.where(n[:, 1] < 0, -1.0, 1.0)[:, None]
                below = np.sum(off * n, axis=-1)
            else:
                below = off[:, 1]
            out[:, i] = np.where(below > 0, -1.0, 1.0) * bend
    return out


def segment_com(points: np.ndarray, conf: np.ndarray | None = None, min_confidence: float = 0.0) -> np.ndarray:
    """Whole-body centre of mass [T, D] from landmarks [T, 33, D] with the SEGMENTS model.

    Every segment is needed; missing hand/foot end points fall back to the wrist/ankle (hands and
    feet are 4% of the mass), a missing ear midpoint to the nose. NaN where a segment is missing.
    min_confidence=0 by default: BlazePose predicts all 33 landmarks whenever it finds a pose, and
    an occluded limb's predicted position is a better guess of its mass than leaving it out."""
    p = _masked_points(points, conf, min_confidence)
    com = np.zeros(p.shape[::2], dtype=np.float64)      # [T, D]
    for name, prox, dist, mass, frac in SEGMENTS:
        a, b = _point(p, prox), _point(p, dist)
        if name.startswith("hand") or name.startswith("foot"):
            anchor = p[:, LI[("left_" if name.endswith("_l") else "right_") + ("wrist" if name.startswith("hand") else "ankle")]]
            seg_c = a + frac * (b - a)
            miss = ~np.isfinite(seg_c).all(axis=-1)
            seg_c[miss] = anchor[miss]
        elif name == "head_neck":
            seg_c = b.copy()
            miss = ~np.isfinite(seg_c).all(axis=-1)
            seg_c[miss] = p[miss, LI["nose"]]
        else:
            seg_c = a + frac * (b - a)
        com += mass * seg_c
    return com


def bone_lengths(points: np.ndarray, bones=RIGID_BONES) -> np.ndarray:
    """[T, 33, D] -> [T, B] Euclidean lengths; NaN where an end is missing."""
    p = np.asarray(points, dtype=np.float64)
    return np.stack([np.linalg.norm(p[:, LI[b]] - p[:, LI[a]], axis=-1) for a, b in bones], axis=1)


def bone_length_cv(points: np.ndarray, bones=RIGID_BONES) -> dict[str, float | None]:
    """Coefficient of variation (std / mean over frames) of each bone's length, "a-b" -> cv."""
    L = bone_lengths(points, bones)
    out: dict[str, float | None] = {}
    for i, (a, b) in enumerate(bones):
        v = L[:, i][np.isfinite(L[:, i])]
        out[f"{a}-{b}"] = float(np.std(v) / np.mean(v)) if len(v) >= 2 and np.mean(v) > 0 else None
    return out


# ---------------------------------------------------------------- scale

_SCALE_BONES = RIGID_BONES[2:]   # torso sides and limbs (the shoulder/hip widths foreshorten most)


def world_scale_px_per_m(keypoints_px: np.ndarray, world_m: np.ndarray, fps: float,
                         min_world_m: float = 0.12, window_s: float = 1.0) -> np.ndarray:
    """Image scale [T] in px per metre at the athlete, from BlazePose's metric world landmarks.

    Weak perspective: a bone's image length (px) over its world length projected on the camera's
    image plane (world x, y) is the scale; per frame the median over torso and limb bones that are
    not too foreshortened (projected >= min_world_m), then a running median over window_s."""
    px = np.asarray(keypoints_px, dtype=np.float64)[..., :2]
    wm = np.asarray(world_m, dtype=np.float64)[..., :2]
    l_px = bone_lengths(px, _SCALE_BONES)
    l_m = bone_lengths(wm, _SCALE_BONES)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(l_m >= min_world_m, l_px / l_m, np.nan)
    per_frame = np.full(len(px), np.nan)
    ok = np.isfinite(ratio).sum(axis=1) >= 2
    per_frame[ok] = np.nanmedian(ratio[ok], axis=1)
    return running_median(per_frame, max(1, int(round(window_s * fps))) // 2)


def running_median(x: np.ndarray, half: int) -> np.ndarray:
    """NaN-aware centred running median over 2*half+1 samples; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float64)
    if half <= 0 or len(x) == 0:
        return x.copy()
    pad = np.pad(x, half, constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1)
    out = np.full_like(x, np.nan)
    ok = np.isfinite(x)
    with np.errstate(all="ignore"):
        out[ok] = np.nanmedian(win[ok], axis=-1)
    return out


def stature_from_world(world_m: np.ndarray) -> float | None:
    """Standing height (m) implied by the 3D skeleton: median over frames of the ankle-knee-hip-
    shoulder-nose chain (mean of both legs) / STATURE_CHAIN_FRACTION."""
    w = np.asarray(world_m, dtype=np.float64)
    if w.size == 0:
        return None
    def seg(a, b):
        return np.linalg.norm(w[:, LI[b]] - w[:, LI[a]], axis=-1)
    legs = 0.5 * (seg("left_ankle", "left_knee") + seg("left_knee", "left_hip")
                  + seg("right_ankle", "right_knee") + seg("right_knee", "right_hip"))
    trunk = np.linalg.norm(_mid(w, "left_shoulder", "right_shoulder") - _mid(w, "left_hip", "right_hip"), axis=-1)
    head = np.linalg.norm(w[:, LI["nose"]] - _mid(w, "left_shoulder", "right_shoulder"), axis=-1)
    chain = legs + trunk + head
    chain = chain[np.isfinite(chain)]
    return float(np.median(chain) / STATURE_CHAIN_FRACTION) if len(chain) else None


# ---------------------------------------------------------------- jumps

@dataclass
class Jump:
    takeoff_frame: int          # last frame on the ground
    landing_frame: int          # first frame back on the ground
    takeoff_s: float            # sub-frame times (video time)
    landing_s: float
    flight_time_s: float        # ballistic flight time (corrected for the detection threshold when the scale is known)
    height_m: float | None      # g t^2 / 8
    com_rise_px: float | None   # COM apex above its take-off height, px
    com_rise_m: float | None


def _crossing(y: np.ndarray, i: int, level: float) -> float:
    """Sub-frame position where y crosses `level` between samples i and i+1 (linear)."""
    a, b = y[i], y[i + 1]
    if not (np.isfinite(a) and np.isfinite(b)) or a == b:
        return i + 0.5
    return i + float(np.clip((level - a) / (b - a), 0.0, 1.0))


def foot_clearance_px(keypoints_px: np.ndarray, fps: float, ground_window_s: float = 1.0,
                      ground_pct: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    """(clearance [T] px: how far the lowest foot point is above the ground, leg length px).

    Lowest foot point = largest image y of both heels, toes and ankles. The ground is estimated
    on each side of a frame: the ground_pct-th percentile of the lowest foot point over the
    ground_window_s before it, and over the ground_window_s after it; the higher of the two (the
    smaller image y) is used, so an athlete walking towards or away from the camera (ground line
    drifting in the image) is not taken for airborne, while during a flight of up to
    ~ground_window_s both sides still contain standing frames."""
    k = np.asarray(keypoints_px, dtype=np.float64)
    feet = [LI[n] for n in ("left_heel", "right_heel", "left_foot_index", "right_foot_index", "left_ankle", "right_ankle")]
    y = k[:, feet, 1]
    low = np.full(len(k), np.nan)
    ok = np.isfinite(y).any(axis=1)
    low[ok] = np.nanmax(y[ok], axis=1)
    low = fill_gaps(low, int(round(0.1 * fps)))
    n = max(2, int(round(ground_window_s * fps)))
    pad = np.pad(low, n, constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(pad, n + 1)      # win[i] = low[i-n .. i]
    T = len(low)
    before, after = win[:T], win[n:n + T]                           # [t-n, t] and [t, t+n]
    grounds = []
    for w in (before, after):
        g = np.full(T, np.nan)
        good = np.isfinite(w).sum(axis=1) > n // 2
        with np.errstate(all="ignore"):
            g[good] = np.nanpercentile(w[good], ground_pct, axis=1)
        grounds.append(g)
    with np.errstate(invalid="ignore"):
        ground = np.fmin(grounds[0], grounds[1])
    leg = np.concatenate([np.linalg.norm(k[:, LI[f"{s}_hip"], :2] - k[:, LI[f"{s}_ankle"], :2], axis=-1)
                          for s in ("left", "right")])
    leg = leg[np.isfinite(leg)]
    return ground - low, float(np.median(leg)) if len(leg) else float("nan")


def detect_jumps(keypoints_px: np.ndarray, fps: float, px_per_m: np.ndarray | float | None = None,
                 com_px: np.ndarray | None = None, threshold_leg: float = 0.06, min_peak_leg: float = 0.15,
                 min_flight_s: float = 0.08, max_flight_s: float = 1.2,
                 breaks: np.ndarray | None = None) -> tuple[list[Jump], np.ndarray]:
    """Flight phases (both feet off the ground) and their heights; returns (jumps, airborne [T] bool).

    Airborne = the lowest foot point is more than threshold_leg x leg length above the ground
    (foot_clearance_px), for min_flight_s to max_flight_s, reaching min_peak_leg x leg length
    (defaults: 6 % and 15 % of the leg, i.e. ~5 and ~13 cm for an adult; 1.2 s of flight is a
    1.8 m jump, so anything longer is not a jump off flat ground in view). Take-off
    and landing times are the sub-frame crossings of that threshold delta. Between them a
    ballistic body spends T_d = sqrt(T^2 - 8 delta / g) above delta, so with the scale known the
    flight time is T = sqrt(T_d^2 + 8 delta / g) (delta in metres); otherwise T = T_d (an
    underestimate). Take-off and landing are reported at apex -/+ T/2 (the apex is midway between
    the crossings). Jump height h = g T^2 / 8 (rise of the COM from take-off to apex); com_rise is
    the same rise measured on the COM track (from its height at take-off), a cross-check.
    Flights with an identity break inside (breaks, see identity_breaks) are not jumps.

    Plausibility (pose noise on small athletes and tracker switches also lift a foot point): the
    COM must move ballistically. With com_px (raw, unfiltered) and the scale known, a parabola fitted
    to the COM's image y over the airborne frames must accelerate downwards at 0.5-2 g; without the
    scale, the COM must rise by at least 30 % of the feet's peak clearance."""
    clear, leg = foot_clearance_px(keypoints_px, fps)
    T = len(clear)
    airborne = np.zeros(T, dtype=bool)
    if not np.isfinite(leg) or leg <= 0:
        return [], airborne
    thr = threshold_leg * leg
    above = np.nan_to_num(clear, nan=-np.inf) > thr
    scale = None if px_per_m is None else np.broadcast_to(np.asarray(px_per_m, dtype=np.float64), (T,))
    jumps: list[Jump] = []
    for a, b in runs(above):
        if a == 0 or b >= T:      # must see the athlete on the ground before and after
            continue
        if np.nanmax(clear[a:b]) < min_peak_leg * leg:
            continue
        t_off = _crossing(clear, a - 1, thr) / fps
        t_land = _crossing(clear, b - 1, thr) / fps
        t_d = t_land - t_off
        if not min_flight_s <= t_d <= max_flight_s or b - a < 3:   # 3 airborne frames: enough to fit a parabola
            continue
        if breaks is not None and np.any(breaks[a - 1:b + 1]):    # identity break (another person) inside
            continue
        s = None
        if scale is not None:
            sv = scale[a - 1:b + 1]
            sv = sv[np.isfinite(sv)]
            s = float(np.median(sv)) if len(sv) else None
        flight = float(np.sqrt(t_d ** 2 + 8.0 * (thr / s) / G)) if s else float(t_d)
        mid = 0.5 * (t_off + t_land)                      # apex: the threshold crossings are symmetric about it
        t_off, t_land = mid - flight / 2, mid + flight / 2
        f_off, f_land = t_off * fps, t_land * fps
        i_off = int(np.clip(np.floor(f_off), 0, a - 1))   # last frame on the ground
        i_land = int(np.clip(np.ceil(f_land), b, T - 1))  # first frame back on it
        rise_px = None
        if com_px is not None:
            cy = np.asarray(com_px, dtype=np.float64)[:, 1]
            seg = cy[i_off:i_land + 1]
            y_off = np.interp(f_off, np.arange(T), cy) if np.isfinite(cy[i_off:i_off + 2]).all() else cy[i_off]
            if np.isfinite(y_off) and np.isfinite(seg).any():
                rise_px = float(y_off - np.nanmin(seg))     # image y points down
            if not _ballistic(cy, a, b, fps, s, rise_px, float(np.nanmax(clear[a:b]))):
                continue
        airborne[a:b] = True
        jumps.append(Jump(takeoff_frame=i_off, landing_frame=i_land, takeoff_s=round(t_off, 4), landing_s=round(t_land, 4),
                          flight_time_s=round(flight, 4), height_m=round(G * flight ** 2 / 8.0, 4),
                          com_rise_px=None if rise_px is None else round(rise_px, 2),
                          com_rise_m=None if rise_px is None or not s else round(rise_px / s, 4)))
    return jumps, airborne


def _ballistic(com_y: np.ndarray, a: int, b: int, fps: float, px_per_m: float | None,
               rise_px: float | None, peak_clearance_px: float) -> bool:
    """Does the COM (image y, px) over airborne frames [a, b) look like free flight? (detect_jumps)"""
    if rise_px is None:
        return False
    if px_per_m:
        lo, hi = a, b
        t = np.arange(lo, hi) / fps
        y = com_y[lo:hi]
        ok = np.isfinite(y)
        if ok.sum() >= 3:
            accel = 2.0 * np.polyfit(t[ok], y[ok], 2)[0]        # px/s^2, + = downwards
            return 0.5 <= accel / (G * px_per_m) <= 2.0
    return rise_px >= 0.3 * peak_clearance_px


# ---------------------------------------------------------------- everything at once

@dataclass
class Biomech:
    fps: float
    angles_2d: np.ndarray           # [T, A] raw, degrees
    angles_3d: np.ndarray           # [T, A] raw, degrees
    angles_3d_f: np.ndarray         # [T, A] filtered
    angular_velocity: np.ndarray    # [T, A] deg/s (of the 3D angles)
    com_px: np.ndarray              # [T, 2] filtered
    com_velocity_px_s: np.ndarray   # [T, 2]
    joint_velocity_px_s: np.ndarray # [T, J, 2] for SPEED_JOINTS
    px_per_m: np.ndarray            # [T]
    scale_source: str               # "athlete_height" | "world_landmarks" | "none"
    stature_m: float | None         # from the 3D skeleton (before any athlete_height correction)
    jumps: list[Jump]
    airborne: np.ndarray            # [T] bool
    bone_cv: dict[str, float | None] = field(default_factory=dict)
    breaks: np.ndarray | None = None  # [T] bool: identity breaks (series restart there)

    @property
    def com_speed_px_s(self) -> np.ndarray:
        return np.linalg.norm(self.com_velocity_px_s, axis=-1)

    @property
    def joint_speed_px_s(self) -> np.ndarray:
        return np.linalg.norm(self.joint_velocity_px_s, axis=-1)

    def to_m_s(self, px_s: np.ndarray) -> np.ndarray:
        s = self.px_per_m.reshape((-1,) + (1,) * (np.ndim(px_s) - 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return px_s / s


def analyse(keypoints_px: np.ndarray, world_m: np.ndarray, fps: float, athlete_height_m: float | None = None,
            px_per_m: float | None = None, min_confidence: float = 0.3, max_speed_m_s: float = 12.0) -> Biomech:
    """Everything the result document reports, from [T,33,3] image keypoints and world landmarks.

    Scale (px per metre) in order of preference: px_per_m given; athlete_height_m given (the
    world-landmark scale corrected by stature_from_world / athlete_height_m, since BlazePose's
    metric skeleton assumes an average body size); the world landmarks alone."""
    k = np.asarray(keypoints_px, dtype=np.float64)
    w = np.asarray(world_m, dtype=np.float64)
    T = len(k)
    conf = k[..., 2]
    stature = stature_from_world(w) if T else None
    if px_per_m is not None:
        scale, source = np.full(T, float(px_per_m)), "given"
    else:
        scale = world_scale_px_per_m(k, w, fps) if T else np.zeros(0)
        source = "world_landmarks" if np.isfinite(scale).any() else "none"
        if athlete_height_m and stature and source != "none":
            scale = scale * (stature / athlete_height_m)
            source = "athlete_height"
    # fill the scale over gaps (it changes slowly): nearest known value
    if np.isfinite(scale).any() and not np.isfinite(scale).all():
        ok = np.flatnonzero(np.isfinite(scale))
        scale = np.interp(np.arange(T), ok, scale[ok])

    # Identity breaks: the hip centre moving faster than max_speed_m_s (or 13 leg lengths/s
    # without a scale) between known frames means another person / a flipped pose.
    com_raw = segment_com(k[..., :2])
    hips = 0.5 * (k[:, LI["left_hip"], :2] + k[:, LI["right_hip"], :2])
    if source != "none":
        limit = max_speed_m_s * scale
    else:
        leg = np.linalg.norm(k[:, LI["left_hip"], :2] - k[:, LI["left_ankle"], :2], axis=-1)
        limit = 13.0 * (np.nanmedian(leg) if np.isfinite(leg).any() else np.inf)
    breaks = identity_breaks(hips, fps, limit)

    angles_2d = joint_angles(k[..., :2], conf, min_confidence)
    angles_3d = joint_angles(w, conf, min_confidence)
    angles_3d_f = smooth_channels(angles_3d, fps, breaks=breaks)
    flex = [i for i, n in enumerate(ANGLE_NAMES) if n != "body_line"]      # unsigned: keep the filter's overshoot in range
    angles_3d_f[:, flex] = np.clip(angles_3d_f[:, flex], 0.0, 180.0)
    angular_velocity = smooth_channels(angles_3d, fps, deriv=1, breaks=breaks)
    com_px = smooth(com_raw, fps, breaks=breaks)
    com_v = smooth(com_raw, fps, deriv=1, breaks=breaks)
    jidx = [LI[n] for n in SPEED_JOINTS]
    joint_v = (np.stack([smooth(k[:, j, :2], fps, deriv=1, breaks=breaks) for j in jidx], axis=1) if T
               else np.zeros((0, len(jidx), 2)))
    jumps, airborne = detect_jumps(k, fps, scale if source != "none" else None,
                                   fill_gaps(com_raw, int(round(0.1 * fps))), breaks=breaks)
    return Biomech(fps=fps, angles_2d=angles_2d, angles_3d=angles_3d, angles_3d_f=angles_3d_f,
                   angular_velocity=angular_velocity, com_px=com_px, com_velocity_px_s=com_v,
                   joint_velocity_px_s=joint_v, px_per_m=scale, scale_source=source, stature_m=stature,
                   jumps=jumps, airborne=airborne, bone_cv=bone_length_cv(w),
                   breaks=breaks)
