"""`TargetTrack`: track / verify / re-detect one athlete from a known first box (the state
machine of the single-target tracker: tracked, verified, lost, redetected)."""
from __future__ import annotations

import logging

import numpy as np

from .appearance import AppearanceModel
from .background import ForegroundModel
from .config import TrackerConfig
from .detector import Detection, PersonDetector, Tile
from .geometry import box_at, centre, clip_box, iou_xywh
from .local_tracker import make_local_tracker
from .motion import ConstantVelocity
from .results import FrameTrack, PersonBox
from .verifier import Verifier

log = logging.getLogger(__name__)


class TargetTrack:
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
        self.skipped = 0                            # periodic verifications skipped since the last one that ran
        self.since_fit = 0
        self.confident = 0                          # confident frames since the last positive sample
        self.still = 0                              # frames in a row the local tracker's box was on the background
        self.rest = centre(self.box)                # where the box last came to rest...
        self.rest_t = 0                             # ...and since when (t)
        self.confirmed_t = 0                        # t of the last detection accepted as the athlete (or the first box)
        self.seen: list[Detection] = []             # detections of this frame that are not the athlete
        self._redetects = 0                         # whole-image re-detections in the current loss...
        self._redetects_loss: int | None = None     # ...which began at this t

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

    def _agree(self, bbox: np.ndarray, conf: float, others: list[PersonBox] = ()) -> bool:
        """The periodic verification may be skipped (TrackerConfig.verify_skip_max): the local
        tracker's box is confident (verifier x motion), nobody else followed is within
        `verify_skip_clear` box heights (a crossing person is where a box slides off the athlete),
        and it is on something that moves (static camera: the foreground model confirms; no
        opinion, or a moving camera, never skips)."""
        cfg = self.cfg
        if self.skipped >= cfg.verify_skip_max or conf < cfg.verify_skip_above or self.fg is None:
            return False
        c = centre(bbox)
        if any(float(np.linalg.norm(centre(o.bbox_px) - c)) < cfg.verify_skip_clear * self.h for o in others):
            return False
        fs = self.fg.share(bbox)
        return fs is not None and fs >= cfg.fg_min

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

    def _reach(self) -> float:
        """How far (px) from where they were last seen the athlete can be now (TrackerConfig.max_step)."""
        n = max(self.t - self.last_seen, 1)
        step = max(2.0 * float(np.linalg.norm(self.kf.velocity)), self.cfg.max_step * self.h)
        return self.cfg.reach_slack * self.h + n * step

    def _reachable(self, bbox: np.ndarray) -> bool:
        """Could the athlete have got there since last seen?"""
        return float(np.linalg.norm(centre(bbox) - centre(self.box))) <= self._reach()

    def _budget(self, tiles: list[Tile], wid: int, hgt: int) -> list[Tile]:
        """The tiles a re-detection runs. Every `redetect_full_every`-th re-detection of a loss
        (the first excepted, below) sweeps every tile: they also find the other people, whom the
        athlete must not be taken for (evaluation set, motion_blur tuning seed 3, F 0.50 -> 0.32
        when the first one looked only near the athlete), and an athlete standing still is part of
        the background model. In between only the tiles that can hold the centre of a reachable
        detection (`_pick` refuses the others) and, with a static camera, a person on a moving
        region.

        The first re-detection of a loss (`redetect_first_motion`, static camera): every tile that
        can hold a person on a moving region anywhere (the other people who walk), plus the tiles
        within reach when the athlete's last box is not foreground (standing still, or gone from
        it); a still person elsewhere is found by the later full sweeps, or is already followed.
        Most losses on vtest.avi end before a second re-detection, so this one sweep was most of
        the tracker's detector time (35 passes; docs/tracker.md, "Per-part costs").

        The later full sweeps, once the athlete walked out of the frame (`redetect_out_motion`,
        `_left_frame`): every tile on a moving region anywhere, as the first one (they can only
        come back walking in)."""
        cfg = self.cfg
        r = self._redetects
        self._redetects += 1
        full = r % cfg.redetect_full_every == 0 if cfg.redetect_full_every else True
        first = r == 0 and cfg.redetect_first_motion
        out = r > 0 and cfg.redetect_out_motion and self._left_frame(wid, hgt)
        if full and not (cfg.redetect_motion and (first or out)):
            return tiles
        c = centre(self.box)
        reach = self._reach()
        near = [t for t in tiles if t.distance(c) <= reach] if cfg.redetect_reach or full else tiles
        if not cfg.redetect_motion or self.fg is None:
            return tiles if full else near
        blobs = self.fg.blobs(cfg.redetect_blob_area * float(self.size[0] * self.size[1]))
        if blobs is None:                     # no opinion (warm-up, light change, a moving camera)
            return tiles if full else near
        if full:                              # the first re-detection of a loss, or the athlete left the frame
            keep = self._motion_tiles(tiles, blobs, wid, hgt, None)
            if first:
                share = self.fg.share(self.box)
                if share is None or share < cfg.fg_min:
                    keep.update(near)
            return [t for t in tiles if t in keep]
        keep = self._motion_tiles(near, blobs, wid, hgt, reach if cfg.redetect_reach else None)
        return [t for t in near if t in keep]

    def _left_frame(self, wid: int, hgt: int) -> bool:
        """The athlete walked out of the frame: last seen on its edge (the box is clipped to the
        frame), and the prediction is outside it."""
        x, y, w, h = (float(v) for v in self.box)
        m = 2.0
        on_edge = x <= m or y <= m or x + w >= wid - m or y + h >= hgt - m
        cx, cy = (float(v) for v in self.kf.centre)
        return on_edge and not (0.0 <= cx <= wid and 0.0 <= cy <= hgt)

    def _motion_tiles(self, tiles: list[Tile], blobs: list[np.ndarray], wid: int, hgt: int,
                      reach: float | None) -> set[Tile]:
        """The tiles that hold whole a person of the athlete's size centred anywhere on a moving
        region (within `reach` + half a height of the last box; None: anywhere)."""
        c = centre(self.box)
        keep: set[Tile] = set()
        for b in blobs:
            bc = centre(b)
            # a blob may be part of a person (legs, arms): the person's centre is within half a height
            if reach is not None and float(np.linalg.norm(bc - c)) > reach + 0.5 * self.h:
                continue
            # at least the athlete's size around the blob, inside the frame
            bw, bh = max(float(b[2]), float(self.size[0])), max(float(b[3]), float(self.size[1]))
            x1, y1 = max(bc[0] - bw / 2, 0.0), max(bc[1] - bh / 2, 0.0)
            x2, y2 = min(bc[0] + bw / 2, float(wid)), min(bc[1] + bh / 2, float(hgt))
            # every tile that holds whole a person of the athlete's size centred anywhere on it: a
            # region may be several people (vtest.avi frame 63: the athlete and her neighbour), and
            # the detector does not find everyone in every tile that holds them (there: in 1 of 2)
            hw, hh = 0.5 * float(self.size[0]), 0.5 * float(self.size[1])
            keep.update(t for t in tiles if t.x0 + hw <= x2 and x1 <= t.x0 + t.side - hw
                        and t.y0 + hh <= y2 and y1 <= t.y0 + t.side - hh)
        return keep

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
        due = bool(cfg.verify_interval) and self.since_verify >= cfg.verify_interval * (1 + self.skipped)
        if due and box is not None and not on_other and not on_bg and self._agree(box, conf, others):
            self.skipped += 1                      # KCF and the verifier agree: no detector pass this time
            due = False
        if box is not None and not on_other and not on_bg and not due:
            # Confident, or doubtful but verified recently: keep tracking (verification costs a detector pass).
            if conf >= cfg.verify_below or (conf >= cfg.accept_score and self.since_verify < cfg.doubt_interval):
                self._accept(frame, box, conf, 0.12, others)
                return FrameTrack(index, box, conf, "tracked")

        # Verification: one detector pass on a window around the prediction (and around the
        # tracker's box, if that is elsewhere); a detection the verifier accepts, near the
        # prediction and of the athlete's size, confirms the track and re-centres the tracker.
        self.since_verify, self.skipped = 0, 0
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
        if self.lost_since is None or self._redetects_loss != self.lost_since:
            self._redetects, self._redetects_loss = 0, self.lost_since
        hgt, wid = frame.shape[:2]
        dets = self.det.detect(frame, person_height=self.h, select=lambda tiles: self._budget(tiles, wid, hgt))
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
        self.since_verify, self.skipped, self.still = 0, 0, 0
        self.rest, self.rest_t = centre(b), self.t
        self._accept(frame, b, s, 0.05, others, detected=resize)
        return FrameTrack(index, b.copy(), s, "redetected")
