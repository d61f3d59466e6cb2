"""Synthetic pose sequences from joint-angle kinematics, for bootstrapping fault classifiers.

No expert-labelled footage exists for this project, so we generate it: a 3D stick figure with
Winter's segment proportions (Winter, Biomechanics and Motor Control of Human Movement, 2009,
Fig. 4.1; +-4% per segment per athlete) is driven by joint-angle trajectories for each sport,
viewed by a camera with a random yaw, roll, distance and scale, projected with weak
perspective to pixels in BlazePose's 33-landmark layout, and corrupted like a real detector:
Gaussian keypoint noise, lower confidence on the far side of the body, occasional dropped
joints (confidence < 0.25, wild position) and occasional frames with no pose (NaN rows).

Labels are not drawn at random: they come from explicit biomechanical criteria evaluated on the
clean 3D joints (FAULT_CRITERIA, shared/sports.py), so a classifier trained on the 2D observations has to
recover the criterion through projection, noise and view changes, which is what it must do on
real video too.

World frame: metres, y up, the athlete's pelvis faces +z and +x is the athlete's left.
Camera yaw 0 looks at the athlete's front, yaw +-90 is a side view.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.skeleton import LANDMARK_INDEX as LI
# The labelling criteria belong to each fault's definition (FAULT_CRITERIA in the sport catalogue);
# the labels below use exactly the thresholds their text names.
from shared.sports import (BENT_HIP_DEG, BENT_KNEE_DEG, BOTTOM_BAND, CROSSED_SKI_DEG, HIP_LINE_DEG, KNEE_CAVE_MIN_FLEX,
                           KNEE_CAVE_RATIO, PUSHUP_DEPTH_DEG, SQUAT_DEPTH_RATIO)

SPORTS: tuple[str, ...] = ("ski_aerials", "squat", "pushup", "plank")
FAULTS: dict[str, tuple[str, ...]] = {
    "ski_aerials": ("bent_hips", "crossed_skis", "bent_knees"),
    "squat": ("shallow_depth", "knees_caving"),
    "pushup": ("sagging_hips", "piked_hips", "shallow_depth"),
    "plank": ("sagging_hips", "piked_hips"),
}


# ---------------------------------------------------------------- geometry helpers

def _rot(axis: str, deg: np.ndarray | float) -> np.ndarray:
    """Rotation matrices [T,3,3] (or [3,3] for a scalar) about a world axis, angle in degrees."""
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "x":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m), (0, 1), (-2, -1))


def _apply(R: np.ndarray, v: np.ndarray | tuple) -> np.ndarray:
    """R [T,3,3] @ v ([3] or [T,3]) -> [T,3]."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 1:
        return R @ v
    return np.einsum("tij,tj->ti", R, v)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _angle(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """Angle in degrees between row vectors [T,3]."""
    c = np.sum(_unit(v1) * _unit(v2), axis=-1)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def _two_bone_ik(root: np.ndarray, target: np.ndarray, l1: float, l2: float,
                 pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Middle and end joints [T,3] of a two-bone chain reaching for target, bending toward pole."""
    dv = target - root
    d = np.clip(np.linalg.norm(dv, axis=-1), 1e-6, 0.9999 * (l1 + l2))
    u = _unit(dv)
    a = (l1**2 - l2**2 + d**2) / (2 * d)
    r = np.sqrt(np.maximum(l1**2 - a**2, 0.0))
    pole = np.broadcast_to(pole, u.shape)
    w = _unit(pole - np.sum(pole * u, axis=-1, keepdims=True) * u)
    mid = root + a[:, None] * u + r[:, None] * w
    end = mid + l2 * _unit(target - mid)
    return mid, end


# ---------------------------------------------------------------- time profiles

def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _window(T: int, rng: np.random.Generator, min_frac: float = 0.2, max_frac: float = 0.7) -> np.ndarray:
    """A random trapezoid envelope [T] in 0..1: the fault eases in, holds, eases out."""
    length = rng.uniform(min_frac, max_frac) * T
    start = rng.uniform(0.0, max(T - length, 1.0))
    ramp = max(0.15 * length, 2.0)
    t = np.arange(T, dtype=np.float64)
    return _smoothstep((t - start) / ramp) * _smoothstep((start + length - t) / ramp)


def _wobble(rng: np.random.Generator, T: int, fps: float, amp: float) -> np.ndarray:
    """Smooth small random motion [T] (two sinusoids, 0.3-1.5 Hz)."""
    t = np.arange(T) / fps
    out = np.zeros(T)
    for _ in range(2):
        out += amp / 2 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 2 * np.pi))
    return out


def _reps(rng: np.random.Generator, fps: float, n_reps: int, rep_s: tuple[float, float],
          top_s: tuple[float, float], bottom_s: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Repetition profile: depth [T] in 0..1 (0 = top, 1 = bottom) and rep index [T] (-1 while resting at the top)."""
    depth = [np.zeros(int(rng.uniform(*top_s) * fps))]
    rep = [np.full(len(depth[0]), -1)]
    for i in range(n_reps):
        move = rng.uniform(*rep_s) * fps / 2  # frames down (= frames up)
        n_down, n_hold = max(int(move * rng.uniform(0.8, 1.2)), 4), int(rng.uniform(*bottom_s) * fps)
        n_up = max(int(move * rng.uniform(0.8, 1.2)), 4)
        down = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_down) / n_down)
        up = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, n_up + 1) / n_up)
        seg = np.concatenate([down, np.ones(n_hold), up])
        depth.append(seg)
        rep.append(np.full(len(seg), i))
        top = np.zeros(int(rng.uniform(*top_s) * fps))
        depth.append(top)
        rep.append(np.full(len(top), -1))
    return np.concatenate(depth), np.concatenate(rep)


