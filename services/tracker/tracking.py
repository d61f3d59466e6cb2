"""Single-athlete tracking: detection, fast local tracking, verification, re-detection.

Section 4 of the AI Coach paper, with parts that run on a CPU and ship with their weights:

* detection  - BlazePose's person detector (detector.py) on the first frame(s);
* tracking   - an OpenCV correlation-filter tracker (KCF by default, CSRT optional) on every frame;
* verification - when the tracking confidence (colour-appearance similarity of the box to the
  athlete's model x agreement with the athlete's motion) drops, or every `verify_interval`
  frames, the detector is run once on a window around the predicted position; a detection
  there that looks like the athlete confirms the track (and re-centres / re-scales the
  tracker), otherwise the tracker's own box must look convincing on its own;
* re-detection - if verification fails, the detector runs over the whole image and the
  detection that best matches the athlete by appearance + motion re-starts the tracker;
  if none matches the athlete is reported absent ("lost") and re-detection is retried every
  `redetect_interval` frames.

Athlete selection: everybody detected in the first frame with a person is followed through a
selection window of frames; the one that moved most is the athlete (or the one matching a
user-given `target_bbox_px`). Frames are buffered during the window, then tracked properly.
"""
from __future__ import annotations

import logging
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
    # "kcf": whole tracker ~95 fps on one core at 768x576 (vtest.avi), so real time for 30 fps video;
    # "csrt": estimates scale itself but the whole tracker runs ~25 fps. See docs/tracker.md.
    local_tracker: str = "kcf"
    verify_below: float = 0.85        # confidence (appearance x motion agreement) under which the track is verified
    accept_appearance: float = 0.7    # verification passes on the tracker box alone at or above this confidence
    detect_appearance: float = 0.7    # a local detection confirms the track if it looks at least this similar...
    verify_gate: float = 0.35         # ...and lies within this many box heights of the predicted centre
    verify_scale: float = 1.25        # ...and its height is within this factor of the box's (sizes change slowly)
    motion_sigma: float = 0.25        # tracker box off the motion prediction by this many box heights: confidence x0.6
    verify_interval: int = 10         # also verify every N frames (slow drift, KCF's fixed scale); 0 = on low confidence only
    doubt_interval: int = 3           # confidence in [accept_appearance, verify_below): verify at most every N frames
    verify_context: float = 2.0       # local verification window = this x the box's long side
    redetect_interval: int = 5        # while lost, whole-image re-detection every N frames
    redetect_appearance: float = 0.75 # a re-detection must look at least this much like the athlete
    redetect_gate: float = 2.0        # ...and lie within this many box heights of the predicted centre,
    gate_growth: float = 0.2          # ...plus this many per frame since the athlete was last seen
    search_interval: int = 5          # before anyone is found, try detection every N frames
    # push() raises NoPersonFound after this many frames with nobody; None = only finish() does.
    max_search_frames: int | None = None
    model_lr: float = 0.05            # learning rate of the running appearance model (confident frames only)
    detector: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass
class FrameTrack:
    index: int
    bbox_px: np.ndarray | None   # (4,) x,y,w,h floats in original pixels; None when the athlete is absent
    score: float                 # tracking confidence 0..1
    state: str                   # "detected" | "tracked" | "verified" | "redetected" | "lost"


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


def make_local_tracker(kind: str) -> cv2.Tracker:
    if kind == "csrt":
        return cv2.TrackerCSRT_create()
    if kind == "kcf":
        p = cv2.TrackerKCF_Params()
        p.detect_thresh = 0.1   # default 0.5 gives up after a few frames on ~40x90 px people
        return cv2.TrackerKCF_create(p)
    raise ValueError(f"unknown local tracker {kind!r} (csrt | kcf)")


# ---------------------------------------------------------------- single-target tracking

