"""Class-agnostic repetition counting: how many times does the athlete repeat a movement in place?

    from shared.periodic import count_repetitions
    rc = count_repetitions(kps, fps)      # kps [T,33,3]: x_px, y_px, visibility; NaN rows = no pose
    rc.count, rc.reps, rc.period_s, rc.finding
    rc.to_json(fps)                       # {"count", "reps": [{"start_s", "end_s"}], "period_s", "finding"}

It does not need the exercise's name (services/judge/reps.py does: one hand-chosen angle per
exercise). In the manner of class-agnostic counters such as RepNet it looks for the periodicity
of the pose itself:

  1. body-normalised joint trajectories: the 13 body landmarks (nose, shoulders, elbows, wrists,
     hips, knees, ankles; those seen in most frames) relative to the hip midpoint, in torso
     lengths (shoulder mid -> hip mid, running median over ~2 s), so that moving across the frame
     or toward the camera does not look like a movement of the body;
  2. gaps (no pose, low visibility) are interpolated, then a ~0.1 s median and ~0.15 s mean
     remove jitter; the rows are centred and reduced by PCA to the top 3 components;
  3. the dominant *periodic* component is the one (of those that move at least `min_amplitude`
     torso lengths) whose normalised autocorrelation has the highest peak at a lag in
     [min_period_s, half the clip]; that lag is the period (a fallback for period_s);
  4. it is cut into cycles by hysteresis on its range (5th..95th percentile -> 0..1), oriented so
     that 0 is the rest position (where the clip starts and ends, else where it dwells): a cycle
     starts when it rises above `enter` and ends when it falls below `exit`; one that is still
     under way at either end of the clip (partial first / last cycle) is not counted; cycle
     boundaries are where the athlete leaves / regains the rest position. Hysteresis, not a
     fixed period, so tempo may change within the clip;
  5. a cycle is dropped when its excursion is below `min_amplitude` torso lengths (sway, jitter)
     or below half the median excursion (a dip between full repetitions), when more than half of
     it was not observed, and when the body root (hip midpoint) travels more than `max_travel`
     (0.5) torso lengths from its start to its end: exercises are done in place, walking past the
     camera is periodic too;
  6. at least `min_reps` (2) cycles make a repetition; one lone movement is not counted.

`finding` is one sentence: why nothing was counted, or what was counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from shared.skeleton import LANDMARK_INDEX

BODY = ("nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
_B = [LANDMARK_INDEX[n] for n in BODY]
_LS, _RS, _LH, _RH = (BODY.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))


@dataclass
class RepCount:
    count: int
    reps: list[tuple[int, int]] = field(default_factory=list)  # (start_frame, end_frame), both inclusive
    period_s: float | None = None                              # median cycle length (autocorrelation lag if < 2 cycles)
    finding: str = ""

    def to_json(self, fps: float) -> dict:
        return {"count": self.count,
                "reps": [{"start_s": round(s / fps, 3), "end_s": round(e / fps, 3)} for s, e in self.reps],
                "period_s": None if self.period_s is None else round(self.period_s, 3),
                "finding": self.finding}


def _fill(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs along axis 0 (edges: nearest value); [T,D] -> [T,D]."""
    out = x.copy()
    t = np.arange(len(x))
    for d in range(x.shape[1]):
        ok = np.isfinite(x[:, d])
        out[:, d] = np.interp(t, t[ok], x[ok, d]) if ok.any() else 0.0
    return out