# ---------------------------------------------------------------- the body

@dataclass(frozen=True)
class Body:
    """Segment lengths in metres (Winter's proportions of stature, jittered per athlete)."""
    height: float
    torso: float
    shoulder_w: float
    hip_w: float
    thigh: float
    shank: float
    upper_arm: float
    forearm: float

    @classmethod
    def sample(cls, rng: np.random.Generator, jitter: float = 0.04) -> "Body":
        H = rng.uniform(1.55, 1.95)
        j = lambda: rng.normal(1.0, jitter) if jitter > 0 else 1.0  # noqa: E731
        return cls(H, 0.288 * H * j(), 0.22 * H * j(), 0.12 * H * j(), 0.245 * H * j(),
                   0.246 * H * j(), 0.186 * H * j(), 0.146 * H * j())

    @property
    def ankle_h(self) -> float:
        return 0.039 * self.height


def _leg_fk(hip: np.ndarray, R_pelvis: np.ndarray, side: float, flex: np.ndarray, abd: np.ndarray,
            knee: np.ndarray, body: Body) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hip angles relative to the pelvis -> knee [T,3], ankle [T,3], shank frame [T,3,3].

    side = +1 left, -1 right. Abduction first, then flexion, so abduction stays lateral at any flexion."""
    R_thigh = R_pelvis @ _rot("x", -flex) @ _rot("z", side * abd)
    k = hip + _apply(R_thigh, (0.0, -body.thigh, 0.0))
    R_shank = R_thigh @ _rot("x", knee)
    a = k + _apply(R_shank, (0.0, -body.shank, 0.0))
    return k, a, R_shank


def _arm_fk(shoulder: np.ndarray, R_trunk: np.ndarray, side: float, flex: np.ndarray, abd: np.ndarray,
            elbow: np.ndarray, body: Body) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shoulder/elbow angles relative to the trunk -> elbow [T,3], wrist [T,3], forearm frame [T,3,3]."""
    R_upper = R_trunk @ _rot("x", -flex) @ _rot("z", side * abd)
    e = shoulder + _apply(R_upper, (0.0, -body.upper_arm, 0.0))
    R_fore = R_upper @ _rot("x", -elbow)
    w = e + _apply(R_fore, (0.0, -body.forearm, 0.0))
    return e, w, R_fore


