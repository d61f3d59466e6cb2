"""Repetition segmentation and counting for exercise sports, from one joint-angle signal per sport.

    from services.judge.reps import EXERCISES, segment, count, primary_signal
    reps = segment(kps, "squat", fps=30)      # kps [T,33,3] (x_px, y_px, confidence; NaN rows = no pose)
    n_full = count(reps)                      # partial repetitions are reported, not counted
    reps[0].start, reps[0].end                # frame positions in kps, both inclusive
    reps[0].rom_deg, reps[0].down_s, reps[0].hold_s, reps[0].up_s, reps[0].partial

The primary signal of each exercise is an angle in degrees that grows toward the turnaround of a
repetition (the bottom of a squat or push-up, the top of a pull-up or sit-up):

    squat   thigh angle below vertical, from the hip's height over the knee in shin lengths:
            arccos((knee_y - hip_y) / |ankle - knee|) (0 = standing, 90 = thighs parallel). Only
            image-vertical offsets are used, so it reads the same from the front and the side; the
            2D knee angle does not (a thigh pointing at a front camera is foreshortened).
    pushup  elbow flexion, mean of both sides (joint_angles_deg elbow_l / elbow_r; 0 = arms straight).
    pullup  elbow flexion, mean of both sides (0 = hanging with straight arms).
    situp   hip flexion, mean of both sides (joint_angles_deg hip_l / hip_r; lying with bent knees ~45).
The squat and push-up rules are evaluated on synthetic clips (services/judge/lab/bootstrap_temporal.py,
docs/judge.md); pull-up and sit-up have no pose generator or pack yet, so only their signal
rule is tested, on angle traces (tests/unit/judge/test_judge_reps.py).

Algorithm (`segment_signal`):
  1. missing frames are filled by linear interpolation (a repetition that is mostly unobserved
     is dropped, step 6); a centred median over ~0.1 s then a moving average over `smooth_s`
     (0.2 s) remove keypoint jitter;
  2. the signal is normalised by the clip's own range: u = (s - rest) / (peak - rest), with
     rest = 2nd percentile and peak = maximum of the smoothed signal; a clip whose range is
     below `min_rom_deg` has no repetitions (holding still, a plank);
  3. hysteresis: an excursion starts when u rises above `enter` (0.3) and ends when it falls
     below `exit` (0.15); pauses anywhere inside (at the bottom, half-way down or up) keep u
     between the two and do not split or end it, and a pause at the top is rest;
  4. its start is the last frame before the crossing that is within 5% of the travel of the
     lowest point since the previous excursion (the moment the athlete leaves the rest
     position); its end likewise the first such frame after it;
  5. range of motion = the excursion's highest value minus the higher of its start and end
     values (an athlete who goes down and comes only half-way back up did half a repetition);
  6. an excursion shorter than `min_rep_s`, with more than half its frames unobserved, or with a
     range of motion below `min_rom_deg` (e.g. the clip starts at the bottom) is dropped,
     and so is one during which the planted landmarks (ankles; wrists for pull-ups) wander more than
     `max_drift` (0.5) torso lengths from where they were (90th percentile): walking past the
     camera bends the thighs too, but exercises are done in place;
  7. full vs partial: a repetition is full when its range of motion is at least `full_frac`
     (0.5) of the clip's largest and at least `min_full_rom_deg`; otherwise it is reported with
     partial=True and not counted. So a clip of equally shallow squats counts them all (the
     quality model flags them), while a half-way dip between deep squats is a partial.
  8. tempo: the bottom band is the frames within 10% of the range of motion of the excursion's
     highest value; down_s = start -> first bottom frame, hold_s = the band, up_s = last bottom
     frame -> end (for pull-ups and sit-ups "down" is the pull / the curl, toward the turnaround).

Excursions smaller than `enter` x the clip's range are invisible: a twitch is neither counted
nor reported. Two reps with no return above `exit` between them (bouncing at the bottom) count
as one.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from shared.features import ANGLE_NAMES, FEATURE_INDEX, frame_features, joint_angles_deg

_A = {n: i for i, n in enumerate(ANGLE_NAMES)}


def _mean_angles(kps: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    A = joint_angles_deg(kps)[:, [_A[n] for n in names]]  # [T,k]
    with np.errstate(all="ignore"):
        n_ok = np.isfinite(A).sum(axis=1)
        return np.where(n_ok > 0, np.nansum(A, axis=1) / np.maximum(n_ok, 1), np.nan)  # [T]


def thigh_angle_deg(kps: np.ndarray) -> np.ndarray:
    """[T] thigh angle below vertical from the hip's height over the knee (0 = standing, 90 = parallel)."""
    h = frame_features(kps)[:, FEATURE_INDEX["hip_above_knee"]]  # hip above knee, in shin lengths
    with np.errstate(invalid="ignore"):
        return np.degrees(np.arccos(np.clip(h, -1.0, 1.0)))


