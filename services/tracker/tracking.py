"""Athlete tracking: detection, fast local tracking, verification, re-detection; everyone else too.

Section 4 of the AI Coach paper, with parts that run on a CPU and ship with their weights:

* detection - BlazePose's person detector (detector.py) on the first frame(s);
* tracking - an OpenCV correlation-filter tracker (KCF by default, CSRT optional) on every frame,
  with a constant-velocity Kalman filter on the box centre (motion gating, prediction through
  occlusion and absence);
* verification - an online-trained binary classifier (the paper's MDNet-style verifier, here a
  kernel ridge regression on HOG + colour-histogram features, trained on the athlete's boxes vs
  boxes around it and the other people) scores the tracker's box every frame; when the score x
  motion agreement drops (or every `verify_interval` frames) the detector runs once on a window
  around the predicted position, and a detection there that the classifier accepts re-centres
  (and re-scales) the local tracker; otherwise the tracker's own box must convince the classifier;
* background check - with a fixed camera, a background subtractor (`ForegroundModel`) tells
  whether the box is on something that moves; a box left on the background (KCF stays on a
  lamp post the athlete walked behind) is only kept if a detection confirms it;
* re-detection - if verification fails, the athlete is reported absent (None) and the detector
  searches the whole image (at the athlete's scale) for a detection the classifier accepts,
  gated by the Kalman prediction while it is still meaningful; right after a loss, a cheap local
  search around the prediction runs every frame (occlusion: the athlete reappears nearby).
* other people - everyone detected (first frame, verification windows, re-detections) is
  followed with a cheap template tracker under a stable track id: reported per frame
  (`FrameTrack.people`, `AthleteTracker.tracks()`), used as hard negatives for the classifier and
  to exclude detections that are somebody else during verification / re-detection.

Athlete selection: everybody detected in the first frame with a person is followed through a
selection window of frames; the one that moved most is the athlete (or the one matching a
user-given `target_bbox_px`). Frames are buffered during the window, then tracked properly.

`TrackerConfig(verify=False, redetect=False)` is the plain tracker: the local tracker alone with
its cheap confidence (colour similarity x motion agreement), the baseline of `coach tracker eval`.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from .detector import Detection, DetectorConfig, PersonDetector

log = logging.getLogger(__name__)


class NoPersonFound(RuntimeError):
    """Nobody was detected in the video (raised by AthleteTracker.finish(), or by push() once
    `max_search_frames` frames went by without a detection, when that limit is set)."""


@dataclass
class TrackerConfig:
    selection_window: int = 15        # frames over which candidates are followed to pick the one that moves most
    # "kcf": the whole tracker runs faster than real time on one core (docs/tracker.md);
    # "csrt": estimates scale itself but costs ~25 ms a frame.
    local_tracker: str = "kcf"
    verify: bool = True               # False: no verification (local tracker + its own confidence only)
    redetect: bool = True             # False: no re-detection once lost
    track_others: bool = True         # follow the other people too (ids, hard negatives, exclusion)
    # Confidence = verifier score (0..1) x motion agreement with the Kalman prediction.
    verify_below: float = 0.5         # under this confidence a detector pass verifies the track
    accept_score: float = 0.4         # without a confirming detection, the tracker's box passes at this verifier score
    detect_accept: float = 0.35       # a local detection is the athlete at this verifier score...
    redetect_accept: float = 0.55     # ...a detection anywhere in the image at this one
    exclusive_score: float = 0.7      # a detection on another tracked person needs this score to be the athlete
    # The verifier's own candidate search (no detection) needs this score: the best of ~100 windows
    # is biased upwards. Tuning sequences, ground-truth-trained verifier: at 0.65 the athlete is
    # found in 91% of searches around it, a search elsewhere accepts something 6% of the time.
    search_accept: float = 0.65
    learn_above: float = 0.65         # positives are learnt from tracked boxes this confident, or from accepted detections
    # Static camera: a box must be on something that moves or has moved (background subtraction,
    # `ForegroundModel`). Under `fg_min` foreground for `fg_frames` frames in a row, the local
    # tracker's box is on the background (vtest.avi: KCF left on the lamp post the athlete walked
    # behind) and only a detection can keep it; the verifier alone cannot. Not while a detection
    # has confirmed the athlete where the box now rests, within `fg_confirm_frames` (an athlete
    # standing still, or exercising in place, is part of the background model from the start).
    foreground: bool = True
    fg_min: float = 0.2
    fg_frames: int = 3
    fg_confirm_frames: int = 30
    gate_sigmas: float = 3.5          # Kalman gate (Mahalanobis distance) for detections near the prediction
    # Nobody teleports: a detection n frames after the athlete was last seen must lie within
    # reach_slack + n x max(2 x their speed, max_step) box heights of where they were. The Kalman
    # gate alone widens faster (vtest.avi: a walker who left at the right edge was "found" 300 px
    # away 5 frames later, another man in black).
    max_step: float = 0.25
    reach_slack: float = 1.0
    verify_scale: float = 1.4         # a confirming detection's height is within this factor of the box's
    verify_interval: int = 10         # also verify every N frames (slow drift, KCF's fixed scale); 0 = on low confidence only
    doubt_interval: int = 3           # confidence in [accept_score, verify_below): verify at most every N frames
    verify_context: float = 2.0       # local verification window = this x the box's long side
    redetect_interval: int = 5        # while lost, whole-image re-detection every N frames...
    redetect_interval_long: int = 10  # ...every M frames once lost for more than 30 frames
    local_search_frames: int = 15     # while lost, also one local detector pass per frame around the prediction, for this long
    learn_interval: int = 2           # add a positive (+ negatives around it) to the verifier every N confident frames
    refit_interval: int = 5           # retrain the verifier at most every N frames
    accel_sigma: float = 0.08         # Kalman process noise: acceleration, box heights / frame^2
    motion_sigma: float = 0.25        # plain tracker's confidence: box off the prediction by this many box heights -> x0.6
    search_interval: int = 5          # before anyone is found, try detection every N frames
    # push() raises NoPersonFound after this many frames with nobody; None = only finish() does.
    max_search_frames: int | None = None
    model_lr: float = 0.05            # learning rate of the plain tracker's running colour model
    max_others: int = 12              # other people followed at most
    local_pad: tuple[float, float] = (1.0, 1.0)        # the athlete's local tracker runs on the box widened by this (w, h)
    candidate_pad: tuple[float, float] = (1.25, 1.05)  # selection-window candidates: see LocalTracker
    detector: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass
class PersonBox:
    """Someone other than the athlete in one frame."""
    track_id: int
    bbox_px: np.ndarray          # (4,) x, y, w, h
    score: float                 # template-match score 0..1 (1 = just detected)


@dataclass
class FrameTrack:
    index: int
    bbox_px: np.ndarray | None   # (4,) x,y,w,h floats in original pixels; None when the athlete is absent
    score: float                 # tracking confidence 0..1
    state: str                   # "detected" | "tracked" | "verified" | "redetected" | "lost"
    track_id: int | None = None  # the athlete's track id (AthleteChoice.track_id)
    people: list[PersonBox] = field(default_factory=list)   # the other people followed in this frame


@dataclass
class AthleteChoice:
    track_id: int
    reason: str                  # e.g. "moved most (312 px over 15 frames)" or "matched target_bbox (IoU 0.82)"
    candidates: list[dict]       # each {"track_id", "bbox_px", "motion_px", "score"} (+ "iou" with a target_bbox_px)


# ---------------------------------------------------------------- small helpers

def iou_xywh(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return float(inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9))


def centre(b: np.ndarray) -> np.ndarray:
    return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2], dtype=np.float64)


def clip_box(b: np.ndarray, wid: int, hgt: int) -> np.ndarray | None:
    """Clip x,y,w,h to the frame; None if almost nothing is left."""
    x1, y1 = max(float(b[0]), 0.0), max(float(b[1]), 0.0)
    x2, y2 = min(float(b[0] + b[2]), float(wid)), min(float(b[1] + b[3]), float(hgt))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


N_BINS = 136    # 16 hue x 8 saturation bins for coloured pixels + 8 value bins for grey/dark ones


def colour_bins(patch_bgr: np.ndarray) -> np.ndarray:
    """(h,w,3) BGR -> (h,w) bin index in 0..135.

    Chromatic pixels go to 16x8 hue-saturation bins; dark or grey pixels (black jackets,
    jeans in shade: their hue is noise) to 8 value bins.
    """
    hsv = cv2.cvtColor(patch_bgr, cv2.COLOR_BGR2HSV).astype(np.int32)   # H in 0..179
    hh, ss, vv = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    chroma = (ss > 50) & (vv > 50)
    return np.where(chroma, (hh * 16 // 180) * 8 + ss * 8 // 256, 128 + vv * 8 // 256)


def _crop(frame: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    hgt, wid = frame.shape[:2]
    x1, y1 = int(round(max(x1, 0))), int(round(max(y1, 0)))
    x2, y2 = int(round(min(x2, wid))), int(round(min(y2, hgt)))
    return frame[y1:max(y2, y1), x1:max(x2, x1)]


class AppearanceModel:
    """Background-weighted colour histograms of a person, upper and lower body.

    Descriptor: the inner 60% of the box width (edges are background), 5..95% of its height,
    split in two at the hips (clothes on top vs legs) -> (2, 136) histograms. Bins that are common in the ring
    around the first box (road, grass) are down-weighted (Comaniciu's background-weighted
    histogram): without that, two people on the same road look alike. Similarity is the
    Bhattacharyya coefficient, 0 (disjoint colours) .. 1 (same), taken as the better of the
    first-frame model (identity anchor) and a slowly updated one (light / pose changes).
    """

    def __init__(self, frame: np.ndarray, bbox: np.ndarray, lr: float = 0.05):
        self.lr = lr
        self.weights = self._background_weights(frame, bbox)      # (136,)
        d = self.describe(frame, bbox)
        self.first = d if d is not None else np.full((2, N_BINS), 1.0 / N_BINS)
        self.running = self.first.copy()

    @staticmethod
    def _background_weights(frame: np.ndarray, bbox: np.ndarray) -> np.ndarray:
        x, y, w, h = (float(v) for v in bbox)
        rx1, ry1 = max(x - w, 0.0), max(y - 0.3 * h, 0.0)           # ring: box grown 3x wide, 1.6x high
        ring = _crop(frame, rx1, ry1, x + 2 * w, y + 1.3 * h)
        if ring.size == 0:
            return np.ones(N_BINS)
        bins = colour_bins(ring)
        mask = np.ones(bins.shape, bool)
        ix1, iy1 = int(round(max(x, 0) - round(rx1))), int(round(max(y, 0) - round(ry1)))
        mask[max(iy1, 0):max(iy1 + int(h), 0), max(ix1, 0):max(ix1 + int(w), 0)] = False
        if not mask.any():
            return np.ones(N_BINS)
        bg = np.bincount(bins[mask].ravel(), minlength=N_BINS) / mask.sum()
        return 1.0 / (1.0 + bg * N_BINS)          # a bin at the uniform frequency weighs 0.5

    def describe(self, frame: np.ndarray, bbox: np.ndarray) -> np.ndarray | None:
        """(2, 136) weighted, normalised histograms; None if the box is (nearly) outside the frame."""
        x, y, w, h = (float(v) for v in bbox)
        patch = _crop(frame, x + 0.2 * w, y + 0.05 * h, x + 0.8 * w, y + 0.95 * h)
        if patch.shape[0] < 4 or patch.shape[1] < 2:
            return None
        bins = colour_bins(patch)
        split = min(max(bins.shape[0] // 2, 1), bins.shape[0] - 1)   # hips: half-way down the box
        out = np.zeros((2, N_BINS))
        for k, part in enumerate((bins[:split], bins[split:])):
            hist = np.bincount(part.ravel(), minlength=N_BINS) * self.weights
            out[k] = hist / max(hist.sum(), 1e-9)
        return out

    @staticmethod
    def compare(a: np.ndarray | None, b: np.ndarray | None) -> float:
        if a is None or b is None:
            return 0.0
        return float(np.sqrt(a * b).sum(axis=1).mean())

    def similarity(self, frame: np.ndarray, bbox: np.ndarray) -> float:
        d = self.describe(frame, bbox)
        return max(self.compare(d, self.first), self.compare(d, self.running))

    def update(self, frame: np.ndarray, bbox: np.ndarray) -> None:
        d = self.describe(frame, bbox)
        if d is not None:
            self.running = (1 - self.lr) * self.running + self.lr * d


def _opencv_tracker(kind: str) -> cv2.Tracker:
    if kind == "csrt":
        return cv2.TrackerCSRT_create()
    if kind == "kcf":
        p = cv2.TrackerKCF_Params()
        p.detect_thresh = 0.1   # default 0.5 gives up after a few frames on ~40x90 px people
        return cv2.TrackerKCF_create(p)
    raise ValueError(f"unknown local tracker {kind!r} (csrt | kcf)")


class LocalTracker:
    """An OpenCV tracker run on the person's box widened by `pad` (e.g. w x1.25, h x1.05); the
    box reported is the tight one. Selection-window candidates are followed on widened boxes: a
    tight box leaves a correlation filter too little to hold on to (vtest.avi's woman walking
    left, 31x84 px: KCF gives up after 9 frames on her tight box, follows her on the widened
    one). The athlete's tracker is not widened (`TrackerConfig.local_pad`): it is re-centred by
    verification, and the margin pulls it onto people who cross (tuning F-score 0.52 -> 0.48 with it)."""

    def __init__(self, kind: str, pad: tuple[float, float] = (1.0, 1.0)):
        self.kind, self.pad = kind, pad

    def init(self, frame: np.ndarray, bbox) -> None:
        x, y, w, h = (float(v) for v in bbox)
        self.size = (w, h)
        pw, ph = w * self.pad[0], h * self.pad[1]
        self._t = _opencv_tracker(self.kind)
        self._t.init(frame, (int(round(x + w / 2 - pw / 2)), int(round(y + h / 2 - ph / 2)), int(round(pw)), int(round(ph))))

    def update(self, frame: np.ndarray) -> tuple[bool, np.ndarray]:
        ok, raw = self._t.update(frame)
        x, y, pw, ph = (float(v) for v in raw)
        w, h = pw / self.pad[0], ph / self.pad[1]
        return ok, np.array([x + pw / 2 - w / 2, y + ph / 2 - h / 2, w, h], np.float32)


def make_local_tracker(kind: str, pad: tuple[float, float] = (1.0, 1.0)) -> LocalTracker:
    if kind not in ("kcf", "csrt"):
        raise ValueError(f"unknown local tracker {kind!r} (csrt | kcf)")
    return LocalTracker(kind, pad)


def box_at(c: np.ndarray, w: float, h: float) -> np.ndarray:
    return np.array([c[0] - w / 2, c[1] - h / 2, w, h], np.float32)


# ---------------------------------------------------------------- motion model

class ConstantVelocity:
    """Kalman filter on a box centre: state (x, y, vx, vy) px, px / frame; measurements (x, y).

    Process noise: white acceleration of `accel` px / frame^2 (scaled with the box height by the
    caller), so the prediction's uncertainty grows with every frame without a measurement: the
    gate for re-detection widens by itself while the athlete is occluded or away.
    """

    F = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)
    H = np.eye(2, 4)
    G = np.array([[0.5, 0], [0, 0.5], [1, 0], [0, 1]], np.float64)

    def __init__(self, c: np.ndarray, pos_sigma: float, vel_sigma: float):
        self.x = np.array([c[0], c[1], 0.0, 0.0])
        self.P = np.diag([pos_sigma ** 2] * 2 + [vel_sigma ** 2] * 2)

    @property
    def centre(self) -> np.ndarray:
        return self.x[:2].copy()

    @property
    def velocity(self) -> np.ndarray:
        return self.x[2:].copy()

    def predict(self, accel: float) -> None:
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + (self.G @ self.G.T) * accel ** 2

    def _s_inv(self, meas_sigma: float) -> np.ndarray:
        """Inverse of the innovation covariance (2x2, closed form: numpy's inv costs more than the rest)."""
        a, b, d = self.P[0, 0] + meas_sigma ** 2, self.P[0, 1], self.P[1, 1] + meas_sigma ** 2
        det = a * d - b * b
        return np.array([[d, -b], [-b, a]]) / det

    def mahalanobis(self, c: np.ndarray, meas_sigma: float) -> float:
        """Distance of a measured centre from the prediction, in standard deviations."""
        e = np.asarray(c, np.float64) - self.x[:2]
        return float(np.sqrt(max(float(e @ self._s_inv(meas_sigma) @ e), 0.0)))

    def spread(self) -> float:
        """Standard deviation of the predicted position (px, larger axis)."""
        a, b, d = self.P[0, 0], self.P[0, 1], self.P[1, 1]
        return float(np.sqrt(0.5 * (a + d) + np.sqrt(0.25 * (a - d) ** 2 + b * b)))

    def update(self, c: np.ndarray, meas_sigma: float) -> None:
        k = self.P[:, :2] @ self._s_inv(meas_sigma)
        self.x = self.x + k @ (np.asarray(c, np.float64) - self.x[:2])
        self.P = (np.eye(4) - k @ self.H) @ self.P

    def reset(self, c: np.ndarray, pos_sigma: float, vel_sigma: float) -> None:
        self.__init__(c, pos_sigma, vel_sigma)


# ---------------------------------------------------------------- verifier

class Verifier:
    """Online-trained binary classifier: is this box the athlete?

    The paper's verifier is an MDNet-like CNN whose last layers are updated online on the target
    vs background. No such weights ship here, so the same idea runs on hand-made features: a
    box is resized to 32x64 and described by its HOG (9 orientations, 8 px cells, 16 px blocks:
    756 values, the silhouette) and its colour histograms (upper / lower half, the 136 bins of
    `colour_bins`, square-rooted: the clothes), each L2-normalised. A linear kernel ridge
    regression (labels +1 / -1, classes balanced) is trained on positives (the athlete's box,
    slightly jittered, from the first frame and from confident frames since) and negatives
    (boxes shifted around the athlete: background and body parts; and the other people: the
    hard negatives that tell the athlete apart from a similarly dressed neighbour). Score =
    clip((w.x + 1) / 2, 0, 1). The first frame's positives are kept for good (identity anchor).
    """

    HOG = cv2.HOGDescriptor((32, 64), (16, 16), (8, 8), (8, 8), 9)
    # Positives are jittered widely (+-12-20% of the width, +-6% of the height, +-12% scale) and
    # negatives start a whole width away: the verifier must accept a tracker box that is a third
    # of a width off, or a detector box 20% too wide, and still reject the neighbour. On the
    # tuning sequences (ground-truth boxes): athlete 0.87 median, the athlete's box shifted by
    # 0.3 widths and widened like a detection 0.5, other people 0.08, background 0.01.
    POS_JITTER = ((0.0, 0.0, 1.0), (0.12, 0.0, 1.0), (-0.12, 0.0, 1.0), (0.0, 0.06, 1.0), (0.0, -0.06, 1.0),
                  (0.0, 0.0, 0.88), (0.0, 0.0, 1.12), (0.2, 0.0, 1.0), (-0.2, 0.0, 1.0))
    # (dx in widths, dy in heights, scale): background beside, above, below; the torso; too big
    NEG_SHIFTS = ((1.0, 0.0, 1.0), (-1.0, 0.0, 1.0), (1.6, 0.0, 1.0), (-1.6, 0.0, 1.0), (0.0, 0.6, 1.0),
                  (0.0, -0.6, 1.0), (0.9, 0.4, 1.0), (-0.9, -0.4, 1.0), (0.9, -0.4, 1.0), (-0.9, 0.4, 1.0),
                  (0.0, 0.0, 0.4), (0.0, 0.0, 2.2))
    COLOUR_WEIGHT = 2.0   # colour vs HOG (shift-tolerant identity vs silhouette): 1 -> 2 lifted shifted boxes 0.46 -> 0.52

    def __init__(self, max_pos: int = 40, max_neg: int = 240, lam: float = 1.0):
        self.anchor: list[np.ndarray] = []
        self.pos: deque[np.ndarray] = deque(maxlen=max_pos)
        self.pos_t: deque[int] = deque(maxlen=max_pos)     # when each positive was learnt (caller's clock)
        self.neg: deque[np.ndarray] = deque(maxlen=max_neg)
        self.lam = lam
        self.w: np.ndarray | None = None
        self.dirty = False
        self._k = 0

    @classmethod
    def features(cls, frame: np.ndarray, bbox: np.ndarray) -> np.ndarray | None:
        x, y, w, h = (float(v) for v in bbox)
        patch = _crop(frame, x, y, x + w, y + h)
        if patch.shape[0] < 8 or patch.shape[1] < 4:
            return None
        patch = cv2.resize(patch, (32, 64), interpolation=cv2.INTER_AREA)
        hog = cls.HOG.compute(cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)).ravel()
        hog = hog / max(float(np.linalg.norm(hog)), 1e-9)
        bins = colour_bins(patch)
        col = np.concatenate([np.bincount(bins[:32].ravel(), minlength=N_BINS),
                              np.bincount(bins[32:].ravel(), minlength=N_BINS)]).astype(np.float32)
        col = np.sqrt(col)
        col *= cls.COLOUR_WEIGHT / max(float(np.linalg.norm(col)), 1e-9)
        return np.concatenate([hog, col, [1.0]]).astype(np.float32)

    @staticmethod
    def _shifted(bbox: np.ndarray, dx: float, dy: float, s: float, wid: int, hgt: int) -> np.ndarray | None:
        x, y, w, h = (float(v) for v in bbox)
        c = np.array([x + w / 2 + dx * w, y + h / 2 + dy * h])
        b = clip_box(box_at(c, w * s, h * s), wid, hgt)
        if b is None or b[2] * b[3] < 0.5 * w * s * h * s:       # mostly outside the frame
            return None
        return b

    def add(self, frame: np.ndarray, bbox: np.ndarray, positive: bool, jitter: bool = False, anchor: bool = False,
            t: int = 0) -> None:
        hgt, wid = frame.shape[:2]
        shifts = self.POS_JITTER if jitter else ((0.0, 0.0, 1.0),)
        for dx, dy, s in shifts:
            b = self._shifted(bbox, dx, dy, s, wid, hgt)
            f = None if b is None else self.features(frame, b)
            if f is None:
                continue
            if anchor:
                self.anchor.append(f)
            elif positive:
                self.pos.append(f)
                self.pos_t.append(t)
            else:
                self.neg.append(f)
            self.dirty = True

    def forget_since(self, t: int) -> int:
        """Drop the positives learnt at or after time t (not the anchor); returns how many."""
        keep = [(f, k) for f, k in zip(self.pos, self.pos_t) if k < t]
        n = len(self.pos) - len(keep)
        if n:
            self.pos.clear()
            self.pos_t.clear()
            for f, k in keep:
                self.pos.append(f)
                self.pos_t.append(k)
            self.dirty = True
        return n

    def add_scene(self, frame: np.ndarray, bbox: np.ndarray, n: int, rng: np.random.Generator) -> None:
        """Negatives of the athlete's size anywhere in the frame away from the athlete: a linear
        classifier only knows the background it was shown, and extrapolates wildly elsewhere."""
        hgt, wid = frame.shape[:2]
        w, h = float(bbox[2]), float(bbox[3])
        c0 = centre(bbox)
        for _ in range(n):
            c = np.array([rng.uniform(w / 2, max(wid - w / 2, w / 2 + 1)), rng.uniform(h / 2, max(hgt - h / 2, h / 2 + 1))])
            if abs(c[0] - c0[0]) < w and abs(c[1] - c0[1]) < 0.5 * h:
                continue
            b = clip_box(box_at(c, w, h), wid, hgt)
            f = None if b is None else self.features(frame, b)
            if f is not None:
                self.neg.append(f)
                self.dirty = True

    def add_background(self, frame: np.ndarray, bbox: np.ndarray, n: int | None = None) -> None:
        """Negatives shifted around the athlete's box: all of NEG_SHIFTS, or the next n of them."""
        hgt, wid = frame.shape[:2]
        shifts = self.NEG_SHIFTS if n is None else [self.NEG_SHIFTS[(self._k + i) % len(self.NEG_SHIFTS)] for i in range(n)]
        self._k += 0 if n is None else n
        for dx, dy, s in shifts:
            b = self._shifted(bbox, dx, dy, s, wid, hgt)
            f = None if b is None else self.features(frame, b)
            if f is not None:
                self.neg.append(f)
                self.dirty = True

    def fit(self) -> None:
        pos = self.anchor + list(self.pos)
        if not pos or not self.neg:
            return
        x = np.array(pos + list(self.neg), np.float64)
        y = np.r_[np.ones(len(pos)), -np.ones(len(self.neg))]
        c = np.r_[np.full(len(pos), len(self.neg) / len(pos)), np.ones(len(self.neg))]
        c *= len(c) / c.sum()
        k = x @ x.T
        alpha = np.linalg.solve(c[:, None] * k + self.lam * np.eye(len(y)), c * y)
        self.w = (x.T @ alpha).astype(np.float32)
        self.dirty = False

    def search(self, frame: np.ndarray, c: np.ndarray, size: np.ndarray, rx: float, ry: float) -> tuple[np.ndarray | None, float]:
        """Best-scoring box of the given size whose centre lies within +-rx, +-ry of c (the paper's
        verifier scoring candidate boxes, MDNet-style): every window on a 1/8-width x 1/16-height
        grid, HOG for all windows at once. Returns (box, score) or (None, 0)."""
        if self.w is None:
            return None, 0.0
        hgt, wid = frame.shape[:2]
        w, h = float(size[0]), float(size[1])
        sx, sy = 32.0 / w, 64.0 / h
        x0, y0 = max(int(np.floor(c[0] - w / 2 - rx)), 0), max(int(np.floor(c[1] - h / 2 - ry)), 0)
        x1, y1 = min(int(np.ceil(c[0] + w / 2 + rx)), wid), min(int(np.ceil(c[1] + h / 2 + ry)), hgt)
        tw, th = int(round((x1 - x0) * sx)), int(round((y1 - y0) * sy))
        if tw < 32 or th < 64 or tw > 2000 or th > 2000:
            return None, 0.0
        img = cv2.resize(frame[y0:y1, x0:x1], (tw, th), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        bins = colour_bins(img)
        w_hog, w_col, bias = self.w[:756], self.w[756:-1], float(self.w[-1])
        best, best_at = -np.inf, None
        for ox in (0, 4):
            for oy in (0, 4):
                sub = gray[oy:, ox:]
                if sub.shape[0] < 64 or sub.shape[1] < 32:
                    continue
                nx, ny = (sub.shape[1] - 32) // 8 + 1, (sub.shape[0] - 64) // 8 + 1
                d = self.HOG.compute(sub, winStride=(8, 8)).reshape(-1, 756)[:nx * ny]
                hog_score = (d @ w_hog) / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
                for k in np.argsort(-hog_score)[:max(8, len(hog_score) // 3)]:   # colour for the promising third
                    px, py = ox + 8 * (k % nx), oy + 8 * (k // nx)
                    b = bins[py:py + 64, px:px + 32]
                    col = np.sqrt(np.concatenate([np.bincount(b[:32].ravel(), minlength=N_BINS),
                                                  np.bincount(b[32:].ravel(), minlength=N_BINS)]).astype(np.float32))
                    sc = hog_score[k] + self.COLOUR_WEIGHT * float(col @ w_col) / max(float(np.linalg.norm(col)), 1e-9) + bias
                    if sc > best:
                        best, best_at = sc, (px, py)
        if best_at is None:
            return None, 0.0
        box = np.array([x0 + best_at[0] / sx, y0 + best_at[1] / sy, w, h], np.float32)
        return box, float(np.clip(0.5 + 0.5 * best, 0.0, 1.0))

    def score(self, frame: np.ndarray, bbox: np.ndarray) -> float:
        if self.w is None:
            return 0.5
        f = self.features(frame, bbox)
        if f is None:
            return 0.0
        return float(np.clip(0.5 + 0.5 * float(f @ self.w), 0.0, 1.0))


# ---------------------------------------------------------------- background subtraction

class ForegroundModel:
    """What moves in a static camera's view: OpenCV's MOG2 background subtractor on a grey copy
    of the frame scaled to `width` px (~0.8 ms a frame at 192 px).

    share(box) is the foreground fraction of the box's inner part (the middle 60% of its width,
    5-95% of its height, like `AppearanceModel`): ~0.4-0.8 on a walking person on vtest.avi, under
    0.15 on the lamp post / sign, a standing person decays towards 0 over ~history / 10 frames.
    It is None (no opinion) during the first `warmup` frames, whenever more than `max_global` of
    the frame is foreground (a light change), and for good once the camera has moved: the
    whole-frame shift between consecutive frames (phase correlation on the same small copy,
    ~0.3 ms) exceeded `max_shift` px on `moves_allowed` frames. A pan over a smooth or blurred
    scene leaves most of the frame "background" while every box in it is wrong; vtest.avi's fixed
    camera shifts 0.59 px at most, the evaluation set's pans 1-12 px a frame.
    """

    def __init__(self, width: int = 192, history: int = 300, var_threshold: float = 16.0,
                 warmup: int = 5, max_global: float = 0.3, max_shift: float = 1.0, moves_allowed: int = 2):
        self.width, self.warmup, self.max_global = width, warmup, max_global
        self.max_shift, self.moves_allowed = max_shift, moves_allowed
        self.moves = 0                  # frames on which the camera moved
        self._prev: np.ndarray | None = None
        self._mog = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold,
                                                       detectShadows=False)
        self.mask: np.ndarray | None = None
        self.scale = 1.0
        self.global_share = 1.0
        self.n = 0

    def apply(self, frame: np.ndarray) -> None:
        hgt, wid = frame.shape[:2]
        self.scale = min(1.0, self.width / float(wid))
        small = cv2.resize(frame, (max(1, int(round(wid * self.scale))), max(1, int(round(hgt * self.scale)))),
                           interpolation=cv2.INTER_AREA) if self.scale < 1.0 else frame
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if self.static:
            g = gray.astype(np.float32)
            if self._prev is not None and self._prev.shape == g.shape:
                (dx, dy), _ = cv2.phaseCorrelate(self._prev, g)
                self.moves += int(dx * dx + dy * dy > self.max_shift ** 2)
            self._prev = g
        if not self.static:             # a moving camera: nothing more to learn
            self.mask, self._prev = None, None
            return
        self.mask = self._mog.apply(gray) > 0
        self.global_share = float(self.mask.mean())
        self.n += 1

    @property
    def static(self) -> bool:
        """The camera has not moved (so far)."""
        return self.moves <= self.moves_allowed

    @property
    def reliable(self) -> bool:
        return self.mask is not None and self.n > self.warmup and self.global_share <= self.max_global

    def share(self, bbox: np.ndarray | None) -> float | None:
        if bbox is None or not self.reliable:
            return None
        x, y, w, h = (float(v) * self.scale for v in bbox)
        hgt, wid = self.mask.shape
        x1, x2 = max(int(round(x + 0.2 * w)), 0), min(int(round(x + 0.8 * w)), wid)
        y1, y2 = max(int(round(y + 0.05 * h)), 0), min(int(round(y + 0.95 * h)), hgt)
        if x2 <= x1 or y2 <= y1:
            return None
        return float(self.mask[y1:y2, x1:x2].mean())


# ---------------------------------------------------------------- the other people

class TemplateTracker:
    """Cheap tracker for the people around the athlete: normalised cross-correlation of a small
    grey template (about 16 px wide) in a window around the constant-velocity prediction."""

    def __init__(self, gray: np.ndarray, bbox: np.ndarray):
        self.box = np.asarray(bbox, np.float32).copy()
        self.vel = np.zeros(2, np.float32)
        self.s = min(1.0, 16.0 / max(float(bbox[2]), 1.0))
        self.tmpl = self._patch(gray, self.box)

    def _patch(self, gray: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        x, y, w, h = (float(v) for v in b)
        p = _crop(gray, x, y, x + w, y + h)
        if p.shape[0] < 4 or p.shape[1] < 4:
            return None
        return cv2.resize(p, (max(4, int(round(w * self.s))), max(4, int(round(h * self.s)))), interpolation=cv2.INTER_AREA)

    def update(self, gray: np.ndarray) -> float:
        """Move the box to the best match; returns the match score (-1..1), the box is kept if < 0.5."""
        if self.tmpl is None:
            return 0.0
        x, y, w, h = (float(v) for v in self.box)
        x, y = x + self.vel[0], y + self.vel[1]
        mx, my = 0.6 * w + 2, 0.2 * h + 2
        win = _crop(gray, x - mx, y - my, x + w + mx, y + h + my)
        x0, y0 = max(round(x - mx), 0), max(round(y - my), 0)
        th, tw = self.tmpl.shape
        if win.size == 0:
            return 0.0
        win = cv2.resize(win, (max(1, int(round(win.shape[1] * self.s))), max(1, int(round(win.shape[0] * self.s)))),
                         interpolation=cv2.INTER_AREA)
        if win.shape[0] < th or win.shape[1] < tw:
            return 0.0
        res = cv2.matchTemplate(win, self.tmpl, cv2.TM_CCOEFF_NORMED)
        _, best, _, loc = cv2.minMaxLoc(res)
        if best < 0.5:
            return float(best)
        nb = np.array([x0 + loc[0] / self.s, y0 + loc[1] / self.s, w, h], np.float32)
        self.vel = 0.5 * self.vel + 0.5 * (nb[:2] - self.box[:2])
        self.box = nb
        if best > 0.75:
            p = self._patch(gray, nb)
            if p is not None and p.shape == self.tmpl.shape:
                self.tmpl = cv2.addWeighted(self.tmpl, 0.9, p, 0.1, 0)
        return float(best)

    def reset(self, gray: np.ndarray, bbox: np.ndarray) -> None:
        old = self.box.copy()
        self.__init__(gray, bbox)
        self.vel = (self.box[:2] - old[:2]) * 0.0


@dataclass
class _Person:
    track_id: int
    tracker: TemplateTracker
    last_seen: int                  # frame count of the last good match or detection
    score: float = 1.0

    @property
    def box(self) -> np.ndarray:
        return self.tracker.box


# ---------------------------------------------------------------- single-target tracking

class _TargetTrack:
    """Track / verify / re-detect one athlete from a known first box."""

    def __init__(self, cfg: TrackerConfig, detector: PersonDetector, frame: np.ndarray, bbox: np.ndarray,
                 others: list[np.ndarray] = ()):
        self.cfg, self.det = cfg, detector
        self.box = bbox.astype(np.float32)          # last box where the athlete was seen
        self.size = np.array(bbox[2:], np.float64)  # smoothed athlete width, height (detections are noisy), px
        self.app = AppearanceModel(frame, bbox, cfg.model_lr)   # plain tracker's confidence
        self.vel = np.zeros(2)                      # plain tracker's velocity, px / frame
        self.kf = ConstantVelocity(centre(bbox), 0.05 * self.h, 0.1 * self.h)
        self.verifier = Verifier()
        self.fg = ForegroundModel() if cfg.verify and cfg.foreground else None
        if self.fg is not None:
            self.fg.apply(frame)
        if cfg.verify:
            self.rng = np.random.default_rng(0)     # deterministic: the same video gives the same track
            self.verifier.add(frame, self.box, True, jitter=True, anchor=True)
            self.verifier.add_background(frame, self.box)
            self.verifier.add_scene(frame, self.box, 24, self.rng)
            for o in others:
                if iou_xywh(o, self.box) < 0.3:
                    self.verifier.add(frame, o, False, jitter=True)
            self.verifier.fit()
        self._restart(frame, self.box)
        self.t = 0                                  # frames since the first one
        self.last_seen = 0                          # t of the last frame with a box
        self.lost_since: int | None = None          # t when the athlete was lost; None while seen
        self.since_verify = 0
        self.since_fit = 0
        self.confident = 0                          # confident frames since the last positive sample
        self.still = 0                              # frames in a row the local tracker's box was on the background
        self.rest = centre(self.box)                # where the box last came to rest...
        self.rest_t = 0                             # ...and since when (t)
        self.confirmed_t = 0                        # t of the last detection accepted as the athlete (or the first box)
        self.seen: list[Detection] = []             # detections of this frame that are not the athlete

    @property
    def h(self) -> float:
        return float(self.size[1])

    def _resized(self, det_box: np.ndarray, weight: float = 0.3) -> np.ndarray:
        """A detection's centre with the smoothed size (updated by `weight` towards the detection's)."""
        self.size = (1 - weight) * self.size + weight * np.asarray(det_box[2:], np.float64)
        return box_at(centre(det_box), *self.size)

    def _restart(self, frame: np.ndarray, bbox: np.ndarray) -> None:
        self.local = make_local_tracker(self.cfg.local_tracker, self.cfg.local_pad)
        self.local.init(frame, bbox)

    # -- plain tracker's motion model (constant velocity, exponential smoothing) ------------
    def _motion_error(self, bbox: np.ndarray) -> float:
        pc = centre(self.box) + self.vel * (self.t - self.last_seen)
        return float(np.linalg.norm(centre(bbox) - pc)) / float(self.box[3])

    def first(self, index: int, score: float) -> FrameTrack:
        return FrameTrack(index, self.box.copy(), float(score), "detected")

    def _plain(self, frame: np.ndarray, index: int, box: np.ndarray | None) -> FrameTrack:
        if box is None:
            return FrameTrack(index, None, 0.0, "lost")
        conf = self.app.similarity(frame, box) * float(np.exp(-0.5 * (self._motion_error(box) / self.cfg.motion_sigma) ** 2))
        gap = max(self.t - self.last_seen, 1)
        self.vel = 0.7 * self.vel + 0.3 * (centre(box) - centre(self.box)) / gap
        self.box, self.last_seen = box, self.t
        if conf >= 0.85:
            self.app.update(frame, box)
        return FrameTrack(index, box, conf, "tracked")

    # -- full tracker -------------------------------------------------------------------------
    def _gate(self, bbox: np.ndarray, meas: float = 0.08) -> float:
        return self.kf.mahalanobis(centre(bbox), meas * self.h)

    def _motion(self, bbox: np.ndarray) -> float:
        """Motion agreement 0..1 of a box with the Kalman prediction (1 at the prediction, 0.6 at 1.5 sigma... )."""
        d = self._gate(bbox)
        return float(np.exp(-0.5 * (d / self.cfg.gate_sigmas) ** 2))

    def _accept(self, frame: np.ndarray, bbox: np.ndarray, score: float, meas: float, others: list[PersonBox],
                detected: bool = False) -> None:
        bbox = bbox.astype(np.float32)
        self.kf.update(centre(bbox), meas * self.h)
        self.box, self.last_seen, self.lost_since = bbox, self.t, None
        cfg = self.cfg
        # Learn only from boxes we are sure of: a verifier that learns from its own mistakes
        # ends up certain about a patch of wall.
        if np.linalg.norm(centre(bbox) - self.rest) > 0.3 * self.h:
            self.rest, self.rest_t = centre(bbox), self.t
        if detected:
            self.still, self.confirmed_t = 0, self.t
        fs = None if self.fg is None or detected else self.fg.share(bbox)
        if score >= (cfg.detect_accept if detected else cfg.learn_above) and (fs is None or fs >= cfg.fg_min):
            self.confident += 1
            if self.confident >= cfg.learn_interval:
                self.confident = 0
                self.verifier.add(frame, bbox, True, t=self.t)
                self.verifier.add_background(frame, bbox, 3)
                self.verifier.add_scene(frame, bbox, 2, self.rng)
                for o in others:                      # the people around: hard negatives
                    if iou_xywh(o.bbox_px, bbox) < 0.1 and o.score >= 0.6 and \
                            np.linalg.norm(centre(o.bbox_px) - centre(bbox)) < 4 * self.h:
                        self.verifier.add(frame, o.bbox_px, False)
        self.since_fit += 1
        if self.verifier.dirty and self.since_fit >= cfg.refit_interval:
            self.since_fit = 0
            self.verifier.fit()

    def _background(self, bbox: np.ndarray | None) -> bool:
        """The box is (nearly) all background, for a static camera (ForegroundModel)."""
        if self.fg is None or bbox is None:
            return False
        fs = self.fg.share(bbox)
        return fs is not None and fs < self.cfg.fg_min

    def _drop_background(self, frame: np.ndarray, bbox: np.ndarray) -> None:
        """The local tracker's box was left on the background: teach the verifier so, and forget
        the positives learnt since the box came to rest there (the athlete was leaving it)."""
        n = self.verifier.forget_since(self.rest_t)
        self.verifier.add(frame, bbox, False, jitter=True)
        log.debug("t=%d box on the background since t=%d: lost, %d positives forgotten", self.t, self.rest_t, n)
        self.verifier.fit()
        self.since_fit = 0
        self.still = 0

    def _on_other(self, bbox: np.ndarray, others: list[PersonBox]) -> bool:
        """The box is where another person is being followed confidently."""
        return any(o.score >= 0.6 and iou_xywh(o.bbox_px, bbox) > 0.5 for o in others)

    def _pick(self, frame: np.ndarray, dets: list[Detection], others: list[PersonBox], accept: float,
              gate: float | None) -> tuple[Detection, float] | None:
        """The detection most likely to be the athlete: verifier score >= accept, of a plausible
        size, within `gate` sigmas of the prediction (None: anywhere), not someone else."""
        best, best_key = None, -np.inf
        for d in dets:
            s = self.verifier.score(frame, d.bbox_px)
            ratio = float(d.bbox_px[3]) / self.h
            dist = self._gate(d.bbox_px, 0.1)
            other = self._on_other(d.bbox_px, others)
            ok = (s >= accept and 1 / self.cfg.verify_scale <= ratio <= self.cfg.verify_scale * (1.0 if gate else 1.3)
                  and (gate is None or dist <= gate) and (not other or s >= self.cfg.exclusive_score)
                  and self._reachable(d.bbox_px))
            log.debug("t=%d det=%s score=%.2f dist=%.1f ratio=%.2f other=%s -> %s", self.t,
                      np.round(d.bbox_px).tolist(), s, dist, ratio, other, ok)
            key = s - 0.02 * min(dist, 20.0)
            if ok and key > best_key:
                best, best_key = (d, s), key
        self.seen += [d for d in dets if best is None or d is not best[0]]
        if best is not None:
            # Hard negatives (MDNet-style mining): the other people around the athlete, once we know
            # which detection the athlete is (while lost, an unrecognised athlete could be among them).
            for d in dets:
                if d is not best[0] and iou_xywh(d.bbox_px, best[0].bbox_px) < 0.2:
                    self.verifier.add(frame, d.bbox_px, False)
        return best

    def _reachable(self, bbox: np.ndarray) -> bool:
        """Could the athlete have got there since last seen (TrackerConfig.max_step)?"""
        n = max(self.t - self.last_seen, 1)
        step = max(2.0 * float(np.linalg.norm(self.kf.velocity)), self.cfg.max_step * self.h)
        return float(np.linalg.norm(centre(bbox) - centre(self.box))) <= self.cfg.reach_slack * self.h + n * step

    def _prediction_inside(self, frame: np.ndarray) -> bool:
        hgt, wid = frame.shape[:2]
        c = self.kf.centre
        return -0.3 * self.h <= c[0] <= wid + 0.3 * self.h and 0 <= c[1] <= hgt + 0.3 * self.h

    def step(self, frame: np.ndarray, index: int, others: list[PersonBox] = ()) -> FrameTrack:
        """Track the next frame; `others`: the other people followed in this frame."""
        cfg = self.cfg
        self.t += 1
        self.seen = []
        hgt, wid = frame.shape[:2]
        self.kf.predict(cfg.accel_sigma * self.h)
        if self.fg is not None:
            self.fg.apply(frame)
        if self.lost_since is not None:
            return self._search(frame, index, others)

        ok, raw = self.local.update(frame)
        box = clip_box(np.asarray(raw, np.float32), wid, hgt) if ok else None
        if not cfg.verify:
            return self._plain(frame, index, box)
        conf, score, on_other = 0.0, 0.0, False
        self.still = self.still + 1 if self._background(box) else 0
        on_bg = self.still >= cfg.fg_frames and (self.confirmed_t < self.rest_t or
                                                  self.t - self.confirmed_t > cfg.fg_confirm_frames)
        if box is not None:
            # Confidence = looks like the athlete (verifier) x moved as the athlete was moving.
            score = self.verifier.score(frame, box)
            conf = score * self._motion(box)
            on_other = self._on_other(box, others)
            log.debug("t=%d box=%s score=%.2f conf=%.2f on_other=%s on_bg=%s", self.t, np.round(box).tolist(), score,
                      conf, on_other, on_bg)
        self.since_verify += 1
        if box is not None and not on_other and not on_bg and \
                not (cfg.verify_interval and self.since_verify >= cfg.verify_interval):
            # Confident, or doubtful but verified recently: keep tracking (verification costs a detector pass).
            if conf >= cfg.verify_below or (conf >= cfg.accept_score and self.since_verify < cfg.doubt_interval):
                self._accept(frame, box, conf, 0.12, others)
                return FrameTrack(index, box, conf, "tracked")

        # Verification: one detector pass on a window around the prediction (and around the
        # tracker's box, if that is elsewhere); a detection the verifier accepts, near the
        # prediction and of the athlete's size, confirms the track and re-centres the tracker.
        self.since_verify = 0
        pred = box_at(self.kf.centre, self.box[2], self.box[3])
        dets = self.det.detect_in_region(frame, pred, cfg.verify_context)
        if box is not None and iou_xywh(box, pred) < 0.3:
            dets += [d for d in self.det.detect_in_region(frame, box, cfg.verify_context)
                     if all(iou_xywh(d.bbox_px, e.bbox_px) < 0.5 for e in dets)]
        best = self._pick(frame, dets, others, cfg.detect_accept, cfg.gate_sigmas)
        if best is not None:
            d, s = best
            b = self._resized(d.bbox_px)
            if box is None or iou_xywh(box, b) < 0.6 or abs(b[3] / box[3] - 1) > 0.1:
                self._restart(frame, b)            # re-centre and re-scale the local tracker
            self._accept(frame, b, s, 0.05, others, detected=True)
            return FrameTrack(index, b.copy(), s, "verified")
        # No detection: the verifier scores candidate boxes around the prediction itself (a back-
        # facing or motion-blurred athlete, whom the face-driven detector cannot see).
        cand, cs = self._candidate_search(frame)
        if cand is not None and cs >= cfg.search_accept and (cs > score + 0.05 or on_bg) and \
                not self._on_other(cand, others) and not self._background(cand) and \
                not (on_bg and iou_xywh(cand, box) > 0.3):
            self._restart(frame, cand)
            self.still = 0
            self._accept(frame, cand, cs, 0.12, others)
            return FrameTrack(index, cand, cs, "verified")
        if box is not None and not on_other and not on_bg and score >= cfg.accept_score and conf >= cfg.accept_score * 0.5:
            # e.g. the athlete's back to the camera: the detector can't see it, the verifier can
            self._accept(frame, box, conf, 0.12, others)
            return FrameTrack(index, box, conf, "verified")
        if on_bg:
            self._drop_background(frame, box)
        self.lost_since = self.t
        log.debug("t=%d lost (score %.2f, conf %.2f, on_other %s)", self.t, score, conf, on_other)
        if cfg.redetect:
            return self._redetect(frame, index, others)
        return FrameTrack(index, None, 0.0, "lost")

    def _candidate_search(self, frame: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Verifier search around the prediction, over its uncertainty (at most 2 box heights)."""
        r = min(0.5 * self.size[0] + 2.0 * self.kf.spread() + float(np.abs(self.kf.velocity[0])), 2.0 * self.h)
        ry = min(0.1 * self.h + self.kf.spread(), 0.5 * self.h)
        return self.verifier.search(frame, self.kf.centre, self.size, r, ry)

    def _search(self, frame: np.ndarray, index: int, others: list[PersonBox]) -> FrameTrack:
        """While lost: whole-image re-detection every few frames; in between, right after the
        loss, one detector pass around the prediction (the athlete reappearing from behind someone)."""
        cfg = self.cfg
        if not cfg.redetect:
            return FrameTrack(index, None, 0.0, "lost")
        n = self.t - self.lost_since
        every = cfg.redetect_interval if n <= 30 else cfg.redetect_interval_long
        if n % every == 0:
            return self._redetect(frame, index, others)
        if n <= cfg.local_search_frames and self._prediction_inside(frame):
            cand, cs = self._candidate_search(frame)
            if cand is not None and cs >= cfg.search_accept and not self._on_other(cand, others) \
                    and not self._background(cand):
                self.seen = []
                return self._found(frame, index, (Detection(cand, cs), cs), others, resize=False)
            if n % 2:                             # a local detector pass every other frame
                return FrameTrack(index, None, 0.0, "lost")
            pred = box_at(self.kf.centre, self.box[2], self.box[3])
            dets = self.det.detect_in_region(frame, pred, cfg.verify_context + 0.5)
            best = self._pick(frame, dets, others, cfg.redetect_accept, cfg.gate_sigmas)
            if best is not None:
                return self._found(frame, index, best, others)
        return FrameTrack(index, None, 0.0, "lost")

    def _redetect(self, frame: np.ndarray, index: int, others: list[PersonBox]) -> FrameTrack:
        """Whole-image detection at the athlete's scale; the detection the verifier likes best,
        near the prediction while the prediction still means something."""
        cfg = self.cfg
        dets = self.det.detect(frame, person_height=self.h)
        n = self.t - self.last_seen
        gate = 2 * cfg.gate_sigmas if n <= 30 and self._prediction_inside(frame) else None
        best = self._pick(frame, dets, others, cfg.redetect_accept, gate)
        if best is None:
            if self.lost_since is None:
                self.lost_since = self.t
            return FrameTrack(index, None, 0.0, "lost")
        return self._found(frame, index, best, others)

    def _found(self, frame: np.ndarray, index: int, best: tuple[Detection, float], others: list[PersonBox],
               resize: bool = True) -> FrameTrack:
        d, s = best
        gap = self.t - self.last_seen
        b = self._resized(d.bbox_px, (0.3 if gap <= 10 else 0.6) if resize else 0.0)   # sizes change during long absences
        self._restart(frame, b)
        if gap > 10 or not self._prediction_inside(frame):   # old velocity says nothing after a long gap
            self.kf.reset(centre(b), 0.05 * self.h, 0.1 * self.h)
        self.since_verify, self.still = 0, 0
        self.rest, self.rest_t = centre(b), self.t
        self._accept(frame, b, s, 0.05, others, detected=resize)
        return FrameTrack(index, b.copy(), s, "redetected")


# ---------------------------------------------------------------- athlete selection + streaming

@dataclass
class _Candidate:
    track_id: int
    det: Detection
    local: LocalTracker
    app: AppearanceModel
    centres: list[np.ndarray]          # box centres while the candidate is still followed
    boxes: list[np.ndarray | None] = field(default_factory=list)   # per window frame (None once dropped)
    alive: bool = True

    @property
    def motion_px(self) -> float:
        """Path length of the box centre over the window."""
        if len(self.centres) < 2:
            return 0.0
        return float(np.linalg.norm(np.diff(np.array(self.centres), axis=0), axis=1).sum())


class AthleteTracker:
    """Streaming athlete tracker.

    push(frame) returns the frames whose track is final: nothing while the selection window
    is being filled (several people in the first frame with a person), then the whole window
    at once, then one FrameTrack per pushed frame (with a target_bbox_px or a single person:
    no window, one per push from the start). finish() returns the rest. Frames before
    the first frame with a person come back as "lost" right away. If nobody is ever detected,
    finish() raises NoPersonFound (push() too once `max_search_frames` is exceeded, if set).

    Every FrameTrack also lists the other people followed in that frame (`people`, with stable
    track ids); tracks() gathers them per id.
    """

    def __init__(self, config: TrackerConfig | None = None,
                 target_bbox_px: tuple[float, float, float, float] | None = None,
                 detector: PersonDetector | None = None):
        self.config = config or TrackerConfig()
        self.detector = detector or PersonDetector(self.config.detector)
        self.target = None if target_bbox_px is None else np.asarray(target_bbox_px, np.float32)
        self._n = 0                                   # frames pushed
        self._start_index: int | None = None          # index of the first frame with a person
        self._candidates: list[_Candidate] = []
        self._window: list[np.ndarray] = []           # buffered frames of the selection window (H,W,3)
        self._track: _TargetTrack | None = None
        self._choice: AthleteChoice | None = None
        self._finished = False
        self._others: list[_Person] = []
        self._next_id = 0
        self._tracks: dict[int, list[tuple[int, np.ndarray]]] = {}

    @property
    def choice(self) -> AthleteChoice | None:
        return self._choice

    def tracks(self) -> dict[int, list[tuple[int, np.ndarray]]]:
        """Every person followed so far, athlete included: {track_id: [(frame index, x,y,w,h box)]}
        (frames returned by push()/finish() only)."""
        return {k: list(v) for k, v in self._tracks.items()}

    # -- public ---------------------------------------------------------------------------
    def push(self, frame_bgr: np.ndarray) -> list[FrameTrack]:
        if self._finished:
            raise RuntimeError("push() after finish()")
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"expected BGR uint8 (H,W,3), got {frame_bgr.dtype} {frame_bgr.shape}")
        index, self._n = self._n, self._n + 1
        if self._track is not None:                   # athlete chosen: plain streaming
            return self._emit([self._step(frame_bgr, index)])
        if self._start_index is None:                 # still looking for anyone
            return self._emit(self._search(frame_bgr, index))
        self._follow_candidates(frame_bgr)
        self._window.append(frame_bgr.copy())
        if len(self._window) >= self.config.selection_window:
            return self._emit(self._select())
        return []

    def finish(self) -> list[FrameTrack]:
        if self._finished:
            return []
        self._finished = True
        if self._start_index is None:
            raise NoPersonFound(f"no person detected in {self._n} frames")
        if self._track is None:
            return self._emit(self._select())
        return []

    def _emit(self, fts: list[FrameTrack]) -> list[FrameTrack]:
        athlete = self._choice.track_id if self._choice is not None else None
        for ft in fts:
            if self._track is not None:
                ft.track_id = athlete
            if ft.bbox_px is not None and self._track is not None:
                self._tracks.setdefault(athlete, []).append((ft.index, ft.bbox_px.copy()))
            for p in ft.people:
                self._tracks.setdefault(p.track_id, []).append((ft.index, p.bbox_px.copy()))
        return fts

    # -- the other people ----------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _update_others(self, gray: np.ndarray) -> list[PersonBox]:
        out = []
        for p in self._others:
            p.score = p.tracker.update(gray)
            if p.score >= 0.5:
                p.last_seen = self._n
        # drop people not matched for a while, and duplicates (two trackers on one person)
        self._others = [p for p in self._others if self._n - p.last_seen <= 30]
        keep: list[_Person] = []
        for p in sorted(self._others, key=lambda p: p.track_id):
            if all(iou_xywh(p.box, q.box) < 0.6 for q in keep):
                keep.append(p)
        self._others = keep
        for p in self._others:
            if self._n - p.last_seen <= 3:
                out.append(PersonBox(p.track_id, p.box.copy(), round(max(p.score, 0.0), 3)))
        return out

    def _associate(self, gray: np.ndarray, dets: list[Detection], athlete: np.ndarray | None) -> None:
        """Detections that are not the athlete: refresh the person they belong to, or start one
        (not near where a lost athlete should be: that may be the athlete, unrecognised)."""
        tr = self._track
        for d in dets:
            if athlete is not None and iou_xywh(d.bbox_px, athlete) > 0.3:
                continue
            near_lost = athlete is None and tr.t - tr.last_seen <= 30 and \
                np.linalg.norm(centre(d.bbox_px) - tr.kf.centre) < 1.5 * tr.h + 2 * tr.kf.spread()
            best = max(self._others, key=lambda p: iou_xywh(p.box, d.bbox_px), default=None)
            if best is not None and iou_xywh(best.box, d.bbox_px) > 0.3:
                best.tracker.reset(gray, d.bbox_px)
                best.last_seen, best.score = self._n, 1.0
            elif d.score >= 0.8 and not near_lost and len(self._others) < self.config.max_others:
                self._others.append(_Person(self._new_id(), TemplateTracker(gray, d.bbox_px), self._n))

    def _step(self, frame: np.ndarray, index: int) -> FrameTrack:
        if not self.config.track_others:
            return self._track.step(frame, index)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        people = self._update_others(gray)
        ft = self._track.step(frame, index, people)
        if ft.bbox_px is not None:
            # the athlete found on a person followed as someone else: that tracker drifted onto the athlete
            self._others = [p for p in self._others if iou_xywh(p.box, ft.bbox_px) < 0.5 or ft.state == "tracked"]
        self._associate(gray, self._track.seen, ft.bbox_px)
        ft.people = [p for p in people if any(q.track_id == p.track_id for q in self._others)
                     and (ft.bbox_px is None or iou_xywh(p.bbox_px, ft.bbox_px) < 0.5)]
        return ft

    # -- before the athlete is chosen ----------------------------------------------------
    def _search(self, frame: np.ndarray, index: int) -> list[FrameTrack]:
        cfg = self.config
        dets = self.detector.detect(frame) if index % cfg.search_interval == 0 else []
        if self.target is not None:   # index 0: the user says where the athlete is in the first frame
            return self._choose_target(frame, index, dets)
        if not dets:
            if cfg.max_search_frames is not None and self._n >= cfg.max_search_frames:
                raise NoPersonFound(f"no person detected in the first {self._n} frames")
            return [FrameTrack(index, None, 0.0, "lost")]
        self._start_index = index
        self._candidates = []
        for d in dets:
            local = make_local_tracker(cfg.local_tracker, cfg.candidate_pad)
            local.init(frame, d.bbox_px)
            self._candidates.append(_Candidate(self._new_id(), d, local, AppearanceModel(frame, d.bbox_px),
                                               [centre(d.bbox_px)], [d.bbox_px.copy()]))
        if len(dets) == 1:
            self._choice = AthleteChoice(self._candidates[0].track_id, "only person detected",
                                         [self._cand_dict(self._candidates[0])])
            self._candidates = []
            return self._begin(frame, index, dets[0].bbox_px, dets[0].score)
        self._window = [frame.copy()]   # copies: a caller may reuse its frame buffer
        return []

    def _follow_candidates(self, frame: np.ndarray) -> None:
        """Cheap candidate following in the window: local tracker + appearance guard only."""
        hgt, wid = frame.shape[:2]
        for c in self._candidates:
            if not c.alive:
                c.boxes.append(None)
                continue
            ok, raw = c.local.update(frame)
            box = clip_box(np.asarray(raw, np.float32), wid, hgt) if ok else None
            # Stop following once the box no longer looks like the person (drifted / occluded):
            # its later motion would be the background's.
            if box is None or c.app.similarity(frame, box) < 0.7:
                c.alive = False
                c.boxes.append(None)
                continue
            c.centres.append(centre(box))
            c.boxes.append(box)

    def _cand_dict(self, c: _Candidate) -> dict:
        return {"track_id": c.track_id, "bbox_px": [round(float(v), 1) for v in c.det.bbox_px],
                "motion_px": round(c.motion_px, 1), "score": round(c.det.score, 3)}

    def _select(self) -> list[FrameTrack]:
        """Pick the candidate that moved most, then track it properly over the buffered window."""
        best = max(self._candidates, key=lambda c: c.motion_px)
        n = len(self._window)
        self._choice = AthleteChoice(best.track_id, f"moved most ({best.motion_px:.0f} px over {n} frames)",
                                     [self._cand_dict(c) for c in self._candidates])
        frames, self._window = self._window, []
        rest = [c for c in self._candidates if c is not best]
        self._candidates = []
        out = self._begin(frames[0], self._start_index, best.det.bbox_px, best.det.score,
                          [c.det.bbox_px for c in rest], people=False)
        out[0].people = [PersonBox(c.track_id, c.det.bbox_px.copy(), 1.0) for c in rest]
        # Replay the window; the other people are where the candidate trackers had them.
        for k, f in enumerate(frames[1:], start=1):
            people = [PersonBox(c.track_id, c.boxes[k].copy(), 1.0) for c in rest if c.boxes[k] is not None]
            ft = self._track.step(f, self._start_index + k, people if self.config.track_others else [])
            ft.people = [p for p in people if ft.bbox_px is None or iou_xywh(p.bbox_px, ft.bbox_px) < 0.5] \
                if self.config.track_others else []
            out.append(ft)
        if self.config.track_others:
            gray = cv2.cvtColor(frames[-1], cv2.COLOR_BGR2GRAY)
            self._others = [_Person(c.track_id, TemplateTracker(gray, c.boxes[-1]), self._n)
                            for c in rest if c.boxes[-1] is not None]
        return out

    def _choose_target(self, frame: np.ndarray, index: int, dets: list[Detection]) -> list[FrameTrack]:
        self._start_index = index
        ids = [self._new_id() for _ in dets]
        cands = [{"track_id": ids[k], "bbox_px": [round(float(v), 1) for v in d.bbox_px], "motion_px": 0.0,
                  "score": round(d.score, 3), "iou": round(iou_xywh(d.bbox_px, self.target), 3)}
                 for k, d in enumerate(dets)]
        box = clip_box(self.target, frame.shape[1], frame.shape[0])
        if box is None:
            hgt, wid = frame.shape[:2]
            raise ValueError(f"target_bbox_px {self.target.tolist()} is outside the {wid}x{hgt} frame")
        best = max(range(len(dets)), key=lambda k: cands[k]["iou"], default=None)
        # The box is used as given (the user says where the athlete is, and how big); the
        # detection it matches gives the athlete its track id, the others are everybody else.
        if best is not None and cands[best]["iou"] > 0.1:
            self._choice = AthleteChoice(ids[best], f"matched target_bbox (IoU {cands[best]['iou']:.2f})", cands)
            score = dets[best].score
        else:
            self._choice = AthleteChoice(-1, "target_bbox used as given (no detected person overlaps it)", cands)
            score = 1.0
        rest = [(ids[k], d) for k, d in enumerate(dets) if k != best and iou_xywh(d.bbox_px, box) < 0.3]
        out = self._begin(frame, index, box, score, [d.bbox_px for _, d in rest], people=False)
        if self.config.track_others:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            self._others = [_Person(i, TemplateTracker(gray, d.bbox_px), self._n) for i, d in rest]
            out[0].people = [PersonBox(i, d.bbox_px.copy(), 1.0) for i, d in rest]
        return out

    def _begin(self, frame: np.ndarray, index: int, bbox: np.ndarray, score: float,
               others: list[np.ndarray] = (), people: bool = True) -> list[FrameTrack]:
        self._track = _TargetTrack(self.config, self.detector, frame, np.asarray(bbox, np.float32), list(others))
        return [self._track.first(index, score)]