class _TargetTrack:
    """Track / verify / re-detect one athlete from a known first box."""

    def __init__(self, cfg: TrackerConfig, detector: PersonDetector, frame: np.ndarray, bbox: np.ndarray):
        self.cfg, self.det = cfg, detector
        self.app = AppearanceModel(frame, bbox, cfg.model_lr)
        self.vel = np.zeros(2)                      # centre velocity, px / frame
        self.box = bbox.astype(np.float32)          # last box where the athlete was seen
        self._restart(frame, self.box)
        self.t = 0                                  # frames since the first one
        self.last_seen = 0                          # t of the last frame with a box
        self.lost_since: int | None = None          # t when the athlete was lost; None while seen
        self.since_verify = 0

    def _restart(self, frame: np.ndarray, bbox: np.ndarray) -> None:
        self.local = make_local_tracker(self.cfg.local_tracker)
        self.local.init(frame, tuple(int(round(v)) for v in bbox))

    def _predicted_centre(self) -> np.ndarray:
        return centre(self.box) + self.vel * (self.t - self.last_seen)

    def _motion_error(self, bbox: np.ndarray) -> float:
        """Distance of a box centre from the motion prediction, in box heights."""
        return float(np.linalg.norm(centre(bbox) - self._predicted_centre())) / float(self.box[3])

    def _accept(self, frame: np.ndarray, bbox: np.ndarray, learn: bool) -> None:
        gap = max(self.t - self.last_seen, 1)
        self.vel = 0.7 * self.vel + 0.3 * (centre(bbox) - centre(self.box)) / gap
        self.box, self.last_seen, self.lost_since = bbox.astype(np.float32), self.t, None
        if learn:
            self.app.update(frame, bbox)

    def first(self, index: int, score: float) -> FrameTrack:
        return FrameTrack(index, self.box.copy(), float(score), "detected")

    def step(self, frame: np.ndarray, index: int) -> FrameTrack:
        """Track the next frame."""
        cfg = self.cfg
        self.t += 1
        hgt, wid = frame.shape[:2]
        if self.lost_since is not None:
            if (self.t - self.lost_since) % cfg.redetect_interval:
                return FrameTrack(index, None, 0.0, "lost")
            return self._redetect(frame, index)

        ok, raw = self.local.update(frame)
        box = clip_box(np.asarray(raw, np.float32), wid, hgt) if ok else None
        conf = 0.0
        if box is not None:
            # Confidence = looks like the athlete x moved as the athlete was moving: a correlation
            # tracker that jumps onto a neighbour of similar colours gets caught by the second term.
            motion = float(np.exp(-0.5 * (self._motion_error(box) / cfg.motion_sigma) ** 2))
            sim = self.app.similarity(frame, box)
            conf = sim * motion
            log.debug("t=%d box=%s sim=%.2f motion=%.2f vel=%s", self.t, np.round(box).tolist(), sim, motion,
                      np.round(self.vel, 1).tolist())
        self.since_verify += 1
        if box is not None and not (cfg.verify_interval and self.since_verify >= cfg.verify_interval):
            # Confident, or doubtful but verified recently: keep tracking (verification costs a detector pass).
            if conf >= cfg.verify_below or (conf >= cfg.accept_appearance and self.since_verify < cfg.doubt_interval):
                self._accept(frame, box, learn=conf >= cfg.verify_below)
                return FrameTrack(index, box, conf, "tracked")

        # Verification: one detector pass on a window around the box; a detection near the
        # predicted position (not near the tracker's box: that is what is in doubt), of the
        # same size, that looks like the athlete confirms the track and re-centres the tracker.
        self.since_verify = 0
        pc, (w, h) = self._predicted_centre(), self.box[2:]
        probe = np.array([pc[0] - w / 2, pc[1] - h / 2, w, h], np.float32)
        best, best_key = None, 0.0
        for d in self.det.detect_in_region(frame, probe, cfg.verify_context):
            ds = self.app.similarity(frame, d.bbox_px)
            err = self._motion_error(d.bbox_px)
            ratio = float(d.bbox_px[3]) / float(self.box[3])
            same_size = 1.0 / cfg.verify_scale <= ratio <= cfg.verify_scale
            log.debug("t=%d verify det=%s sim=%.2f err=%.2f ratio=%.2f",
                      self.t, np.round(d.bbox_px).tolist(), ds, err, ratio)
            if err <= cfg.verify_gate and same_size and ds >= cfg.detect_appearance and ds - 0.5 * err > best_key:
                best, best_key = (d, ds), ds - 0.5 * err
        if best is not None:
            d, ds = best
            self._restart(frame, d.bbox_px)        # re-centre and re-scale the local tracker
            self._accept(frame, d.bbox_px, learn=ds >= cfg.verify_below)
            return FrameTrack(index, d.bbox_px.copy(), max(ds, conf), "verified")
        if box is not None and conf >= cfg.accept_appearance:
            self._accept(frame, box, learn=False)  # e.g. athlete's back to the camera: the detector can't see it
            return FrameTrack(index, box, conf, "verified")
        return self._redetect(frame, index)

    def _redetect(self, frame: np.ndarray, index: int) -> FrameTrack:
        """Whole-image detection; pick the detection most like the athlete near where it should be."""
        cfg = self.cfg
        gate = cfg.redetect_gate + cfg.gate_growth * (self.t - self.last_seen)
        best, best_cost = None, np.inf
        for d in self.det.detect(frame):
            ds = self.app.similarity(frame, d.bbox_px)
            err = self._motion_error(d.bbox_px)
            ratio = float(d.bbox_px[3]) / float(self.box[3])
            log.debug("t=%d redetect det=%s sim=%.2f err=%.2f ratio=%.2f",
                      self.t, np.round(d.bbox_px).tolist(), ds, err, ratio)
            if ds < cfg.redetect_appearance or err > gate or not 0.5 <= ratio <= 2.0:
                continue
            cost = (1.0 - ds) + 0.1 * err
            if cost < best_cost:
                best, best_cost = (d, ds), cost
        if best is None:
            if self.lost_since is None:
                self.lost_since = self.t
            return FrameTrack(index, None, 0.0, "lost")
        d, ds = best
        self._restart(frame, d.bbox_px)
        self.vel[:] = 0.0                         # old velocity says nothing after a gap
        self.box, self.last_seen, self.lost_since = d.bbox_px.astype(np.float32), self.t, None
        self.since_verify = 0
        return FrameTrack(index, d.bbox_px.copy(), ds, "redetected")


