"""Time alignment of several cameras filming one performance (3D athlete tracking, Intel 3DAT).

Two signals per camera, each cross-correlated between cameras after resampling to a common rate
(the cameras may run at different frame rates):

  motion    "moment of snap": dense optical flow (Farneback) between consecutive frames, downscaled
            to `width` px, averaged into one motion-energy value per frame. Little moves before the
            performance and a lot during it, and the same moments (a take-off, a landing, a step)
            move every view at once, whatever the angle or crop.
  presence  the athlete's detection / track score per frame, thresholded (0.75 by default, as in
            3DAT): the athlete entering and leaving each view.

Convention: offset_s is the time in B of the moment A shows at its time 0, i.e. t_B = t_A +
offset_s; offset_frames = offset_s * fps_B, so with equal frame rates frame i of A shows the
same moment as frame i + offset_frames of B (in general: frame i * fps_B / fps_A + offset_frames).

Resampling: a camera's per-frame motion energy is accumulated (total motion up to each frame),
the cumulative curve is interpolated on the common time grid (rate = the fastest camera's) and
differentiated again. This keeps the total motion and spreads it evenly over the time a frame
covers, so duplicated frames (a 10 fps source re-timed to 15 fps has every third frame repeated,
with zero flow) do not punch holes into the signal.

Pure numpy + OpenCV; the decoding helpers take file paths.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np


@dataclass
class Alignment:
    offset_s: Optional[float]          # t_B = t_A + offset_s; None if it could not be determined
    offset_frames: Optional[float]     # offset_s * fps_b
    method: str
    confidence: float                  # peak normalised cross-correlation (0..1)
    fps_a: float
    fps_b: float
    rate_hz: float = 0.0               # common rate the signals were compared at
    overlap_s: float = 0.0             # how long both cameras see the aligned moments
    second_best: Optional[float] = None  # next-best correlation peak at least 1 s away (ambiguity)
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("offset_s", "offset_frames", "confidence", "second_best", "overlap_s"):
            if isinstance(d[k], float):
                d[k] = round(d[k], 4)
        return d


# ---------------------------------------------------------------- per-camera signals

def read_frames_gray(path: str | Path, width: int = 160, max_frames: Optional[int] = None) -> tuple[list[np.ndarray], float]:
    """Decode a video to grey frames downscaled to `width` px (aspect kept); returns (frames, fps)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: not a video OpenCV can open")
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames: list[np.ndarray] = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            h, w = img.shape[:2]
            size = (width, max(8, int(round(h * width / w))))
            frames.append(cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA))
    finally:
        cap.release()
    if not 0 < fps < 1000:
        raise ValueError(f"{path}: no usable frame rate")
    if len(frames) < 2:
        raise ValueError(f"{path}: fewer than two decodable frames")
    return frames, float(fps)