@dataclass(frozen=True)
class ExerciseSpec:
    name: str
    signal_name: str
    signal: Callable[[np.ndarray], np.ndarray]  # kps [T,33,3] -> [T] degrees, larger = toward the turnaround
    min_rom_deg: float       # a clip moving less than this has no repetitions
    min_full_rom_deg: float  # a full repetition travels at least this far
    full_frac: float = 0.5   # ... and at least this fraction of the clip's largest range of motion
    enter: float = 0.3       # hysteresis on the normalised signal
    exit: float = 0.15
    smooth_s: float = 0.2
    min_rep_s: float = 0.4
    planted: tuple[str, ...] = ("left_ankle", "right_ankle")  # landmarks that stay put during a repetition
    max_drift: float = 0.5   # ... within this many torso lengths (else it is walking, not a repetition)


_ELBOWS, _HIPS = ("elbow_l", "elbow_r"), ("hip_l", "hip_r")
EXERCISES: dict[str, ExerciseSpec] = {
    # a full squat moves the thigh >= 35 deg (a quarter squat ~45); walking swings it 20-30 deg, and a
    # walker pausing in place had 21-30 deg "repetitions" on vtest.avi
    "squat": ExerciseSpec("squat", "thigh angle below vertical (deg)", thigh_angle_deg, 20.0, 35.0),
    "pushup": ExerciseSpec("pushup", "elbow flexion (deg)", lambda k: _mean_angles(k, _ELBOWS), 15.0, 20.0),
    "pullup": ExerciseSpec("pullup", "elbow flexion (deg)", lambda k: _mean_angles(k, _ELBOWS), 20.0, 40.0,
                           planted=("left_wrist", "right_wrist")),   # hands on the bar; the legs may swing
    "situp": ExerciseSpec("situp", "hip flexion (deg)", lambda k: _mean_angles(k, _HIPS), 20.0, 30.0),
}


@dataclass
class Repetition:
    index: int          # 1-based position in the list (full and partial repetitions, in time order)
    start: int          # first frame (position in the clip), inclusive
    end: int            # last frame, inclusive
    bottom: int         # frame of the turnaround (highest primary signal)
    rom_deg: float      # range of motion of the primary signal
    peak_deg: float     # primary signal at the turnaround
    down_s: float
    hold_s: float
    up_s: float
    partial: bool

    @property
    def frames(self) -> int:
        return self.end - self.start + 1

    def to_dict(self) -> dict:
        return asdict(self)


