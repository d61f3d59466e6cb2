"""Is the athlete doing the exercise at all, in which phase, and from which camera view?

A fault model answers "is this pose faulty?" for any pose it is shown: a person walking past the
camera, standing still between sets or setting up gets confident squat faults. This module
decides, per frame and from the pose alone, when a pack's faults may be judged:

* activity: `performing` only while the athlete does the pack's exercise: in the right posture
  (upright for a squat, horizontal for a plank), in place (an exercise is done on the spot; a
  root travelling more than ~0.6 torso lengths per second is walking or running), and, for
  repetition exercises, inside a repetition found by the repetition counter; for holds, held
  for at least a second. Everything else is `not_performing` and gets no fault verdict.
* phase: depth faults ("shallow squat") are properties of the bottom of a repetition, so they are
  judged only at the bottom (the top ~25 % of the repetition's travel, or the pack's phase model).
* view: front / oblique / side, from the body's apparent width over its torso length (shoulder
  and hip width shrink as cos(yaw) when the athlete turns), smoothed over ~1 s. A fault declares
  the views it can be judged from (knees caving needs the front; hip depth needs the side); in
  another view it is reported as not judgeable instead of guessed.

Pure: keypoints [T,33,3] (x_px, y_px, confidence; NaN rows = no pose) in, arrays out. The rules
are criteria on the pose, not a trained model: no labelled "not exercising" footage exists here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from services.judge.segments import _runs
from shared.features import moving_median
from shared.skeleton import LANDMARK_INDEX as LI

MIN_CONF = 0.3
VIEWS = ("front", "oblique", "side")
# Apparent width / torso length when facing the camera (BlazePose landmarks, adults): shoulders
# ~0.8 torso lengths apart, BlazePose's hip points ~0.5. Their ratio to these is ~|cos(yaw)|.
SHOULDER_FRONTAL, HIP_FRONTAL = 0.8, 0.5
FRONT_MIN, SIDE_MAX = 0.6, 0.3           # ~within 45 deg of facing the camera; ~beyond 70 deg (checked on synthetic bodies)
MAX_ROOT_SPEED = 0.6                     # torso lengths per second; walking is ~2-3
UPRIGHT_MAX_DEG, HORIZONTAL_MAX_DEG = 45.0, 35.0


@dataclass(frozen=True)
class ActivityRule:
    """When a pack's exercise is being performed."""
    noun: str                         # "squat repetitions": what is missing when nothing is found
    posture: str = "any"              # upright | horizontal | any
    movement: str = "any"             # repetitions | hold | any
    in_place: bool = True
    bottom_faults: tuple[str, ...] = ()   # judged only at the bottom of a repetition


RULES: dict[str, ActivityRule] = {
    "squat": ActivityRule("squat repetitions", "upright", "repetitions", bottom_faults=("shallow_depth",)),
    "pushup": ActivityRule("push-up repetitions", "horizontal", "repetitions", bottom_faults=("shallow_depth",)),
    "plank": ActivityRule("plank hold", "horizontal", "hold"),
    "lunge": ActivityRule("lunges", "upright", "repetitions"),
    "bicep_curl": ActivityRule("bicep curls", "upright", "repetitions"),
    # aerials: the athlete flies through the frame upside down; any frame with a pose is the jump
    "ski_aerials": ActivityRule("aerial jump", "any", "any", in_place=False),
}


def rule_for(sport: str) -> ActivityRule:
    """The sport's rule; a sport nobody wrote one for (a coach's new pack) is judged on every posed
    frame, as before these rules existed, rather than gated by a guess."""
    return RULES.get(sport) or ActivityRule(sport.replace("_", " "), "any", "any", in_place=False)


@dataclass
class Activity:
    performing: np.ndarray            # [T] bool
    bottom: np.ndarray                # [T] bool: at the bottom of a repetition (phase)
    view: list                        # [T] "front" | "oblique" | "side" | None
    finding: str | None               # a sentence when the exercise is never performed
    reasons: dict = field(default_factory=dict)   # per-criterion frame counts (for the finding and debugging)


# ----------------------------------------------------------------------------- geometry

def _xy(kps: np.ndarray) -> np.ndarray:
    kps = np.asarray(kps, dtype=np.float64)
    return np.where(kps[..., 2:3] >= MIN_CONF, kps[..., :2], np.nan)     # [T,33,2]