def flow_energy(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Mean dense-optical-flow magnitude between consecutive frames [T] (px per frame at the
    downscaled size); energy[0] = 0 (no previous frame)."""
    e = np.zeros(len(frames))
    for t in range(1, len(frames)):
        flow = cv2.calcOpticalFlowFarneback(frames[t - 1], frames[t], None, pyr_scale=0.5, levels=3, winsize=9,
                                            iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
        e[t] = float(np.mean(np.hypot(flow[..., 0], flow[..., 1])))
    return e


def motion_energy(path: str | Path, width: int = 160, max_frames: Optional[int] = None) -> tuple[np.ndarray, float]:
    """(motion energy per frame [T], fps) of a video file."""
    frames, fps = read_frames_gray(path, width, max_frames)
    return flow_energy(frames), fps


def detection_scores(path: str | Path, stride: int = 1, detector=None) -> tuple[np.ndarray, float]:
    """(highest person-detection score per frame [T], fps) with the tracker's BlazePose person
    detector; every `stride`-th frame is run and the score held in between."""
    from services.tracker.detector import PersonDetector

    det = detector or PersonDetector()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: not a video OpenCV can open")
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    scores: list[float] = []
    last = 0.0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if len(scores) % stride == 0:
                last = max((d.score for d in det.detect(img)), default=0.0)
            scores.append(float(last))
    finally:
        cap.release()
    return np.array(scores), fps


# ---------------------------------------------------------------- resampling + correlation

def resample_rate(signal: np.ndarray, fps: float, rate: float, duration_s: Optional[float] = None) -> np.ndarray:
    """Per-frame amounts (frame t covers [(t-1)/fps, t/fps)) -> amounts per sample of a `rate` Hz grid,
    via the cumulative sum (mass-preserving; robust to duplicated frames), then rescaled to per-second."""
    s = np.nan_to_num(np.asarray(signal, dtype=np.float64))
    t_frames = np.arange(len(s)) / fps                      # cumulative reaches C[t] at frame t's time
    cum = np.cumsum(s)
    dur = duration_s if duration_s is not None else t_frames[-1]
    grid = np.arange(0.0, dur + 1e-9, 1.0 / rate)
    c = np.interp(grid, t_frames, cum)
    return np.diff(c, prepend=c[0]) * rate


def resample_hold(signal: np.ndarray, fps: float, rate: float) -> np.ndarray:
    """Per-frame states (e.g. presence) -> the state of the frame on screen at each grid time."""
    s = np.asarray(signal, dtype=np.float64)
    grid = np.arange(0.0, (len(s) - 1) / fps + 1e-9, 1.0 / rate)
    return s[np.clip(np.floor(grid * fps + 1e-6).astype(int), 0, len(s) - 1)]


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return x
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    return np.convolve(np.pad(x, r, mode="edge"), k, mode="valid")


def normalized_xcorr(a: np.ndarray, b: np.ndarray, min_overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of a[i] with b[i + L] over their overlap, for every lag L with at least
    min_overlap samples in common; returns (lags, r) with NaN where undefined (no variance)."""
    from scipy.signal import correlate

    a = np.asarray(a, float)
    b = np.asarray(b, float)
    na, nb = len(a), len(b)
    lags = np.arange(-(na - 1), nb)                         # L: a[i] <-> b[i + L]
    # sums over the overlap i in [max(0, -L), min(na, nb - L))
    lo = np.maximum(0, -lags)
    hi = np.minimum(na, nb - lags)
    n = hi - lo
    ca, ca2 = np.r_[0, np.cumsum(a)], np.r_[0, np.cumsum(a * a)]
    cb, cb2 = np.r_[0, np.cumsum(b)], np.r_[0, np.cumsum(b * b)]
    sa, sa2 = ca[hi] - ca[lo], ca2[hi] - ca2[lo]
    sb, sb2 = cb[hi + lags] - cb[lo + lags], cb2[hi + lags] - cb2[lo + lags]
    sab = correlate(b, a, mode="full", method="auto")       # index k <-> lag k - (na - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        va = sa2 - sa * sa / n
        vb = sb2 - sb * sb / n
        r = cov / np.sqrt(va * vb)
    r[(n < min_overlap) | ~(va > 1e-12 * np.maximum(1, sa2)) | ~(vb > 1e-12 * np.maximum(1, sb2))] = np.nan
    return lags, r


def _best_lag(lags: np.ndarray, r: np.ndarray, rate: float, n_eff: np.ndarray) -> tuple[Optional[float], float, Optional[float]]:
    """(lag in samples, r there, best r of a rival peak at least 1 s away), choosing the lag by
    significance, z = atanh(r) * sqrt(n_eff - 3) (n_eff: independent samples in the overlap):
    a correlation over a short overlap is noisy, and would otherwise win by chance at the far
    ends of the lag range. The lag is refined to a fraction of a sample on a parabola through r."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.arctanh(np.clip(r, -0.999, 0.999)) * np.sqrt(np.maximum(n_eff - 3.0, 0.0))
    if not np.isfinite(z).any() or np.nanmax(z) <= 0:
        return None, 0.0, None
    k = int(np.nanargmax(z))
    peak = float(r[k])
    lag = float(lags[k])
    if 0 < k < len(r) - 1 and np.isfinite(r[k - 1]) and np.isfinite(r[k + 1]):
        den = r[k - 1] - 2 * r[k] + r[k + 1]
        if den < 0:
            lag += float(np.clip(0.5 * (r[k - 1] - r[k + 1]) / den, -0.5, 0.5))
    far = np.abs(lags - lags[k]) > rate
    rival = np.where(far & np.isfinite(z), z, -np.inf)
    second = float(r[int(np.argmax(rival))]) if np.isfinite(rival).any() and rival.max() > -np.inf else None
    return lag, peak, second


def _min_overlap(na: int, nb: int, rate: float, min_overlap_s: float, min_overlap_frac: float) -> int:
    return max(3, min(int(min_overlap_s * rate), int(min_overlap_frac * min(na, nb))) if min(na, nb) > 3 else 3)


def align_signals(sig_a: np.ndarray, fps_a: float, sig_b: np.ndarray, fps_b: float, method: str = "motion",
                  rate: Optional[float] = None, min_overlap_s: float = 3.0, min_overlap_frac: float = 0.3,
                  threshold: float = 0.75, highpass_s: float = 0.25) -> Alignment:
    """Offset between two cameras from their per-frame signals (see the module doc for the convention).

    motion: motion energy per frame (flow_energy), resampled, smoothed over half a frame of the
    slower camera and high-passed (minus its Gaussian smoothing over highpass_s): how much moves
    in a view depends on the view (how many people, how close), the timing of the changes does
    not. presence: detection / track scores per frame, thresholded at `threshold`. The lag is the
    most significant normalised cross-correlation peak with at least min(min_overlap_s,
    min_overlap_frac x the shorter) in common (_best_lag)."""
    rate = float(rate or max(fps_a, fps_b))
    if method == "motion":
        a = resample_rate(sig_a, fps_a, rate)
        b = resample_rate(sig_b, fps_b, rate)
        sigma = 0.5 * rate / min(fps_a, fps_b)              # half a frame of the slower camera
        a, b = gaussian_smooth(a, sigma), gaussian_smooth(b, sigma)
        if highpass_s > 0:
            a, b = a - gaussian_smooth(a, highpass_s * rate), b - gaussian_smooth(b, highpass_s * rate)
    elif method == "presence":
        a = resample_hold(np.asarray(sig_a) >= threshold, fps_a, rate)
        b = resample_hold(np.asarray(sig_b) >= threshold, fps_b, rate)
    else:
        raise ValueError(f"unknown method {method!r}: motion | presence")
    lags, r = normalized_xcorr(a, b, _min_overlap(len(a), len(b), rate, min_overlap_s, min_overlap_frac))
    n = np.minimum(len(a), len(b) - lags) - np.maximum(0, -lags)
    lag, peak, second = _best_lag(lags, r, rate, n / (rate / min(fps_a, fps_b)))
    details = {}
    if method == "presence":
        details = {"threshold": threshold, "present_a": float(np.mean(a)), "present_b": float(np.mean(b)),
                   "events_a": _events(a, rate), "events_b": _events(b, rate)}
    if lag is None:
        return Alignment(None, None, method, 0.0, fps_a, fps_b, rate, 0.0, None, details)
    off = lag / rate
    overlap = (min(len(a), len(b) - lag) - max(0.0, -lag)) / rate
    return Alignment(off, off * fps_b, method, float(max(0.0, peak)), fps_a, fps_b, rate, float(max(0.0, overlap)),
                     second, details)


def _events(x: np.ndarray, rate: float) -> list[dict]:
    d = np.diff(np.r_[x[0], x])
    return [{"t_s": round(i / rate, 3), "event": "enter" if d[i] > 0 else "leave"} for i in np.flatnonzero(d != 0)]


def align_videos(path_a: str | Path, path_b: str | Path, method: str = "motion", width: int = 160,
                 threshold: float = 0.75, stride: int = 1) -> Alignment:
    """`coach align`: the offset between two video files (pure local computation)."""
    if method == "motion":
        (ea, fa), (eb, fb) = motion_energy(path_a, width), motion_energy(path_b, width)
    elif method == "presence":
        from services.tracker.detector import PersonDetector

        det = PersonDetector()
        (ea, fa), (eb, fb) = detection_scores(path_a, stride, det), detection_scores(path_b, stride, det)
    else:
        raise ValueError(f"unknown method {method!r}: motion | presence")
    return align_signals(ea, fa, eb, fb, method, threshold=threshold)


# ---------------------------------------------------------------- several cameras

def common_timeline(pairwise: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Offsets of cameras 1..N against camera 0 (t_c = t_0 + off_c) -> each camera's start on a
    common timeline whose t = 0 is the earliest camera start: camera c's frame j is at common time
    start_c + j / fps_c. Camera 0's offset is 0 by definition; unknown offsets stay None."""
    offs = [0.0, *pairwise]
    starts = [None if o is None else -o for o in offs]      # camera c's time 0 is camera 0's time -off_c
    known = [s for s in starts if s is not None]
    first = min(known)
    return [None if s is None else s - first for s in starts]


def best_view(confidences: Sequence[np.ndarray], fps: Sequence[float], starts_s: Sequence[Optional[float]],
              rate: float, smooth_s: float = 0.5) -> tuple[list[Optional[int]], list[dict]]:
    """Which camera shows the athlete best at each step of the common timeline (`rate` Hz):
    the highest mean keypoint confidence among the cameras with a frame there; None where no camera
    sees a pose. Each camera's confidence is first averaged over smooth_s (centred, its own frames;
    frames without a pose count as 0) so the choice does not flicker from frame to frame.
    Returns (camera per step, segments [{camera, start_s, end_s}])."""
    smoothed = []
    for conf, f in zip(confidences, fps):
        c = np.asarray(conf, dtype=np.float64)
        w = int(round(smooth_s * f)) | 1 if smooth_s > 0 else 1
        if w > 1 and len(c):
            k = np.ones(w) / w
            m = np.convolve(np.pad(np.nan_to_num(c), w // 2, mode="edge"), k, mode="valid")
            c = np.where(np.isfinite(c), m, np.nan)      # a frame without a pose never wins
        smoothed.append(c)
    confidences = smoothed
    ends = [None if s is None else s + len(c) / f for c, f, s in zip(confidences, fps, starts_s)]
    span = max((e for e in ends if e is not None), default=0.0)
    n = int(np.floor(span * rate + 1e-9))
    best: list[Optional[int]] = []
    for i in range(n):
        t = i / rate
        top, top_c = None, 0.0
        for cam, (conf, f, s) in enumerate(zip(confidences, fps, starts_s)):
            if s is None:
                continue
            j = int(np.floor((t - s) * f + 1e-6))
            if 0 <= j < len(conf) and np.isfinite(conf[j]) and conf[j] > top_c:
                top, top_c = cam, float(conf[j])
        best.append(top)
    segments: list[dict] = []
    for i, cam in enumerate(best):
        if segments and segments[-1]["camera"] == cam:
            segments[-1]["end_s"] = round((i + 1) / rate, 4)
        else:
            segments.append({"camera": cam, "start_s": round(i / rate, 4), "end_s": round((i + 1) / rate, 4)})
    return best, segments