def _assemble(body: Body, pelvis: np.ndarray, R_pelvis: np.ndarray, R_trunk: np.ndarray,
              knees: tuple[np.ndarray, np.ndarray], ankles: tuple[np.ndarray, np.ndarray],
              R_feet: tuple[np.ndarray, np.ndarray], elbows: tuple[np.ndarray, np.ndarray],
              wrists: tuple[np.ndarray, np.ndarray], hand_dirs: tuple[np.ndarray, np.ndarray],
              thumb_dirs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Place all 33 BlazePose landmarks [T,33,3] from the limb joints; tuples are (left, right)."""
    H = body.height
    T = pelvis.shape[0]
    P = np.zeros((T, 33, 3))
    for i, (side, s) in enumerate((("left", 1.0), ("right", -1.0))):
        P[:, LI[f"{side}_hip"]] = pelvis + _apply(R_pelvis, (s * body.hip_w / 2, 0.0, 0.0))
        P[:, LI[f"{side}_shoulder"]] = pelvis + _apply(R_trunk, (s * body.shoulder_w / 2, body.torso, 0.0))
        P[:, LI[f"{side}_knee"]] = knees[i]
        P[:, LI[f"{side}_ankle"]] = ankles[i]
        P[:, LI[f"{side}_heel"]] = ankles[i] + _apply(R_feet[i], (0.0, -0.035 * H, -0.035 * H))
        P[:, LI[f"{side}_foot_index"]] = ankles[i] + _apply(R_feet[i], (0.0, -0.035 * H, 0.115 * H))
        P[:, LI[f"{side}_elbow"]] = elbows[i]
        P[:, LI[f"{side}_wrist"]] = wrists[i]
        d, t = _unit(hand_dirs[i]), _unit(thumb_dirs[i])
        P[:, LI[f"{side}_index"]] = wrists[i] + 0.085 * H * d + 0.012 * H * t
        P[:, LI[f"{side}_pinky"]] = wrists[i] + 0.075 * H * d - 0.02 * H * t
        P[:, LI[f"{side}_thumb"]] = wrists[i] + 0.045 * H * d + 0.03 * H * t
    neck = pelvis + _apply(R_trunk, (0.0, body.torso, 0.0))
    head = {  # offsets from the neck in the trunk frame, proportions of stature
        "nose": (0.0, 0.085, 0.055),
        "left_eye_inner": (0.012, 0.1, 0.045), "left_eye": (0.02, 0.1, 0.043), "left_eye_outer": (0.028, 0.1, 0.038),
        "right_eye_inner": (-0.012, 0.1, 0.045), "right_eye": (-0.02, 0.1, 0.043), "right_eye_outer": (-0.028, 0.1, 0.038),
        "left_ear": (0.04, 0.095, 0.0), "right_ear": (-0.04, 0.095, 0.0),
        "mouth_left": (0.015, 0.07, 0.045), "mouth_right": (-0.015, 0.07, 0.045),
    }
    for name, off in head.items():
        P[:, LI[name]] = neck + _apply(R_trunk, np.array(off) * H)
    return P


def _feet_from_shank(R_shank: np.ndarray, side: float, yaw: np.ndarray, plantar: np.ndarray) -> np.ndarray:
    """Foot frame: neutral foot is perpendicular to the shank; yaw > 0 = toe out, plantar > 0 = toes down."""
    return R_shank @ _rot("y", side * yaw) @ _rot("x", plantar)


# ---------------------------------------------------------------- 3D measures used by the labels

def _mid(P: np.ndarray, a: str, b: str) -> np.ndarray:
    return 0.5 * (P[:, LI[a]] + P[:, LI[b]])


def knee_flexion_3d(P: np.ndarray) -> np.ndarray:
    """[T,2] left/right knee flexion in degrees (0 = straight)."""
    return np.stack([_angle(P[:, LI[f"{s}_knee"]] - P[:, LI[f"{s}_hip"]], P[:, LI[f"{s}_ankle"]] - P[:, LI[f"{s}_knee"]])
                     for s in ("left", "right")], axis=-1)


def hip_flexion_3d(P: np.ndarray) -> np.ndarray:
    """[T,2] angle between trunk (shoulder -> hip) and thigh (hip -> knee), degrees."""
    return np.stack([_angle(P[:, LI[f"{s}_hip"]] - P[:, LI[f"{s}_shoulder"]], P[:, LI[f"{s}_knee"]] - P[:, LI[f"{s}_hip"]])
                     for s in ("left", "right")], axis=-1)


def elbow_flexion_3d(P: np.ndarray) -> np.ndarray:
    return np.stack([_angle(P[:, LI[f"{s}_elbow"]] - P[:, LI[f"{s}_shoulder"]], P[:, LI[f"{s}_wrist"]] - P[:, LI[f"{s}_elbow"]])
                     for s in ("left", "right")], axis=-1)


def ski_angle_3d(P: np.ndarray) -> np.ndarray:
    return _angle(P[:, LI["left_foot_index"]] - P[:, LI["left_heel"]], P[:, LI["right_foot_index"]] - P[:, LI["right_heel"]])


def body_line_3d(P: np.ndarray) -> np.ndarray:
    """Signed bend at the hips off the shoulder-ankle line, degrees: + = hips above it (piked), - = below (sagging)."""
    s, h, a = _mid(P, "left_shoulder", "right_shoulder"), _mid(P, "left_hip", "right_hip"), _mid(P, "left_ankle", "right_ankle")
    bend = 180.0 - _angle(s - h, a - h)
    u = _unit(a - s)
    foot_of_perp = s + np.sum((h - s) * u, axis=-1, keepdims=True) * u
    return np.where(h[:, 1] >= foot_of_perp[:, 1], bend, -bend)


def _bottom_band(height: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """[T] bool: frames in the lowest BOTTOM_BAND of each repetition's height range."""
    out = np.zeros(len(height), dtype=bool)
    top = np.max(height)
    for r in np.unique(rep[rep >= 0]):
        m = rep == r
        lo = np.min(height[m])
        out |= m & (height <= lo + BOTTOM_BAND * (top - lo))
    return out


# ---------------------------------------------------------------- sports

@dataclass
class Motion:
    world: np.ndarray  # [T,33,3] metres, y up
    labels: dict[str, np.ndarray]  # fault id -> [T] bool
    fps: float
    meta: dict = field(default_factory=dict)


def _amp(faults: dict[str, float] | None, fid: str, rng: np.random.Generator, p: float,
         fault_range: tuple[float, float], ok_range: tuple[float, float]) -> float:
    """Fault amplitude: forced by `faults`, or drawn (present with probability p, else a correct-form value)."""
    if faults is not None:
        return float(faults[fid]) if fid in faults else rng.uniform(*ok_range)
    return rng.uniform(*fault_range) if rng.random() < p else rng.uniform(*ok_range)


def _ski_aerials(rng: np.random.Generator, body: Body, fps: float, faults: dict[str, float] | None,
                 duration_s: float | None, variant: str | None = None) -> Motion:
    T = int(round(fps * (duration_s or rng.uniform(1.6, 2.8))))
    t = np.linspace(0.0, 1.0, T)
    flips = rng.choice([0, 1, 2, 3], p=[0.2, 0.4, 0.3, 0.1]) if faults is None else 1
    pitch = -(rng.uniform(-15, 25) + (360.0 * flips + rng.uniform(-20, 20)) * _smoothstep(t * 1.1 - 0.05))
    twists = rng.choice([1, 2]) if (faults is None and rng.random() < 0.35) else 0
    twist = 360.0 * twists * _smoothstep(t * 1.2 - 0.1)
    R_pelvis = _rot("x", pitch) @ _rot("y", twist)  # [T,3,3] somersault (backward) with twist
    pelvis = np.stack([np.zeros(T), 4 * rng.uniform(2, 6) * t * (1 - t), rng.uniform(6, 14) * t], axis=-1)

    w = lambda a: _wobble(rng, T, fps, a)  # noqa: E731
    # correct "layout": straight body, legs together, skis parallel, arms out
    knee_l = knee_r = rng.uniform(0, 10) + w(3)
    hip_flex = rng.uniform(-5, 8) + w(3)
    lean = rng.uniform(-8, 4) + w(2)
    abd = rng.uniform(0, 4) + w(1)
    yaw_l, yaw_r = rng.uniform(-3, 3) + w(1), rng.uniform(-3, 3) + w(1)
    plantar = rng.uniform(0, 20)
    pl_l, pl_r = plantar + rng.uniform(-3, 3) + w(1), plantar + rng.uniform(-3, 3) + w(1)

    a = _amp(faults, "bent_knees", rng, 0.45, (10, 100), (0, 5))
    env = _window(T, rng)
    knee_l = knee_l + a * env * rng.uniform(0.85, 1.15)
    knee_r = knee_r + a * env * rng.uniform(0.85, 1.15)
    a = _amp(faults, "bent_hips", rng, 0.45, (10, 110), (0, 5))
    env = _window(T, rng)
    hip_flex = hip_flex + 0.75 * a * env
    lean = lean + 0.25 * a * env
    a = _amp(faults, "crossed_skis", rng, 0.45, (5, 60), (0, 4))
    env, psi = _window(T, rng), rng.uniform(0, np.pi / 2)  # psi splits the crossing into yaw (X seen from front) and pitch (X from the side)
    yaw_l, yaw_r = yaw_l - a / 2 * np.cos(psi) * env, yaw_r - a / 2 * np.cos(psi) * env
    pl_l, pl_r = pl_l + a / 2 * np.sin(psi) * env, pl_r - a / 2 * np.sin(psi) * env

    R_trunk = R_pelvis @ _rot("x", lean)
    hips = [pelvis + _apply(R_pelvis, (s * body.hip_w / 2, 0, 0)) for s in (1.0, -1.0)]
    kl, al, Rsl = _leg_fk(hips[0], R_pelvis, 1.0, hip_flex, abd, np.maximum(knee_l, 0), body)
    kr, ar, Rsr = _leg_fk(hips[1], R_pelvis, -1.0, hip_flex, abd, np.maximum(knee_r, 0), body)
    arm_abd, arm_flex, elbow = rng.uniform(50, 110), rng.uniform(-20, 50), rng.uniform(0, 40)
    shoulders = [pelvis + _apply(R_trunk, (s * body.shoulder_w / 2, body.torso, 0)) for s in (1.0, -1.0)]
    arms = [_arm_fk(shoulders[i], R_trunk, s, arm_flex + w(8), arm_abd + w(8), np.full(T, elbow), body)
            for i, s in enumerate((1.0, -1.0))]
    P = _assemble(body, pelvis, R_pelvis, R_trunk, (kl, kr), (al, ar),
                  (_feet_from_shank(Rsl, 1.0, yaw_l, pl_l), _feet_from_shank(Rsr, -1.0, yaw_r, pl_r)),
                  (arms[0][0], arms[1][0]), (arms[0][1], arms[1][1]),
                  (arms[0][1] - arms[0][0], arms[1][1] - arms[1][0]),
                  (_apply(arms[0][2], (0, 0, 1.0)), _apply(arms[1][2], (0, 0, 1.0))))
    labels = {
        "bent_hips": hip_flexion_3d(P).max(axis=-1) > BENT_HIP_DEG,
        "crossed_skis": ski_angle_3d(P) > CROSSED_SKI_DEG,
        "bent_knees": knee_flexion_3d(P).max(axis=-1) > BENT_KNEE_DEG,
    }
    return Motion(P, labels, fps, {"flips": int(flips), "twists": int(twists)})


def _squat(rng: np.random.Generator, body: Body, fps: float, faults: dict[str, float] | None,
           duration_s: float | None, variant: str | None = None) -> Motion:
    n_reps = int(rng.integers(1, 4)) if duration_s is None else max(1, int(duration_s / 2.6))
    depth, rep = _reps(rng, fps, n_reps, (1.5, 3.0), (0.2, 0.6), (0.0, 0.3))
    T = len(depth)
    # bottom thigh angle from vertical per rep (90 = parallel); correct form goes at least to ~parallel
    theta_rep = np.array([_amp(faults, "shallow_depth", rng, 0.45, (30, 80), (88, 112)) for _ in range(n_reps)])
    theta = depth * np.where(rep >= 0, theta_rep[np.maximum(rep, 0)], 0.0)
    shin = rng.uniform(0.3, 0.5) * theta  # forward shin lean
    lean = rng.uniform(0.3, 0.6) * theta + rng.uniform(-3, 5) + _wobble(rng, T, fps, 2)

    half_stance = rng.uniform(0.07, 0.15) * body.height  # ankle centres at +-half_stance
    toe_out = rng.uniform(5, 30, size=2)
    valgus = _amp(faults, "knees_caving", rng, 0.45, (10, 45), (0, 6)) * depth ** 1.5  # caves as the load rises
    # Knees first: correct form keeps each shank in the vertical plane of its foot (knees track
    # over the toes); caving turns that plane inward and tilts the shank medially by a quarter as much.
    knee_guess, ankles, feet = [], [], []
    for i, s in enumerate((1.0, -1.0)):
        ankle = np.broadcast_to([s * half_stance, body.ankle_h, 0.0], (T, 3))
        heading = np.radians(toe_out[i] - valgus)
        tilt = np.radians(valgus / 4)
        sl = np.radians(shin)
        d = np.stack([s * np.sin(heading) * np.sin(sl) - s * np.sin(tilt), np.cos(sl) * np.cos(tilt),
                      np.cos(heading) * np.sin(sl)], axis=-1)
        knee_guess.append(ankle + body.shank * _unit(d))
        ankles.append(ankle)
        feet.append(np.broadcast_to(_rot("y", s * toe_out[i]), (T, 3, 3)))
    # pelvis: hips a thigh length from the knees, thigh at `theta` from vertical, behind the knees
    kg = 0.5 * (knee_guess[0] + knee_guess[1])
    dx = half_stance - body.hip_w / 2
    dy = body.thigh * np.cos(np.radians(theta))
    dz = np.sqrt(np.maximum(body.thigh**2 - dy**2 - dx**2, 0.0))
    pelvis = np.stack([np.zeros(T), kg[:, 1] + dy, kg[:, 2] - dz], axis=-1)  # [T,3]
    R_pelvis = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()
    R_trunk = _rot("x", lean)
    knees = []
    for i, s in enumerate((1.0, -1.0)):  # exact limb lengths: IK toward the intended knee position
        hip = pelvis + np.array([s * body.hip_w / 2, 0, 0])
        pole = knee_guess[i] - 0.5 * (hip + ankles[i]) + np.array([0.0, 0.0, 1e-3])
        k, a = _two_bone_ik(hip, ankles[i], body.thigh, body.shank, pole)
        knees.append(k)
        ankles[i] = a
    shoulders = [pelvis + _apply(R_trunk, (s * body.shoulder_w / 2, body.torso, 0)) for s in (1.0, -1.0)]
    if rng.random() < 0.5:  # arms reaching forward
        flex, elb = rng.uniform(70, 100) * depth + rng.uniform(0, 20), np.full(T, rng.uniform(0, 20))
    else:  # hands at the chest
        flex, elb = np.full(T, rng.uniform(30, 60)), np.full(T, rng.uniform(100, 130))
    arms = [_arm_fk(shoulders[i], R_trunk, s, flex, np.full(T, rng.uniform(5, 20)), elb, body)
            for i, s in enumerate((1.0, -1.0))]
    P = _assemble(body, pelvis, R_pelvis, R_trunk, tuple(knees), tuple(ankles), tuple(feet),
                  (arms[0][0], arms[1][0]), (arms[0][1], arms[1][1]),
                  (arms[0][1] - arms[0][0], arms[1][1] - arms[1][0]),
                  (_apply(arms[0][2], (0, 0, 1.0)), _apply(arms[1][2], (0, 0, 1.0))))

    hip_y = _mid(P, "left_hip", "right_hip")[:, 1]
    knee_y = _mid(P, "left_knee", "right_knee")[:, 1]
    above = (hip_y - knee_y) / body.thigh  # [T] hip height above the knees, thigh lengths
    shallow_rep = np.array([np.min(above[rep == r]) > SQUAT_DEPTH_RATIO for r in range(n_reps)])
    bottom = _bottom_band(hip_y, rep)
    knee_sep = P[:, LI["left_knee"], 0] - P[:, LI["right_knee"], 0]
    ankle_sep = P[:, LI["left_ankle"], 0] - P[:, LI["right_ankle"], 0]
    labels = {
        "shallow_depth": bottom & (rep >= 0) & shallow_rep[np.maximum(rep, 0)],
        "knees_caving": (knee_flexion_3d(P).mean(axis=-1) > KNEE_CAVE_MIN_FLEX) & (knee_sep < KNEE_CAVE_RATIO * ankle_sep),
    }
    return Motion(P, labels, fps, {"reps": n_reps, "bottom_thigh_deg": theta_rep.round(1).tolist()})


def _prone(rng: np.random.Generator, body: Body, fps: float, bend: np.ndarray, elbow: np.ndarray | None) -> np.ndarray:
    """Push-up / plank body [T,33,3]: hips bent by `bend` (+ pike, - sag), toes on the floor.

    elbow [T] = elbow flexion with hands on the floor under the shoulders; None = forearm plank."""
    T = len(bend)
    H = body.height
    # build standing, with half the bend at the trunk and half at the hips, then lie it face down
    R_pelvis = np.broadcast_to(np.eye(3), (T, 3, 3)).copy()
    R_trunk = _rot("x", bend / 2)
    pelvis = np.zeros((T, 3))
    knee = rng.uniform(0, 6) + _wobble(rng, T, fps, 1)
    abd = np.full(T, rng.uniform(0, 4))
    hips = [np.broadcast_to([s * body.hip_w / 2, 0, 0], (T, 3)) for s in (1.0, -1.0)]
    legs = [_leg_fk(hips[i], R_pelvis, s, bend / 2, abd, np.maximum(knee, 0), body) for i, s in enumerate((1.0, -1.0))]
    feet = [_feet_from_shank(legs[i][2], s, np.full(T, rng.uniform(0, 10)), np.full(T, rng.uniform(-10, 10)))
            for i, s in enumerate((1.0, -1.0))]
    # placeholder arms (replaced after placement)
    P = _assemble(body, pelvis, R_pelvis, R_trunk, (legs[0][0], legs[1][0]), (legs[0][1], legs[1][1]),
                  tuple(feet), (hips[0], hips[1]), (hips[0], hips[1]),
                  (np.ones((T, 3)), np.ones((T, 3))), (np.ones((T, 3)), np.ones((T, 3))))
    P = np.einsum("ij,tkj->tki", _rot("x", 90.0), P)  # face down, head toward +z

    # support height of the shoulders: straight/bent arms on hands, or upper arms on the elbows
    wrist_h = 0.03 * H
    off_lat, off_fwd = rng.uniform(0.01, 0.05) * H, rng.uniform(-0.02, 0.05) * H
    if elbow is not None:
        arm = np.sqrt(body.upper_arm**2 + body.forearm**2 + 2 * body.upper_arm * body.forearm * np.cos(np.radians(elbow)))
        support = wrist_h + np.sqrt(np.maximum(arm**2 - off_lat**2 - off_fwd**2, 1e-6))
    else:
        support = np.full(T, wrist_h + body.upper_arm)
    # tilt about the toes so the shoulders sit at the support height, then put the toes on the floor
    toe = _mid(P, "left_foot_index", "right_foot_index")
    v = _mid(P, "left_shoulder", "right_shoulder") - toe
    L = np.hypot(v[:, 1], v[:, 2])
    beta = np.degrees(np.arctan2(v[:, 1], v[:, 2]))
    alpha = np.degrees(np.arcsin(np.clip(support / L, -1, 1)))
    P = np.einsum("tij,tkj->tki", _rot("x", -(alpha - beta)), P - toe[:, None])
    P[..., 1] -= np.min(P[:, [LI["left_foot_index"], LI["right_foot_index"]], 1], axis=1, keepdims=True)
    P[..., 1] += wrist_h - 0.03 * H  # foot index rests on the floor

    for side, s in (("left", 1.0), ("right", -1.0)):
        sh = P[:, LI[f"{side}_shoulder"]]
        if elbow is not None:
            wr = np.stack([sh[:, 0] + s * off_lat, np.full(T, wrist_h), sh[:, 2] + off_fwd], axis=-1)
            pole = np.array([s * 0.6, 0.0, -1.0])  # elbows back toward the feet and a little out
            el, wr = _two_bone_ik(sh, wr, body.upper_arm, body.forearm, pole)
        else:
            el = np.stack([sh[:, 0] + s * 0.01 * H, np.full(T, wrist_h), sh[:, 2]], axis=-1)
            wr = el + np.array([-s * 0.03 * H, 0.0, np.sqrt(body.forearm**2 - (0.03 * H) ** 2)])
        P[:, LI[f"{side}_elbow"]], P[:, LI[f"{side}_wrist"]] = el, wr
        for name, off in (("index", (0.012 * -s, 0, 0.085)), ("pinky", (0.02 * s, 0, 0.075)), ("thumb", (0.03 * -s, 0, 0.045))):
            P[:, LI[f"{side}_{name}"]] = wr + np.array(off) * H  # fingers forward, flat on the floor
    return P


def _hip_labels(P: np.ndarray) -> dict[str, np.ndarray]:
    line = body_line_3d(P)
    return {"sagging_hips": line < -HIP_LINE_DEG, "piked_hips": line > HIP_LINE_DEG}


def _hip_bend(rng: np.random.Generator, T: int, fps: float, faults: dict[str, float] | None) -> np.ndarray:
    """Signed hip bend [T] (+ pike, - sag): near-straight body plus at most one sagging or piked episode."""
    bend = rng.uniform(-6, 6) + _wobble(rng, T, fps, 2)
    if faults is None:
        kind = rng.choice(["none", "sagging_hips", "piked_hips"], p=[0.3, 0.35, 0.35])
        amp = rng.uniform(5, 35) if kind == "sagging_hips" else rng.uniform(5, 40)
    else:
        kind = next((k for k in ("sagging_hips", "piked_hips") if k in faults), "none")
        amp = float(faults.get(kind, 0.0))
    if kind == "none":
        return bend
    env = _window(T, rng, 0.3, 0.9)
    return bend + (-amp if kind == "sagging_hips" else amp) * env


def _pushup(rng: np.random.Generator, body: Body, fps: float, faults: dict[str, float] | None,
            duration_s: float | None, variant: str | None = None) -> Motion:
    n_reps = int(rng.integers(1, 5)) if duration_s is None else max(1, int(duration_s / 2.0))
    depth, rep = _reps(rng, fps, n_reps, (1.2, 2.5), (0.1, 0.5), (0.0, 0.2))
    T = len(depth)
    e_rep = np.array([_amp(faults, "shallow_depth", rng, 0.4, (35, 80), (88, 120)) for _ in range(n_reps)])
    e_top = rng.uniform(0, 12)
    elbow = e_top + depth * (np.where(rep >= 0, e_rep[np.maximum(rep, 0)], e_top) - e_top)
    P = _prone(rng, body, fps, _hip_bend(rng, T, fps, faults), elbow)
    labels = _hip_labels(P)
    sh_y = _mid(P, "left_shoulder", "right_shoulder")[:, 1]
    flex = elbow_flexion_3d(P).mean(axis=-1)
    shallow_rep = np.array([np.max(flex[rep == r]) < PUSHUP_DEPTH_DEG for r in range(n_reps)])
    labels["shallow_depth"] = _bottom_band(sh_y, rep) & (rep >= 0) & shallow_rep[np.maximum(rep, 0)]
    return Motion(P, {k: labels[k] for k in FAULTS["pushup"]}, fps,
                  {"reps": n_reps, "bottom_elbow_deg": e_rep.round(1).tolist()})


def _plank(rng: np.random.Generator, body: Body, fps: float, faults: dict[str, float] | None,
           duration_s: float | None, variant: str | None = None) -> Motion:
    T = int(round(fps * (duration_s or rng.uniform(2.5, 5.0))))
    forearm = (variant == "forearm") if variant else bool(rng.random() < 0.6)
    elbow = None if forearm else rng.uniform(0, 8) + _wobble(rng, T, fps, 1)
    P = _prone(rng, body, fps, _hip_bend(rng, T, fps, faults), elbow)
    return Motion(P, _hip_labels(P), fps, {"forearm": bool(forearm)})


_GENERATORS = {"ski_aerials": _ski_aerials, "squat": _squat, "pushup": _pushup, "plank": _plank}
# Camera yaw (degrees off the athlete's front) each sport is filmed from, and how much it varies.
CAMERA_YAW: dict[str, tuple[float, float]] = {
    "ski_aerials": (90.0, 40.0),  # side of the kicker, +-40
    "squat": (0.0, 50.0),         # front or front-oblique: knees caving is invisible from the side
    "pushup": (90.0, 30.0),       # side
    "plank": (90.0, 30.0),        # side
}


# ---------------------------------------------------------------- camera and detector

def project(world: np.ndarray, yaw_deg: float, px_per_m: float, center_px: tuple[float, float],
            roll_deg: float = 0.0, distance_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World joints [T,33,3] -> pixels [T,33,2] and depth toward the camera [T,33] (+ = nearer).

    The camera looks horizontally at the athlete; distance_m adds weak perspective (None: orthographic)."""
    cam = np.einsum("ij,tkj->tki", _rot("y", yaw_deg), world)
    ref = np.nanmean(cam, axis=(0, 1))  # centre of the action
    cam = cam - ref
    scale = px_per_m if distance_m is None else px_per_m * distance_m / np.maximum(distance_m - cam[..., 2], 0.5)
    u, v = scale * cam[..., 0], -scale * cam[..., 1]
    r = np.radians(roll_deg)
    uv = np.stack([np.cos(r) * u - np.sin(r) * v, np.sin(r) * u + np.cos(r) * v], axis=-1)
    return uv + np.asarray(center_px), cam[..., 2]


def observe(px: np.ndarray, depth: np.ndarray, rng: np.random.Generator, noise_frac: float,
            drop_p: float, frame_drop_p: float, foot_drop_p: float = 0.0) -> np.ndarray:
    """Detector-like observation of clean pixels [T,33,2] -> keypoints [T,33,3] (x, y, confidence)."""
    T = px.shape[0]
    height_px = np.nanmax(np.ptp(px[..., 1], axis=1))  # tallest extent in the clip, px
    sigma = noise_frac * max(height_px, 1.0)
    xy = px + rng.normal(0, sigma, px.shape)
    # far side of the body (behind the pelvis plane) is partly occluded -> lower confidence
    far = depth < (np.median(depth, axis=1, keepdims=True) - 0.05)
    conf = np.where(far, rng.uniform(0.35, 0.95, depth.shape), rng.uniform(0.8, 1.0, depth.shape))
    drop = rng.random(depth.shape) < drop_p
    feet = [LI[n] for n in ("left_heel", "right_heel", "left_foot_index", "right_foot_index")]
    drop[:, feet] |= rng.random((T, 4)) < foot_drop_p  # ski keypoints are hard to see against snow
    conf[drop] = rng.uniform(0.0, 0.25, int(drop.sum()))
    xy[drop] += rng.normal(0, 6 * sigma, (int(drop.sum()), 2))
    kps = np.concatenate([xy, conf[..., None]], axis=-1).astype(np.float32)
    kps[rng.random(T) < frame_drop_p] = np.nan  # no pose found in this frame
    return kps


@dataclass
class SynthClip:
    sport: str
    fps: float
    keypoints: np.ndarray  # [T,33,3] x_px, y_px, confidence; NaN rows = no pose
    world: np.ndarray  # [T,33,3] clean 3D joints, metres
    labels: dict[str, np.ndarray]  # fault id -> [T] bool
    meta: dict


def generate(sport: str, rng: np.random.Generator | int | None = None, faults: dict[str, float] | None = None, *,
             camera_yaw_deg: float | None = None, clean: bool = False, fps: float | None = None,
             duration_s: float | None = None, variant: str | None = None, px_per_m: float | None = None,
             center_px: tuple[float, float] | None = None) -> SynthClip:
    """One synthetic clip of `sport`.

    faults: None = random mix (training); {} = correct form; {fault_id: amplitude} forces those faults.
    Amplitudes: bent_knees / bent_hips = peak flexion (deg); crossed_skis = ski angle (deg);
    squat shallow_depth = bottom thigh angle from vertical (deg, 90 = parallel); knees_caving = inward
    knee rotation (deg); sagging_hips / piked_hips = hip bend (deg); push-up shallow_depth = bottom elbow
    flexion (deg). variant: plank "forearm" or "high" (default random).
    clean=True: no detector noise, no dropouts, no perspective, no body jitter (rendering, tests)."""
    if sport not in _GENERATORS:
        raise KeyError(f"unknown sport {sport!r}; have {SPORTS}")
    rng = np.random.default_rng(rng)
    body = Body.sample(rng, jitter=0.0 if clean else 0.04)
    fps = float(fps or rng.choice([24, 25, 30, 30, 30, 50, 60]))
    motion = _GENERATORS[sport](rng, body, fps, faults, duration_s, variant)
    base, spread = CAMERA_YAW[sport]
    if camera_yaw_deg is None:
        camera_yaw_deg = base + rng.uniform(-spread, spread)
        if base != 0 and rng.random() < 0.5:
            camera_yaw_deg = -camera_yaw_deg  # filmed from the other side
    scale = px_per_m or rng.uniform(50, 250)
    center = center_px or (rng.uniform(200, 1000), rng.uniform(150, 550))
    px, depth = project(motion.world, camera_yaw_deg, scale, center,
                        roll_deg=0.0 if clean else rng.uniform(-4, 4),
                        distance_m=None if clean else rng.uniform(6, 25))
    if clean:
        kps = np.concatenate([px, np.ones(px.shape[:2] + (1,))], axis=-1).astype(np.float32)
    else:
        kps = observe(px, depth, rng, noise_frac=rng.uniform(0.003, 0.015), drop_p=rng.uniform(0, 0.03),
                      frame_drop_p=rng.uniform(0, 0.03),
                      foot_drop_p=rng.uniform(0.01, 0.08) if sport == "ski_aerials" else 0.0)
    meta = dict(motion.meta, camera_yaw_deg=float(camera_yaw_deg), height_m=body.height, px_per_m=float(scale))
    return SynthClip(sport, fps, kps, motion.world, motion.labels, meta)