def _mid(xy: np.ndarray, a: str, b: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(xy[:, [LI[a], LI[b]]], axis=1)                 # [T,2]


def _dist(xy: np.ndarray, a: str, b: str) -> np.ndarray:
    return np.linalg.norm(xy[:, LI[a]] - xy[:, LI[b]], axis=1)           # [T]


def torso_lengths(kps: np.ndarray) -> np.ndarray:
    """[T] shoulder-mid to hip-mid distance in pixels."""
    xy = _xy(kps)
    return np.linalg.norm(_mid(xy, "left_shoulder", "right_shoulder") - _mid(xy, "left_hip", "right_hip"), axis=1)


def yaw_cosine(kps: np.ndarray) -> np.ndarray:
    """[T] ~|cos(yaw)| of the body to the camera: 1 facing (or back to) it, 0 side on."""
    xy = _xy(kps)
    torso = torso_lengths(kps)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = _dist(xy, "left_shoulder", "right_shoulder") / torso / SHOULDER_FRONTAL
        h = _dist(xy, "left_hip", "right_hip") / torso / HIP_FRONTAL
        return np.clip(np.nanmean(np.stack([s, h]), axis=0), 0.0, 1.5)


def estimate_view(kps: np.ndarray, fps: float, smooth_s: float = 1.0) -> list:
    """[T] camera view per frame, smoothed over ~smooth_s: "front" | "oblique" | "side" | None."""
    c = moving_median(yaw_cosine(kps)[:, None], max(1, int(round(smooth_s * fps / 2))))[:, 0]
    return [None if not np.isfinite(v) else "front" if v >= FRONT_MIN else "side" if v <= SIDE_MAX else "oblique"
            for v in c]


def posture(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T] upright, [T] horizontal (bool) from the trunk's and the body line's angle to the image vertical."""
    xy = _xy(kps)
    sh, hp = _mid(xy, "left_shoulder", "right_shoulder"), _mid(xy, "left_hip", "right_hip")
    an = _mid(xy, "left_ankle", "right_ankle")
    with np.errstate(all="ignore"):
        trunk = np.degrees(np.arctan2(np.abs(hp[:, 0] - sh[:, 0]), hp[:, 1] - sh[:, 1]))   # 0 = hips straight below shoulders
        line = an - sh
        tilt = np.degrees(np.arctan2(np.abs(line[:, 1]), np.abs(line[:, 0])))           # 0 = body line horizontal
    upright = np.nan_to_num(trunk, nan=180.0) <= UPRIGHT_MAX_DEG
    horizontal = np.nan_to_num(tilt, nan=90.0) <= HORIZONTAL_MAX_DEG
    return upright, horizontal


def _speed(pos: np.ndarray, torso: float, fps: float, half: int) -> np.ndarray:
    """[T,2] positions -> [T] speed in torso lengths per second over a centred window (NaN-aware)."""
    T = len(pos)
    speed = np.full(T, np.nan)
    ok = np.flatnonzero(np.isfinite(pos).all(axis=1))
    if len(ok) < 2 or not np.isfinite(torso) or torso <= 0:
        return speed
    for t in range(T):
        lo, hi = np.searchsorted(ok, t - half), np.searchsorted(ok, t + half, side="right") - 1
        if hi > lo:
            a, b = ok[lo], ok[hi]
            speed[t] = np.linalg.norm(pos[b] - pos[a]) / torso / ((b - a) / fps)
    return speed


def root_speed(kps: np.ndarray, fps: float, window_s: float = 1.0) -> np.ndarray:
    """[T] how fast the athlete travels, in torso lengths per second over a centred ~window_s.

    The feet (ankle midpoint) stay put in a squat, lunge, curl, plank or push-up while the hips
    go up and down, so they are the anchor; where the ankles are not seen (a close, upper-body
    framing) the hips' horizontal position stands in."""
    xy = _xy(kps)
    lengths = torso_lengths(kps)
    torso = np.nanmedian(lengths) if np.isfinite(lengths).any() else np.nan
    half = max(1, int(round(window_s * fps / 2)))
    feet = _speed(_mid(xy, "left_ankle", "right_ankle"), torso, fps, half)
    hips = _mid(xy, "left_hip", "right_hip")
    hips[:, 1] = 0.0                                                     # horizontal travel only
    return np.where(np.isfinite(feet), feet, _speed(hips, torso, fps, half))


def _drop_short(mask: np.ndarray, min_frames: int) -> np.ndarray:
    out = mask.copy()
    for s, e in _runs(mask):
        if e - s + 1 < min_frames:
            out[s:e + 1] = False
    return out


# ----------------------------------------------------------------------------- the decision

def repetition_masks(reps: list, signal: np.ndarray | None, T: int, fps: float,
                     bottom_frac: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Repetitions [(start, end, bottom)] -> in_rep [T], bottom [T].

    Bottom = frames of the repetition whose primary signal is within the top (1 - bottom_frac) of
    that repetition's travel (without a signal: +-0.15 s around its turnaround)."""
    in_rep, bottom = np.zeros(T, bool), np.zeros(T, bool)
    margin = int(round(0.15 * fps))
    for start, end, turn in reps:
        in_rep[start:end + 1] = True
        seg = None if signal is None else signal[start:end + 1]
        if seg is not None and np.isfinite(seg).sum() >= 3:
            lo, hi = np.nanmin(seg), np.nanmax(seg)
            if hi > lo:
                bottom[start:end + 1] |= np.nan_to_num((seg - lo) / (hi - lo), nan=0.0) >= bottom_frac
                continue
        bottom[max(start, turn - margin):min(end, turn + margin) + 1] = True
    return in_rep, bottom


def decide(kps: np.ndarray, fps: float, rule: ActivityRule, reps: list | None = None,
           signal: np.ndarray | None = None, phase_bottom: np.ndarray | None = None) -> Activity:
    """Per-frame activity, phase and view for one athlete.

    kps [T,33,3]; reps: [(start, end, turnaround)] found by a repetition counter (needed when
    rule.movement == "repetitions"; None = the counter found none); signal [T]: the primary angle
    the repetitions were cut on; phase_bottom [T] bool: a phase model's "bottom" frames, added to
    the signal rule's inside repetitions. Not instead of it: a phase model trained on deep squats
    calls the bottom of a shallow one "up", and the shallow bottom is exactly where depth is judged."""
    kps = np.asarray(kps, dtype=np.float64)
    T = len(kps)
    has_pose = np.isfinite(kps[..., 2]).any(axis=1) & np.isfinite(torso_lengths(kps))
    upright, horizontal = posture(kps)
    posture_ok = {"upright": upright, "horizontal": horizontal}.get(rule.posture, np.ones(T, bool))
    speed = root_speed(kps, fps)
    in_place = (np.nan_to_num(speed, nan=np.inf) <= MAX_ROOT_SPEED) if rule.in_place else np.ones(T, bool)

    in_rep, bottom = repetition_masks(reps or [], signal, T, fps)
    if phase_bottom is not None:
        bottom |= np.asarray(phase_bottom, bool) & in_rep
    if rule.movement == "repetitions":
        moving = in_rep
    elif rule.movement == "hold":
        moving = _drop_short(has_pose & posture_ok & in_place, int(round(1.0 * fps)))
    else:
        moving = np.ones(T, bool)
    performing = has_pose & posture_ok & in_place & moving
    performing = _drop_short(performing, max(2, int(round(0.3 * fps))))

    reasons = {"frames": T, "with_pose": int(has_pose.sum()), "posture_ok": int((has_pose & posture_ok).sum()),
               "in_place": int((has_pose & in_place).sum()), "in_repetition": int(in_rep.sum()),
               "performing": int(performing.sum())}
    finding = None if performing.any() else _finding(rule, reasons, has_pose, upright, horizontal, speed)
    return Activity(performing=performing, bottom=bottom & performing, view=estimate_view(kps, fps),
                    finding=finding, reasons=reasons)


def _finding(rule: ActivityRule, r: dict, has_pose, upright, horizontal, speed) -> str:
    """Why the exercise was never performed, in words, from what most posed frames show."""
    n = max(1, r["with_pose"])
    if r["with_pose"] == 0:
        why = "no body pose was found"
    elif rule.in_place and r["in_place"] < 0.5 * n:
        why = "the athlete moves across the frame (walking or running) rather than exercising in place"
    elif r["posture_ok"] < 0.5 * n:
        seen = "upright" if upright[has_pose].mean() > 0.5 else "horizontal" if horizontal[has_pose].mean() > 0.5 else "neither upright nor horizontal"
        why = f"the body is never {rule.posture} (mostly {seen})"
    elif rule.movement == "repetitions":
        why = "the athlete stays in place without a repetitive movement"
    else:
        why = "the position is not held for a second"
    return f"no {rule.noun} found: {why}"


def view_mask(view: list, views: tuple[str, ...] | list[str] | None) -> np.ndarray:
    """[T] bool: the frame's view is one the fault can be judged from (unknown view: judged)."""
    if not views or set(views) >= set(VIEWS):
        return np.ones(len(view), bool)
    return np.array([v is None or v in views for v in view], bool)


def not_judgeable_runs(judgeable: np.ndarray, performing: np.ndarray, view: list, fps: float,
                       min_s: float = 0.5) -> list[tuple[int, int, str]]:
    """Stretches of the exercise where a fault cannot be judged: [(start, end, dominant view)].

    Runs separated only by frames outside the exercise (the rest between repetitions) are one
    stretch: a whole set filmed from the wrong side is one entry, not one per repetition."""
    runs: list[list[int]] = []
    for s, e in _runs(performing & ~judgeable):
        if runs and not (performing[runs[-1][1] + 1:s] & judgeable[runs[-1][1] + 1:s]).any():
            runs[-1][1] = e
        else:
            runs.append([s, e])
    out = []
    for s, e in runs:
        n = int((performing[s:e + 1] & ~judgeable[s:e + 1]).sum())
        if n / fps >= min_s:
            vs = [v for v, bad in zip(view[s:e + 1], ~judgeable[s:e + 1]) if v and bad]
            out.append((s, e, max(set(vs), key=vs.count) if vs else "unknown"))
    return out
