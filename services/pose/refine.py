"""Temporal refinement of 2D keypoint tracks: the seam the spatial-temporal relation network (STRN, strn.py) fills.

A Refiner maps raw per-frame BlazePose keypoints [T, 33, 3] (x_px, y_px, confidence; NaN rows
where no pose) of one athlete to refined keypoints of the same shape, in original pixels.
It also receives the tracker boxes, which a learned refiner can use for scale normalisation.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Refiner(Protocol):
    name: str

    def refine(self, keypoints_px: np.ndarray, present: np.ndarray, boxes_px: Sequence[np.ndarray | None]) -> np.ndarray:
        """[T, 33, 3] -> [T, 33, 3]; must keep NaN rows of absent frames NaN and never invent NaN elsewhere."""
        ...


class IdentityRefiner:
    """No refinement: returns the input unchanged (the baseline every refiner is compared to)."""

    name = "none"

    def refine(self, keypoints_px: np.ndarray, present: np.ndarray, boxes_px: Sequence[np.ndarray | None]) -> np.ndarray:
        return keypoints_px


class OneEuroRefiner:
    """One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) on every x and y track independently.

    A low-pass filter whose cutoff rises with speed: fc = min_cutoff + beta * |dx/dt| / size, so a
    still joint is smoothed hard (less jitter) and a fast one lightly (less lag).
      min_cutoff  Hz, cutoff at rest: lower = smoother but laggier.
      beta        speed coefficient; speeds are measured in person sizes per second (px/s divided
                  by the mean of the pose's bounding-box width and height), so it is scale-free.
      d_cutoff    Hz, cutoff of the low-pass on the speed estimate.
      freq_hz     frame rate of the sequence (sample interval = 1 / freq_hz).
    A NaN sample (absent frame or missing joint) resets that coordinate's filter: the next valid
    sample starts it again unfiltered, so nothing is averaged across a gap. Confidence passes through.
    """

    name = "one_euro"

    def __init__(self, freq_hz: float = 30.0, min_cutoff: float = 1.0, beta: float = 10.0, d_cutoff: float = 1.0) -> None:
        if freq_hz <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("OneEuroRefiner needs freq_hz, min_cutoff, d_cutoff > 0 and beta >= 0")
        self.freq_hz, self.min_cutoff, self.beta, self.d_cutoff = freq_hz, min_cutoff, beta, d_cutoff

    @staticmethod
    def _scale(xy: np.ndarray) -> float:
        """Person size in px: mean of the keypoints' bounding-box width and height (as MediaPipe's
        own landmark smoother does), so beta means the same for an 80 px and an 800 px athlete."""
        ok = np.isfinite(xy).all(axis=1)
        if ok.sum() < 2:
            return 1.0
        ext = xy[ok].max(axis=0) - xy[ok].min(axis=0)
        return max(float(ext.mean()), 1.0)

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def refine(self, keypoints_px: np.ndarray, present: np.ndarray, boxes_px: Sequence[np.ndarray | None]) -> np.ndarray:
        kp = np.asarray(keypoints_px)
        out = kp.copy()
        x = kp[..., :2].astype(np.float64)  # [T, 33, 2]; all coordinates filtered in parallel
        present = np.asarray(present, dtype=bool)
        dt = 1.0 / self.freq_hz
        a_d = self._alpha(self.d_cutoff, dt)
        x_hat = np.full(x.shape[1:], np.nan)  # [33, 2] filtered position; NaN = filter (re)starts
        dx_hat = np.zeros(x.shape[1:])  # [33, 2] filtered speed, px/s
        for t in range(x.shape[0]):
            if not present[t]:  # absent frame: output untouched, every filter restarts after it
                x_hat[:] = np.nan
                continue
            xt = x[t]
            valid = np.isfinite(xt)
            running = valid & np.isfinite(x_hat)  # filters that have a previous sample
            prev = np.where(running, x_hat, 0.0)
            # Speed from the previous *filtered* value, as in the paper; 0 when (re)starting.
            dx_hat = np.where(running, dx_hat + a_d * ((np.where(valid, xt, 0.0) - prev) / dt - dx_hat), 0.0)
            a = self._alpha(self.min_cutoff + self.beta * np.abs(dx_hat) / self._scale(xt), dt)
            # running: low-pass step; otherwise take the sample as is (NaN stays NaN = reset)
            x_hat = np.where(running, prev + a * (np.where(valid, xt, 0.0) - prev), xt)
            out[t, :, :2] = x_hat
        return out


def _strn(**params: Any) -> Refiner:
    """The STRN (services/pose/strn.py): imported on demand, torch is slow to import."""
    try:
        from services.pose.strn import StrnRefiner
    except ModuleNotFoundError as exc:  # an image without torch
        raise RuntimeError(f"refiner 'strn' needs torch ({exc}); install it (the pose-gpu image has it) "
                           "or set COACH_REFINER=one_euro or none") from exc

    return StrnRefiner(**params)


_REFINERS: dict[str, Callable[..., Refiner]] = {
    IdentityRefiner.name: IdentityRefiner, OneEuroRefiner.name: OneEuroRefiner, "strn": _strn,
}


def context_frames(refiner: Refiner) -> int:
    """Frames of the previous clip's raw poses worth prepending to a clip (see refine_clip): the span of
    one STRN window at the refiner's frame rate (T frames, dilated above the training rate); 0 for
    refiners that gain nothing from it (none; One-Euro restarts per clip as it always has)."""
    cfg = getattr(refiner, "cfg", None)
    if cfg is None:
        return 0
    fps = getattr(refiner, "freq_hz", None)
    return cfg.T * (max(1, round(fps / cfg.fps)) if fps else 1)


def refine_clip(refiner: Refiner, keypoints_px: np.ndarray, present: np.ndarray,
                boxes_px: Sequence[np.ndarray | None],
                context: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What the pose worker does to one clip's raw BlazePose poses: left/right swaps undone over the clip
    (services/pose/swaps.py), then the refiner. -> (refined [T, 33, 3], swapped [T, 2] (upper, lower)).

    context: (raw keypoints [C, 33, 3], present [C]) of the frames just before the clip (the previous
    clip's tail, as BlazePose gave them), or None. With it, swaps and refinement see those frames too,
    so the clip's first frames are refined as if the clip boundary were not there; only the clip's own
    frames are returned. The evaluation (strn_train.evaluate) calls this same function."""
    from services.pose.swaps import fix_swaps

    kps = np.asarray(keypoints_px, dtype=np.float32)
    present = np.asarray(present, dtype=bool)
    boxes = list(boxes_px)
    c = 0
    if context is not None and len(context[0]):
        c = len(context[0])
        kps = np.concatenate([np.asarray(context[0], np.float32), kps])
        present = np.concatenate([np.asarray(context[1], bool), present])
        boxes = [None] * c + boxes
    fixed, swapped = fix_swaps(kps)
    out = refiner.refine(fixed.astype(np.float32), present, boxes)
    return out[c:], swapped[c:]


def make_refiner(name: str, **params: Any) -> Refiner:
    """'none' | 'one_euro' | 'strn'; params go to the refiner's constructor (e.g. freq_hz=video fps,
    which both one_euro and strn take; strn also weights=, device=)."""
    try:
        cls = _REFINERS[name]
    except KeyError:
        raise ValueError(f"unknown refiner {name!r}; choices: {', '.join(sorted(_REFINERS))}") from None
    return cls(**params)