def body_trajectories(kps: np.ndarray, fps: float, min_visibility: float = 0.3, min_seen: float = 0.6):
    """Body-normalised joint trajectories.

    Returns (X [T,2J] joint x,y relative to the hip midpoint in torso lengths, NaN where unseen,
             root [T,2] hip midpoint px, torso [T] px (running median), posed [T] bool).
    """
    P = np.asarray(kps, dtype=np.float64)[:, _B]  # [T,13,3]
    xy = np.where((P[..., 2:3] >= min_visibility) & np.isfinite(P[..., :2]), P[..., :2], np.nan)  # [T,13,2]
    root = (xy[:, _LH] + xy[:, _RH]) / 2  # [T,2]
    torso_now = np.linalg.norm((xy[:, _LS] + xy[:, _RS]) / 2 - root, axis=1)  # [T]
    posed = np.isfinite(root).all(1) & np.isfinite(torso_now) & (torso_now > 1e-6)
    T = len(P)
    torso = np.full(T, np.nan)
    if posed.any():
        # running median over ~2 s: bending forward shortens the 2D torso for a moment, the camera distance does not
        h = max(1, int(round(fps)))
        idx = np.nonzero(posed)[0]
        for t in range(T):
            near = idx[(idx >= t - h) & (idx <= t + h)]
            torso[t] = np.median(torso_now[near]) if len(near) else np.nan
        torso = _fill(torso[:, None])[:, 0]
    rel = (xy - root[:, None]) / torso[:, None, None]  # [T,13,2] torso lengths
    rel[~posed] = np.nan
    seen = np.isfinite(rel).all(2)[posed].mean(0) if posed.any() else np.zeros(len(BODY))  # [13]
    keep = seen >= min_seen  # a data set (or a camera) may lack some joints: use those it has
    return rel[:, keep].reshape(T, -1), root, torso, posed


def _autocorr_peak(p: np.ndarray, lo: int, hi: int) -> tuple[int | None, float]:
    """(lag, normalised autocorrelation) of the highest local peak of p's autocorrelation in [lo, hi]."""
    x = p - p.mean()
    n = len(x)
    if hi <= lo + 1 or not np.any(x):
        return None, 0.0
    f = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(f * np.conj(f))[:n]
    ac = ac / (ac[0] * (n - np.arange(n)) / n)  # unbiased: each lag averages n - lag products
    seg = ac[lo:hi + 1]
    peaks = [i for i in range(1, len(seg) - 1) if seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1]]
    if not peaks:
        return None, 0.0
    i = max(peaks, key=lambda k: seg[k])
    return lo + i, float(seg[i])


def _cycles(u: np.ndarray, enter: float, exit_: float) -> list[tuple[int, int, int, int]]:
    """Hysteresis on u [T] (0 = rest): complete excursions as (start, end, cross_up, cross_down),
    start / end = last / first frame within 0.05 of the lowest point of the rest before / after."""
    ex, on, t0 = [], False, 0
    for t, v in enumerate(u):
        if not on and v > enter:
            on, t0 = True, t
        elif on and v < exit_:
            on = False
            ex.append((t0, t))
    # an excursion under way when the clip starts (u never was at rest before it) is partial
    if ex and not (u[:ex[0][0]] < exit_).any():
        ex = ex[1:]
    out = []
    for i, (a, b) in enumerate(ex):
        prev_end = ex[i - 1][1] if i else 0
        next_start = ex[i + 1][0] if i + 1 < len(ex) else len(u)
        rest_before, rest_after = u[prev_end:a], u[b:next_start]
        s = prev_end + int(np.nonzero(rest_before <= rest_before.min() + 0.05)[0][-1])
        e = b + int(np.nonzero(rest_after <= rest_after.min() + 0.05)[0][0])
        out.append((s, e, a, b))
    return out