def _fill(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over NaNs (edges: nearest value) -> (filled [T], observed [T] bool)."""
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x), ok
    t = np.arange(len(x))
    return np.interp(t, t[ok], x[ok]), ok


def smooth(x: np.ndarray, fps: float, smooth_s: float = 0.2) -> np.ndarray:
    """Centred median over ~0.1 s, then a moving average over smooth_s; [T] -> [T] (no NaNs in, none out)."""
    T = len(x)
    h = max(1, int(round(0.05 * fps)))
    pad = np.pad(x, h, mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * h + 1), axis=-1)  # [T]
    w = max(1, int(round(smooth_s * fps)) // 2)
    pad = np.pad(med, w, mode="edge")
    c = np.concatenate([[0.0], np.cumsum(pad)])
    return (c[2 * w + 1:] - c[:-2 * w - 1])[:T] / (2 * w + 1)


def segment_signal(signal: np.ndarray, fps: float, spec: ExerciseSpec, drift: np.ndarray | None = None) -> list[Repetition]:
    """Repetitions of one primary-angle signal [T] (degrees, NaN = unobserved); see the module doc.

    drift [T] (optional): distance of the planted landmarks from where they were, in torso
    lengths (`planted_drift`); an excursion during which it moves more than spec.max_drift is dropped."""
    raw = np.asarray(signal, dtype=np.float64)
    if raw.size < 3 or np.isfinite(raw).sum() < 3:
        return []
    x, observed = _fill(raw)
    s = smooth(x, fps, spec.smooth_s)  # [T]
    rest, peak = float(np.percentile(s, 2)), float(np.max(s))
    if peak - rest < spec.min_rom_deg:
        return []
    u = (s - rest) / (peak - rest)  # [T] 0 = rest, 1 = the clip's deepest point

    # hysteresis: (enter, exit) crossings
    spans, inside, t_in = [], False, 0
    for t in range(len(u)):
        if not inside and u[t] > spec.enter:
            inside, t_in = True, t
        elif inside and u[t] < spec.exit:
            spans.append((t_in, t))
            inside = False
    if inside:
        spans.append((t_in, len(u) - 1))  # the clip ends mid-repetition: its end value decides (step 5)

    cands, prev_end = [], 0
    for k, (a, b) in enumerate(spans):
        nxt = spans[k + 1][0] if k + 1 < len(spans) else len(u)
        before = u[prev_end:a + 1]
        start = prev_end + int(np.nonzero(before <= before.min() + 0.05)[0][-1])
        after = u[b:nxt]
        end = b + int(np.nonzero(after <= after.min() + 0.05)[0][0])
        prev_end = end
        seg = s[start:end + 1]
        bottom = start + int(np.argmax(seg))
        rom = float(seg.max() - max(s[start], s[end]))
        if (end - start + 1) / fps < spec.min_rep_s or observed[start:end + 1].mean() < 0.5 or rom < spec.min_rom_deg:
            continue
        if drift is not None and _travel(drift, start, end) > spec.max_drift:
            continue   # the feet (hands) did not stay put: walking, not a repetition
        band = np.nonzero(seg >= seg.max() - 0.1 * max(rom, 1e-6))[0]
        cands.append(dict(start=start, end=end, bottom=bottom, rom_deg=round(rom, 2), peak_deg=round(float(seg.max()), 2),
                          down_s=round(band[0] / fps, 3), hold_s=round((band[-1] - band[0]) / fps, 3),
                          up_s=round((len(seg) - 1 - band[-1]) / fps, 3)))
    if not cands:
        return []
    largest = max(c["rom_deg"] for c in cands)
    return [Repetition(index=i + 1, **c,
                       partial=bool(c["rom_deg"] < max(spec.min_full_rom_deg, spec.full_frac * largest)))
            for i, c in enumerate(cands)]


def planted_position(kps: np.ndarray, spec: ExerciseSpec) -> np.ndarray:
    """[T,2] midpoint of the planted landmarks, in torso lengths (median shoulder-mid to hip-mid in the clip)."""
    from shared.skeleton import LANDMARK_INDEX as LI

    kps = np.asarray(kps, dtype=np.float64)
    xy = np.where((kps[..., 2:3] >= 0.3), kps[..., :2], np.nan)          # [T,33,2], low confidence = missing
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        anchor = np.nanmean(xy[:, [LI[n] for n in spec.planted]], axis=1)   # [T,2]
        sh = np.nanmean(xy[:, [LI["left_shoulder"], LI["right_shoulder"]]], axis=1)
        hp = np.nanmean(xy[:, [LI["left_hip"], LI["right_hip"]]], axis=1)
        torso = np.nanmedian(np.linalg.norm(sh - hp, axis=1))
    return anchor / torso if np.isfinite(torso) and torso > 0 else np.full_like(anchor, np.nan)


def _travel(pos: np.ndarray, start: int, end: int) -> float:
    """How far [T,2] positions wander within start..end: 90th percentile distance from their median (NaN-aware)."""
    seg = pos[start:end + 1]
    seg = seg[np.isfinite(seg).all(axis=1)]
    if len(seg) < 3:
        return 0.0
    return float(np.percentile(np.linalg.norm(seg - np.median(seg, axis=0), axis=1), 90))


def primary_signal(kps: np.ndarray, sport: str) -> np.ndarray:
    """kps [T,33,3] -> the sport's primary angle [T] in degrees (NaN where unmeasured)."""
    return EXERCISES[sport].signal(np.asarray(kps, dtype=np.float64))


def segment(kps: np.ndarray, sport: str, fps: float = 30.0) -> list[Repetition]:
    """Repetitions of an exercise clip: keypoints [T,33,3] -> [Repetition] in time order."""
    if sport not in EXERCISES:
        raise KeyError(f"no repetition rule for {sport!r}; have {sorted(EXERCISES)}")
    spec = EXERCISES[sport]
    return segment_signal(primary_signal(kps, sport), fps, spec, planted_position(kps, spec))


def count(reps: list[Repetition]) -> int:
    """Full repetitions (partial ones are reported but not counted)."""
    return sum(not r.partial for r in reps)