# ---------------------------------------------------------------- athlete selection + streaming

@dataclass
class _Candidate:
    track_id: int
    det: Detection
    local: cv2.Tracker
    app: AppearanceModel
    centres: list[np.ndarray]          # box centres while the candidate is still followed
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

    @property
    def choice(self) -> AthleteChoice | None:
        return self._choice

    # -- public ---------------------------------------------------------------------------
    def push(self, frame_bgr: np.ndarray) -> list[FrameTrack]:
        if self._finished:
            raise RuntimeError("push() after finish()")
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"expected BGR uint8 (H,W,3), got {frame_bgr.dtype} {frame_bgr.shape}")
        index, self._n = self._n, self._n + 1
        if self._track is not None:                   # athlete chosen: plain streaming
            return [self._track.step(frame_bgr, index)]
        if self._start_index is None:                 # still looking for anyone
            return self._search(frame_bgr, index)
        self._follow_candidates(frame_bgr)
        self._window.append(frame_bgr.copy())
        if len(self._window) >= self.config.selection_window:
            return self._select()
        return []

    def finish(self) -> list[FrameTrack]:
        if self._finished:
            return []
        self._finished = True
        if self._start_index is None:
            raise NoPersonFound(f"no person detected in {self._n} frames")
        if self._track is None:
            return self._select()
        return []

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
        for k, d in enumerate(dets):
            local = make_local_tracker(cfg.local_tracker)
            local.init(frame, tuple(int(round(v)) for v in d.bbox_px))
            self._candidates.append(_Candidate(k, d, local, AppearanceModel(frame, d.bbox_px), [centre(d.bbox_px)]))
        if len(dets) == 1:
            self._choice = AthleteChoice(0, "only person detected", [self._cand_dict(self._candidates[0])])
            return self._begin(frame, index, dets[0].bbox_px, dets[0].score)
        self._window = [frame.copy()]   # copies: a caller may reuse its frame buffer
        return []

    def _follow_candidates(self, frame: np.ndarray) -> None:
        """Cheap candidate following in the window: local tracker + appearance guard only."""
        hgt, wid = frame.shape[:2]
        for c in self._candidates:
            if not c.alive:
                continue
            ok, raw = c.local.update(frame)
            box = clip_box(np.asarray(raw, np.float32), wid, hgt) if ok else None
            # Stop following once the box no longer looks like the person (drifted / occluded):
            # its later motion would be the background's.
            if box is None or c.app.similarity(frame, box) < self.config.accept_appearance:
                c.alive = False
                continue
            c.centres.append(centre(box))

    def _cand_dict(self, c: _Candidate) -> dict:
        return {"track_id": c.track_id, "bbox_px": [round(float(v), 1) for v in c.det.bbox_px],
                "motion_px": round(c.motion_px, 1), "score": round(c.det.score, 3)}

    def _select(self) -> list[FrameTrack]:
        """Pick the candidate that moved most, then track it properly over the buffered window."""
        best = max(self._candidates, key=lambda c: c.motion_px)
        n = len(self._window)
        self._choice = AthleteChoice(best.track_id, f"moved most ({best.motion_px:.0f} px over {n} frames)",
                                     [self._cand_dict(c) for c in self._candidates])
        frames, self._window, self._candidates = self._window, [], []
        out = self._begin(frames[0], self._start_index, best.det.bbox_px, best.det.score)
        for k, f in enumerate(frames[1:], start=1):
            out.append(self._track.step(f, self._start_index + k))
        return out

    def _choose_target(self, frame: np.ndarray, index: int, dets: list[Detection]) -> list[FrameTrack]:
        self._start_index = index
        cands = [{"track_id": k, "bbox_px": [round(float(v), 1) for v in d.bbox_px], "motion_px": 0.0,
                  "score": round(d.score, 3), "iou": round(iou_xywh(d.bbox_px, self.target), 3)}
                 for k, d in enumerate(dets)]
        best = max(range(len(dets)), key=lambda k: cands[k]["iou"], default=None)
        if best is not None and cands[best]["iou"] > 0.1:
            self._choice = AthleteChoice(best, f"matched target_bbox (IoU {cands[best]['iou']:.2f})", cands)
            return self._begin(frame, index, dets[best].bbox_px, dets[best].score)
        box = clip_box(self.target, frame.shape[1], frame.shape[0])
        if box is None:
            hgt, wid = frame.shape[:2]
            raise ValueError(f"target_bbox_px {self.target.tolist()} is outside the {wid}x{hgt} frame")
        self._choice = AthleteChoice(-1, "target_bbox used as given (no detected person overlaps it)", cands)
        return self._begin(frame, index, box, 1.0)

    def _begin(self, frame: np.ndarray, index: int, bbox: np.ndarray, score: float) -> list[FrameTrack]:
        self._track = _TargetTrack(self.config, self.detector, frame, np.asarray(bbox, np.float32))
        return [self._track.first(index, score)]