def count_repetitions(kps: np.ndarray, fps: float, *, min_amplitude: float = 0.4, max_travel: float = 0.5,
                      enter: float = 0.5, exit_: float = 0.25, min_period_s: float = 0.4, min_reps: int = 2,
                      min_posed_s: float = 1.0) -> RepCount:
    """Count repetitions in kps [T,33,3] (x_px, y_px, visibility; NaN rows = no pose) at fps."""
    T = len(kps)
    X, root, torso, posed = body_trajectories(kps, fps)  # X [T,2J]
    if posed.sum() < max(10, min_posed_s * fps) or X.shape[1] < 4:
        return RepCount(0, finding=f"no repetitions found: too few frames with a pose ({int(posed.sum())} of {T})")

    # fill gaps, then a short median (jitter spikes) and mean; [T,2J]
    k_med, k_avg = max(1, int(round(0.1 * fps)) | 1), max(1, int(round(0.15 * fps)))
    Xf = uniform_filter1d(median_filter(_fill(X), size=(k_med, 1), mode="nearest"), k_avg, axis=0, mode="nearest")
    first, last = np.nonzero(posed)[0][[0, -1]]
    Xf, obs = Xf[first:last + 1], posed[first:last + 1]  # the clip between the first and last pose
    Xc = Xf - Xf[obs].mean(0)

    # PCA of the observed frames: top 3 directions of pose change; scores in torso lengths, [T',3]
    _, _, Vt = np.linalg.svd(Xc[obs], full_matrices=False)
    Z = Xc @ Vt[:3].T
    lo_lag, hi_lag = max(2, int(min_period_s * fps)), len(Z) // 2
    best = None  # (autocorrelation peak, component, lag)
    for c in range(Z.shape[1]):
        rng = np.percentile(Z[obs, c], 95) - np.percentile(Z[obs, c], 5)
        if rng < min_amplitude:
            continue
        lag, r = _autocorr_peak(Z[:, c], lo_lag, hi_lag)
        if lag is not None and (best is None or r > best[0]):
            best = (r, c, lag)
    if best is None:
        amp = float(np.percentile(Z[obs, 0], 95) - np.percentile(Z[obs, 0], 5))
        return RepCount(0, finding=f"no repetitive movement: the pose changes by {amp:.2f} torso lengths at most")
    r, c, lag = best
    p = Z[:, c]  # [T'] the dominant periodic component

    # normalise to 0..1 and orient so that 0 = rest: where the clip starts and ends, else where it dwells
    lo, hi = np.percentile(p[obs], 5), np.percentile(p[obs], 95)
    u = (p - lo) / (hi - lo)
    edge = max(1, int(0.5 * fps))
    ends = np.r_[u[:edge], u[-edge:]].mean()
    if abs(ends - 0.5) > 0.15 and ends > 0.5 or abs(ends - 0.5) <= 0.15 and (u > 0.8).mean() > (u < 0.2).mean():
        u = 1.0 - u

    cands = _cycles(u, enter, exit_)
    amp = np.array([(hi - lo) * (u[a:b + 1].max() - max(u[s], u[e])) for s, e, a, b in cands])  # torso lengths
    travel = np.array([np.linalg.norm(root[first + e] - root[first + s]) / torso[first + s] for s, e, a, b in cands])
    big = amp >= min_amplitude
    full = big & (amp >= 0.5 * np.median(amp[big])) if big.any() else big
    seen = np.array([obs[s:e + 1].mean() >= 0.5 for s, e, a, b in cands], dtype=bool)
    in_place = travel <= max_travel
    keep = full & seen & in_place
    reps = [(int(first + s), int(first + e)) for (s, e, a, b), k in zip(cands, keep) if k]

    if len(reps) >= min_reps:
        starts = np.array([s for s, _ in reps])
        period = float(np.median(np.diff(starts)) / fps)
        return RepCount(len(reps), reps, period,
                        f"{len(reps)} repetitions, one every {period:.1f} s")
    period = lag / fps
    n_moving = int((full & seen).sum())
    if n_moving >= min_reps and (full & seen & ~in_place).sum() > n_moving / 2:
        return RepCount(0, [], period, "no repetitions found: the athlete walks across the frame "
                        f"(the body travels {np.median(travel[full & seen]):.1f} torso lengths per cycle)")
    if len(reps) == 1:
        return RepCount(0, [], None, "no repetitions found: one movement, not repeated")
    return RepCount(0, [], None, "no repetitive movement")
