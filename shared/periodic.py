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
     torso lengths) with the largest product of its range and the highest peak of its normalised
     autocorrelation at a lag in [min_period_s, half the clip];
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

Whole-frame pose follows whoever is most prominent: the clip is first cut where the hip midpoint
jumps more than a torso length between frames or the torso changes length by > 40% (`tracks`),
and each piece is counted on its own.

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
    period_s: float | None = None                              # median start-to-start interval; None when count = 0
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

    Returns (X [T,2J+2] joint x,y relative to the hip midpoint in torso lengths, NaN where unseen,
             then the hip midpoint's offset from its running median (same unit),
             root [T,2] hip midpoint px, torso [T] px (running median), posed [T] bool).
    """
    P = np.asarray(kps, dtype=np.float64)[:, _B]  # [T,13,3]
    xy = np.where((P[..., 2:3] >= min_visibility) & np.isfinite(P[..., :2]), P[..., :2], np.nan)  # [T,13,2]
    root = (xy[:, _LH] + xy[:, _RH]) / 2  # [T,2]
    torso_now = np.linalg.norm((xy[:, _LS] + xy[:, _RS]) / 2 - root, axis=1)  # [T]
    posed = np.isfinite(root).all(1) & np.isfinite(torso_now) & (torso_now > 1e-6)
    T = len(P)
    # running median over ~2 s (gaps interpolated first): bending forward shortens the 2D torso for a
    # moment, the camera distance does not
    torso = median_filter(_fill(np.where(posed, torso_now, np.nan)[:, None])[:, 0], size=2 * max(1, int(round(fps))) + 1, mode="nearest")
    rel = (xy - root[:, None]) / torso[:, None, None]  # [T,13,2] torso lengths
    rel[~posed] = np.nan
    seen = np.isfinite(rel).all(2)[posed].mean(0) if posed.any() else np.zeros(len(BODY))  # [13]
    keep = seen >= min_seen  # a data set (or a camera) may lack some joints: use those it has
    # the root's own bounce (jumps, a squat's hip travel) around its ~5 s running median, in torso lengths:
    # a jumping jack hardly changes the pose relative to the hips; a walk's steady travel is removed
    slow = median_filter(_fill(np.where(posed[:, None], root, np.nan)), size=(2 * max(1, int(round(2.5 * fps))) + 1, 1), mode="nearest")
    bounce = np.where(posed[:, None], (root - slow) / torso[:, None], np.nan)  # [T,2]
    X = np.concatenate([rel[:, keep].reshape(T, -1), bounce], axis=1)  # [T, 2J+2]
    return X, root, torso, posed


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
        # the rest before / after, at most as long as the excursion itself (a long still stretch or
        # the next movement at the clip's end is not part of this cycle)
        prev_end = max(ex[i - 1][1] if i else 0, a - (b - a))
        next_start = min(ex[i + 1][0] if i + 1 < len(ex) else len(u), b + (b - a))
        rest_before, rest_after = u[prev_end:a], u[b:next_start]
        s = prev_end + int(np.nonzero(rest_before <= rest_before.min() + 0.05)[0][-1])
        e = b + int(np.nonzero(rest_after <= rest_after.min() + 0.05)[0][0])
        out.append((s, e, a, b))
    return out


def tracks(kps: np.ndarray, max_jump: float = 1.0, min_visibility: float = 0.3, k: int = 5) -> list[tuple[int, int]]:
    """Pieces [a, b) of kps [T,33,3] without a change of person: whole-frame pose follows whoever is
    most prominent, so where the hip midpoint jumps more than max_jump torso lengths between posed
    frames, or the median torso length over the next k posed frames differs by more than 40% from
    that over the previous k, a new piece starts (medians, so that keypoint jitter does not cut)."""
    P = np.asarray(kps, dtype=np.float64)
    xy = np.where((P[..., 2:3] >= min_visibility), P[..., :2], np.nan)
    i = LANDMARK_INDEX
    root = (xy[:, i["left_hip"]] + xy[:, i["right_hip"]]) / 2  # [T,2]
    torso = np.linalg.norm((xy[:, i["left_shoulder"]] + xy[:, i["right_shoulder"]]) / 2 - root, axis=1)  # [T]
    idx = np.nonzero(np.isfinite(root).all(1) & (torso > 1e-6))[0]
    score = np.zeros(len(idx))  # > 1 = a change of person between idx[j-1] and idx[j]
    for j in range(1, len(idx)):
        bef, aft = idx[max(0, j - k):j], idx[j:j + k]
        tb, ta = np.median(torso[bef]), np.median(torso[aft])
        jump = np.linalg.norm(root[idx[j]] - root[idx[j - 1]]) / max(tb, ta) / max_jump  # frame to frame
        score[j] = max(jump, abs(np.log(ta / tb)) / np.log(1.4))
    cuts = [0]
    for j in range(1, len(idx)):  # one cut per run of flagged positions, at its strongest
        if score[j] > 1 and score[j] >= score[max(0, j - k):j + k + 1].max():
            cuts.append(int(idx[j]))
    cuts.append(len(P))
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


# when no piece has repetitions, the finding of the most telling piece is reported
_TELLING = ("walks", "one movement", "no repetitive movement", "too few frames")


def count_repetitions(kps: np.ndarray, fps: float, **kw) -> RepCount:
    """Count repetitions in kps [T,33,3] (x_px, y_px, visibility; NaN rows = no pose) at fps.

    Counted per piece between changes of person (`tracks`); keyword arguments go to `count_piece`."""
    kps = np.asarray(kps, dtype=np.float64)
    found = [(a, count_piece(kps[a:b], fps, **kw)) for a, b in tracks(kps)]
    counted = [(a, rc) for a, rc in found if rc.count]
    if not counted:
        if not found:
            return RepCount(0, finding=f"no repetitions found: too few frames with a pose (0 of {len(kps)})")
        rank = lambda rc: next((k for k, w in enumerate(_TELLING) if w in rc.finding), len(_TELLING))  # noqa: E731
        best = min((rc for _, rc in found), key=rank)
        if "too few frames" in best.finding:  # say it for the whole clip, not for one piece
            n = int(sum(np.isfinite(kps[:, LANDMARK_INDEX["left_hip"], 0])))
            best = RepCount(0, finding=f"no repetitions found: too few frames with a pose ({n} of {len(kps)})")
        return best
    reps = [(a + s, a + e) for a, rc in counted for s, e in rc.reps]
    periods = [rc.period_s for _, rc in counted for _ in rc.reps]
    period = float(np.median(periods))
    return RepCount(len(reps), reps, period, f"{len(reps)} repetitions, one every {period:.1f} s")


def count_piece(kps: np.ndarray, fps: float, *, min_amplitude: float = 0.4, max_travel: float = 0.5,
                enter: float = 0.5, exit_: float = 0.25, min_period_s: float = 0.4, min_reps: int = 2,
                min_posed_s: float = 1.0) -> RepCount:
    """Count repetitions in one person's kps [T,33,3] (steps 1-6 of the module doc)."""
    T = len(kps)
    X, root, torso, posed = body_trajectories(kps, fps)  # X [T,2J+2]
    if posed.sum() < max(10, min_posed_s * fps) or X.shape[1] < 6:
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
    best = None  # (score, component, lag)
    for c in range(Z.shape[1]):
        rng = np.percentile(Z[obs, c], 95) - np.percentile(Z[obs, c], 5)
        if rng < min_amplitude:
            continue
        lag, r = _autocorr_peak(Z[:, c], lo_lag, hi_lag)
        # periodicity x range: a faint but regular component (a gesture, a replayed jitter) does not
        # beat the movement that dominates the clip unless that one is far less periodic
        if lag is not None and r > 0 and (best is None or r * rng > best[0]):
            best = (r * rng, c, lag)
    amp0 = float(np.percentile(Z[obs, 0], 95) - np.percentile(Z[obs, 0], 5))
    if best is None and amp0 < min_amplitude:
        return RepCount(0, finding=f"no repetitive movement: the pose changes by only {amp0:.2f} torso lengths")
    if best is None:  # moving but without an autocorrelation peak (e.g. two cycles of unequal length): let the cycles decide
        best = (0.0, 0, None)
    _, c, _ = best
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
    root = _fill(root)  # [T,2] also where the pose was missed
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
    # the clip as a whole: a root that keeps travelling (median net displacement over 2 s, in torso
    # lengths per second) is someone walking, whatever the cycles above made of it
    w = max(1, int(2 * fps))
    ok = posed[:-w] & posed[w:]
    speed = float(np.median(np.linalg.norm(root[w:] - root[:-w], axis=1)[ok] / torso[:-w][ok]) / 2) if ok.any() else 0.0
    n_moving = int((full & seen).sum())
    if speed > 0.5 and not reps:
        return RepCount(0, [], None, "no repetitions found: the athlete walks across the frame "
                        f"({speed:.1f} torso lengths per second)")
    if n_moving >= min_reps and (full & seen & ~in_place).sum() > n_moving / 2:
        return RepCount(0, [], None, "no repetitions found: the athlete walks across the frame "
                        f"(the body travels {np.median(travel[full & seen]):.1f} torso lengths per cycle)")
    if len(reps) == 1:
        return RepCount(0, [], None, "no repetitions found: one movement, not repeated")
    return RepCount(0, [], None, "no repetitive movement")
