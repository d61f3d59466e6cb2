"""Tracking by detection of everyone (ByteTrack / OC-SORT style), on BlazePose's person detector.

Per frame:
1. every track's Kalman filter predicts its box; confirmed tracks also run a local tracker
   (KCF, `local_tracker.LocalTracker`), the bridge for frames where the detector misses them
   (back to the camera, motion blur, upside down in a flip);
2. detection on a budget (`_plan`): the whole image (tiles for small people) on a schedule, when
   something moves where no track is (background subtraction), while nobody is tracked, or while a
   track that should be in view is lost; otherwise one model pass on a window around each track that
   is due (every `roi_every` frames, every frame while in doubt; none for a track that has not moved);
3. association in three stages: high-score detections vs tracks (IoU with the prediction or the
   local tracker's box + appearance; appearance alone within a speed-widened gate when IoU fails),
   low-score detections vs the remaining tracks (IoU only: ByteTrack's second stage), then the
   remaining high-score detections vs lost tracks (re-identification: appearance + reach limit);
4. unmatched tracks are carried by their local tracker while its box still looks like them and is
   not on the background, for at most `bridge_s`; then predicted, then lost (no box), then removed
   after `lost_s`; unmatched high-score detections start tentative tracks (confirmed on a second hit).

Low-score evidence besides the detector's: a confirmed track the detector missed is carried on a
moving blob of the static camera's background model (never started from one), and tracks lost
under a second ago take part in the first association stages. Every box records the bounds of
the moving pixels around it (`Obs.extent`: arms and legs), which the choice's activity reads.

After the clip `finish()` splits a track where it goes from walking to standing (or the reverse:
an identity switch, static camera), stitches tracks that never overlap in time and look alike
(someone who left and came back after the lost buffer) or that end and start at the same place
where both stood still (someone exercising in place, cut by detector gaps), and fills short gaps
by interpolation.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import cv2
import numpy as np

from ..background import ForegroundModel
from ..detector import Detection, PersonDetector
from ..geometry import centre, clip_box
from ..local_tracker import LocalTracker
from . import appearance as app
from .association import assign, iou_matrix
from .kalman import BoxKalman


@dataclass
class MotConfig:
    high: float = 0.8              # detections at/above: first stage, re-identification
    birth: float = 0.7             # a detection on nobody followed starts a (tentative) track at this score
    low: float = 0.5               # detector threshold (second stage: IoU only, near a track)
    full_every_s: float = 4.0      # scheduled whole-image detection (new people who do not move much)
    full_every_static_s: float = 8.0   # ...with a static camera's background model (motion finds the others)
    full_min_gap_s: float = 2.0    # whole-image detection triggered by motion / a lost track at most this often
    partial_full: bool = True      # ...then only the tiles around the moving blobs nobody explains / small lost tracks
    partial_max: int = 4           # (more blobs than this: the whole image)
    partial_h: float = 0.25        # a lost track this x the frame's short side tall or more: the whole image
    complete_every: int = 3        # every N-th whole-image detection at all scales, the others at the tracks' scale
    roi_every: int = 3             # a track is checked by a detector pass around it every N frames...
    roi_every_sure: int = 5        # ...or N for a sure track (`_sure`: confirmed, well detected last time,
    sure_hits: int = 4             # the local tracker on the prediction, nobody within `alone_h` x its height)
    sure_score: float = 0.8
    sure_agree: float = 0.15
    alone_h: float = 2.5
    still_px: float = 0.03         # ...unless it moved less than this x its height since its last detection
    still_max: int = 8             # (but at least every N frames)
    roi_context: float = 2.0       # window side = this x the box's long side (more for fast tracks)
    confirm_hits: int = 2          # a tentative track is confirmed on its 2nd detection...
    tentative_frames: int = 3      # ...within this many frames
    bridge_s: float = 1.5          # the local tracker may carry a track without a detection this long (a flip: ~1 s)
    bridge_sim: float = 0.55       # ...while its box still looks like the track (appearance similarity)
    bg_share: float = 0.15         # ...and is not on the background (static camera: foreground share of the box)
    predict_frames: int = 2        # then a box from the prediction alone for this many frames, then lost
    search_sim: float = 0.75       # colour search (no detection, local tracker failed): similarity at least this
    search_sim_lost: float = 0.8   # ... for a lost track, within `search_s` of the loss
    search_s: float = 1.0
    lost_s: float = 4.0            # lost tracks can be re-identified online this long, then they are closed
    min_iou: float = 0.2           # first stage: IoU with the prediction / local box
    app_gate: float = 0.6          # appearance-only matches (IoU failed): similarity at least this
    reid_sim: float = 0.85         # re-identification of a lost track: appearance similarity at least this
    fresh_s: float = 1.0           # lost for less than this: re-identified by position + motion ...
    fresh_sim: float = 0.3         # ... with a similarity of at least this (a flip changes the look)
    fresh_score: float = 0.6       # ... from a detection of at least this score
    max_step_s: float = 3.0        # nobody moves more than this many box heights per second (reach limit)
    carry_s: float = 3.0           # a foreground blob may carry a track without a detection this long (low-score
                                   # evidence, ByteTrack's second stage: continues tracks, never starts one)
    carry_span: float = 0.5        # ...or moving fragments on a still track's prediction spanning this x its height
    still_stitch_sim: float = 0.3  # offline stitching of a person in place (A ends and B starts where A stood,
    still_speed: float = 0.5       # both slower than this many box heights/s there): similarity at least this
    stop_moving: float = 0.3       # a track (static camera) that moves faster than this (box heights/s) for
    stop_still: float = 0.12       # `stop_s` and then slower than this for `stop_s` (or the reverse) is split
    stop_s: float = 1.0            # there: a walker's track that took over someone standing (identity switch)
    stitch_sim: float = 0.88        # offline stitching of tracks that never overlap: similarity at least this
    stitch_gap_s: float = 20.0     # ...and a gap of at most this long
    interpolate_s: float = 0.7     # gaps inside a track up to this long are filled by interpolation
    local_tracker: str = "kcf"
    kcf_max_patch: int = 80 * 80   # KCF's window (2.5 x the box) larger than this: followed at half resolution
    foreground: bool = True        # background subtraction: motion-triggered detection, bridge check


@dataclass
class Obs:
    """A track in one frame."""
    box: np.ndarray                # (4,) x, y, w, h
    score: float                   # confidence 0..1
    state: str                     # "detected" | "tracked" (local tracker) | "predicted" | "interpolated"
    angle: float | None = None     # body axis (hip -> body circle) angle, radians, from a detection
    extent: np.ndarray | None = None   # bounds of the moving pixels on and around the box (static camera):
                                       # they widen with arms and legs where the detector's box does not


class Track:
    def __init__(self, tid: int, t: int, det: Detection, desc: np.ndarray | None, box: np.ndarray | None = None):
        self.id = tid
        b = det.bbox_px if box is None else box
        self.kf = BoxKalman(b)
        self.gallery = app.Gallery(desc if desc is not None else np.zeros((3, 136), np.float32))
        self.has_desc = desc is not None
        self.hits = 1
        self.first = t
        self.last_det = t             # frame of the last matched detection
        self.last_seen = t            # ... or local-tracker frame
        self.state = "tentative"      # tentative | active | lost | removed
        self.local: LocalTracker | None = None
        self.local_box: np.ndarray | None = None
        self.det_box = np.asarray(b, np.float32).copy()   # box at the last detection (motion gate)
        self.history: dict[int, Obs] = {t: Obs(np.asarray(b, np.float32).copy(), det.score, "detected", axis_angle(det))}
        self.reid: list[int] = []     # frames where it was re-identified

    @property
    def h(self) -> float:
        return float(max(self.kf.x[3], 4.0))


def axis_angle(det: Detection) -> float | None:
    if det.keypoints_px is None:
        return None
    v = det.keypoints_px[1] - det.keypoints_px[0]
    return float(np.arctan2(v[1], v[0]))


class MultiTracker:
    """Follows everyone; `step(frame)` per frame, `finish()` once, then `tracks` holds every track."""

    def __init__(self, detector: PersonDetector, fps: float = 25.0, config: MotConfig | None = None):
        self.cfg = config or MotConfig()
        self.det = detector
        self.fps = fps if fps and fps > 0 else 25.0
        self.tracks: list[Track] = []
        self.closed: list[Track] = []
        self.t = -1
        self._next = 0
        self._last_full = -10 ** 9        # the last whole-image detection, complete or around some regions
        self._last_whole = -10 ** 9       # ... complete
        self._partial = 0
        self._fulls = 0
        self._weights: np.ndarray | None = None
        self._fg = ForegroundModel() if self.cfg.foreground else None
        self._size = (0, 0)
        self.stats = {"full": 0, "roi": 0, "frames": 0}
        self.seed_id: int | None = None    # the track started from a given target box
        self._blobs_t: tuple[int, list] | None = None   # this frame's foreground blobs (computed once, on demand)
        self._apart: set[tuple[int, int]] = set()           # (a, b): pieces of one track split apart, never stitched back
        self._half_t, self._half_of, self._half_img = -1, None, None   # this frame at half size (local trackers)

    # ---------------------------------------------------------------- helpers
    def _frames(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.fps)))

    def _new(self, det: Detection, desc, box=None) -> Track:
        tr = Track(self._next, self.t, det, desc, box)
        self._next += 1
        self.tracks.append(tr)
        return tr

    def _start_local(self, frame: np.ndarray, tr: Track, box: np.ndarray) -> None:
        box = np.asarray(box, np.float32)
        if self.cfg.local_tracker == "kcf":
            tr.local = HalvedKCF(box, self.cfg.kcf_max_patch)
            tr.local.init(self._half(frame) if tr.local.half else frame, box)
        else:
            tr.local = LocalTracker(self.cfg.local_tracker)
            tr.local.init(frame, box)
        tr.local_box = box.copy()

    def _half(self, frame: np.ndarray) -> np.ndarray:
        """The frame at half size, computed once per frame for every local tracker (every other pixel:
        the image KCF's own halving gives it, see `HalvedKCF`)."""
        if self._half_t != self.t or self._half_of is not frame:
            self._half_t, self._half_of = self.t, frame
            self._half_img = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2),
                                        interpolation=cv2.INTER_NEAREST_EXACT)
        return self._half_img

    def live(self) -> list[Track]:
        return [tr for tr in self.tracks if tr.state in ("tentative", "active")]

    # ---------------------------------------------------------------- per frame
    def step(self, frame: np.ndarray, target_box: np.ndarray | None = None) -> None:
        """Track one BGR frame (H, W, 3). target_box: on the first frame only, the athlete's given box."""
        self.t += 1
        t, cfg = self.t, self.cfg
        hgt, wid = frame.shape[:2]
        self._size = (wid, hgt)
        self.stats["frames"] += 1
        if self._weights is None:
            self._weights = app.scene_weights(frame)
        if self._fg is not None:
            self._fg.apply(frame)
        for tr in self.tracks:
            tr.kf.predict()
        for tr in self.live():                       # the local tracker runs on every frame it may be needed
            if tr.local is not None and t - tr.last_det <= self._frames(cfg.bridge_s):
                half = isinstance(tr.local, HalvedKCF) and tr.local.half
                ok, box = tr.local.update(self._half(frame) if half else frame)
                tr.local_box = clip_box(box, wid, hgt) if ok else None
            else:
                tr.local, tr.local_box = None, None

        full, windows, regions = self._plan(frame, force_full=target_box is not None or t == 0)
        if full and regions is None:
            self._last_full = self._last_whole = t
            self.stats["full"] += 1
            heights = [tr.h for tr in self.live() if tr.state == "active"]
            self._fulls += 1
            # every `complete_every`-th whole-image detection looks at all scales; the others only at
            # the scale of the people already followed (1 pass for 400 px people instead of 61 tiles)
            ph = None if (self._fulls - 1) % cfg.complete_every == 0 or not heights else 0.8 * min(heights)
            dets = self.det.detect(frame, person_height=ph, min_score=cfg.low)
            examined = set(id(tr) for tr in self.tracks)
        else:
            dets, examined = [], set()
            if full:                                  # the whole image's tiles around these regions only
                self._last_full = t
                self.stats["full"] += 1
                self._partial += 1
                picked: list = []
                dets += self.det.detect(frame, min_score=cfg.low, select=lambda tiles: picked.extend(
                    _tiles_for(tiles, regions, wid, hgt)) or picked)
                inside = [tr for tr in self.tracks if any(_inside(tr.kf.box, np.array([tl.x0, tl.y0, tl.side, tl.side]))
                                                          for tl in picked)]
                examined = set(id(tr) for tr in inside)
                windows = [(w, c) for w, c in windows if not c <= examined]
            for win, covered in windows:
                self.stats["roi"] += 1
                dets += self.det.detect_in_region(frame, win, context=1.0, min_score=cfg.low)
                examined |= covered
            if len(windows) + full > 1:
                dets = self.det._merge(dets, wid, hgt)
        descs = [app.describe(frame, d.bbox_px, self._weights) for d in dets]
        self._associate(frame, dets, descs, examined, target_box)

    def _plan(self, frame: np.ndarray, force_full: bool) -> tuple[bool, list[tuple[np.ndarray, set]], list | None]:
        """Whole-image detection or windows around tracks: -> (full, [(window x,y,w,h, ids of tracks it
        covers)], regions). regions: None, or with `full` the boxes (x,y,w,h) where a whole-image
        detection is needed (person-sized moving blobs nobody explains, around small lost tracks'
        predictions): only the tiles around them run, and the windows of the tracks elsewhere."""
        cfg, t = self.cfg, self.t
        since = t - self._last_full
        live = self.live()
        # a static camera's background model sends newcomers who move to the tiles around them (below):
        # the complete whole-image detection is left for those who do not move, less often
        motion = cfg.partial_full and self._fg is not None and self._fg.reliable and self._fg.static
        if force_full or t - self._last_whole >= self._frames(cfg.full_every_static_s if motion else cfg.full_every_s):
            return True, [], None
        regions: list | None = None
        if since >= self._frames(cfg.full_min_gap_s):
            if not [tr for tr in live if tr.state == "active"]:
                return True, [], None                    # nobody followed: look everywhere
            wid, hgt = self._size
            short = float(min(wid, hgt))
            regions = []
            for tr in self.tracks:                       # someone lost who should still be in view
                if tr.state == "lost" and t - tr.last_seen <= self._frames(1.0):
                    b = clip_box(tr.kf.box, wid, hgt)
                    if b is None:
                        continue
                    if not cfg.partial_full or b[3] >= cfg.partial_h * short:
                        return True, [], None            # a big person (an athlete in a flip): all scales, everywhere
                    m = 0.5 * float(b[3])                # a small one: the tiles around their prediction
                    regions.append(np.array([b[0] - m, b[1] - m, b[2] + 2 * m, b[3] + 2 * m], np.float32))
            moving = self._unexplained_motion(live)
            if moving and not cfg.partial_full:
                return True, [], None
            regions += moving
            if len(regions) > cfg.partial_max:
                return True, [], None                    # much to look for: the whole image
            regions = regions or None
        due = []
        others = np.array([centre(tr.local_box if tr.local_box is not None else tr.kf.box) for tr in live]) \
            if live else np.zeros((0, 2))
        for i, tr in enumerate(live):
            gap = t - tr.last_det
            still = tr.local_box is not None and \
                np.linalg.norm(centre(tr.local_box) - centre(tr.det_box)) < cfg.still_px * tr.h
            every = cfg.still_max if still else cfg.roi_every
            if not still and gap >= every and gap < cfg.roi_every_sure and self._sure(tr, others, i):
                every = cfg.roi_every_sure
            if tr.state == "tentative" or gap >= every or (tr.local_box is None and gap >= 1):
                due.append(tr)
        # recently lost tracks: a window around the prediction (occlusion: they reappear nearby)
        due += [tr for tr in self.tracks if tr.state == "lost" and t - tr.last_seen <= self._frames(0.5)]
        windows: list[tuple[np.ndarray, set]] = []
        for tr in sorted(due, key=lambda tr: -tr.h):
            b = tr.kf.box if tr.local_box is None else tr.local_box
            if any(_inside(b, w) for w, _ in windows):
                windows[[_inside(b, w) for w, _ in windows].index(True)][1].add(id(tr))
                continue
            ctx = cfg.roi_context * (1.0 + min(2.0, 4.0 * tr.kf.speed * max(1, t - tr.last_seen)))
            side = max(float(b[2]), float(b[3])) * ctx
            c = centre(b)
            windows.append((np.array([c[0] - side / 2, c[1] - side / 2, side, side], np.float32), {id(tr)}))
        return regions is not None, windows, regions

    def _sure(self, tr: Track, others: np.ndarray, i: int) -> bool:
        """A track the local tracker can carry a little longer between window passes: confirmed, its
        last detection a good one (high score, its look), the local tracker on the motion model's
        prediction, and nobody within `alone_h` of its height (no one to cross or swap with)."""
        cfg = self.cfg
        if tr.state != "active" or tr.local_box is None or tr.hits < cfg.sure_hits:
            return False
        o = tr.history.get(tr.last_det)
        if o is None or o.state != "detected" or o.score < cfg.sure_score:
            return False
        c = centre(tr.local_box)
        if np.linalg.norm(c - tr.kf.x[:2]) > cfg.sure_agree * tr.h:
            return False
        d = np.linalg.norm(others - c, axis=1)
        d[i] = np.inf
        return bool(d.size == 0 or d.min() > cfg.alone_h * tr.h)

    def _unexplained_motion(self, live: list[Track]) -> list[np.ndarray]:
        """Something moves (static camera) where no track is: the person-sized foreground blobs (x,y,w,h)."""
        fg = self._fg
        if fg is None or not fg.reliable:
            return []
        mask = fg.mask.astype(np.uint8)
        s = fg.scale
        for tr in live:
            x, y, w, h = (float(v) * s for v in tr.kf.box)
            cv2.rectangle(mask, (int(x - 0.2 * w), int(y - 0.1 * h)), (int(x + 1.2 * w), int(y + 1.1 * h)), 0, -1)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        min_h = max(6.0, 0.05 * mask.shape[0])          # a person at least 5% of the frame tall
        return [stats[k, :4].astype(np.float32) / s for k in range(1, n)
                if stats[k, cv2.CC_STAT_HEIGHT] >= min_h and stats[k, cv2.CC_STAT_AREA] >= 0.25 * min_h * min_h]

    # ---------------------------------------------------------------- association
    def _associate(self, frame: np.ndarray, dets: list[Detection], descs: list, examined: set,
                   target_box: np.ndarray | None) -> None:
        cfg, t = self.cfg, self.t
        hgt, wid = frame.shape[:2]
        if target_box is not None:
            self._seed(frame, target_box, dets, descs)
        live = [tr for tr in self.live() if tr.id != self.seed_id or t > 0]
        # ByteTrack's pool: tracks lost under `fresh_s` ago take part in the first two stages too (by
        # IoU with where they were predicted): a person standing still whom the detector missed for a
        # moment is found again by their own track before a walker's track passing them takes them
        n_live = len(live)
        live += [tr for tr in self.tracks if tr.state == "lost" and t - tr.last_seen <= self._frames(cfg.fresh_s)]
        high = [j for j, d in enumerate(dets) if d.score >= cfg.high]
        low = [j for j, d in enumerate(dets) if d.score < cfg.high]
        matched: dict[int, int] = {}                                   # det index -> track index in live

        # stage 1: high-score detections; stage 2: low-score ones vs the tracks left (ByteTrack)
        for stage, js, min_app in ((1, high, cfg.app_gate), (2, low, cfg.app_gate + 0.1)):
            rest = [i for i in range(len(live)) if i not in matched.values()]
            if not rest or not js:
                continue
            score = self._pair_scores([live[i] for i in rest], [dets[j] for j in js], [descs[j] for j in js], min_app)
            for r, i in enumerate(rest):
                if i >= n_live:
                    score[r][score[r] < 1.0] = -1.0                # lost: IoU matches only
            pairs, _, _ = assign(score, 0.05)
            for r, k in pairs:
                matched[js[k]] = rest[r]
        for j, i in matched.items():
            if live[i].state == "lost":
                live[i].state = "active"
                live[i].reid.append(t)
            self._update(frame, live[i], dets[j], descs[j])

        # stage 3: re-identification of lost tracks: appearance within the reach limit; just lost
        # (< `fresh_s`), position and motion suffice with a weaker likeness (a flip changes the look)
        fresh = self._frames(cfg.fresh_s)
        lost = [tr for tr in self.tracks if tr.state == "lost"]
        free = [j for j, d in enumerate(dets) if j not in matched and descs[j] is not None and
                (d.score >= cfg.high or (d.score >= cfg.fresh_score and any(t - tr.last_seen <= fresh for tr in lost)))]
        if free and lost:
            score = np.full((len(lost), len(free)), -1.0)
            for i, tr in enumerate(lost):
                n = t - tr.last_seen
                reach = (1.0 + n * max(2.0 * tr.kf.speed, cfg.max_step_s / self.fps)) * tr.h
                last = tr.history[tr.last_seen].box
                for k, j in enumerate(free):
                    d = np.linalg.norm(centre(dets[j].bbox_px) - centre(last))
                    ratio = float(np.sqrt(dets[j].bbox_px[2] * dets[j].bbox_px[3] / max(last[2] * last[3], 1.0)))
                    a = tr.gallery.similarity(descs[j])
                    if d > reach or not 0.5 < ratio < 2.0:
                        continue
                    if a >= cfg.reid_sim and dets[j].score >= cfg.high:
                        score[i, k] = a
                    elif n <= fresh and a >= cfg.fresh_sim:
                        # where the motion model expects them, not just anywhere within reach
                        dp = np.linalg.norm(centre(dets[j].bbox_px) - tr.kf.x[:2])
                        if dp <= (0.5 + 0.1 * n) * tr.h:
                            score[i, k] = 0.5 * a * (1.0 - dp / ((0.5 + 0.1 * n) * tr.h))
            pairs, _, _ = assign(score, 0.01)
            for i, k in pairs:
                tr, j = lost[i], free[k]
                tr.kf = BoxKalman(dets[j].bbox_px)
                tr.state = "active"
                tr.reid.append(t)
                self._update(frame, tr, dets[j], descs[j])
                matched[j] = -1

        # the tracks not matched: local tracker bridge, prediction, lost, removed
        done = [tr.history[t].box for tr in self.tracks if t in tr.history]
        for tr in self.live():
            if t in tr.history:
                continue
            if tr.state == "tentative":
                if t - tr.first >= cfg.tentative_frames:
                    tr.state = "removed"
                continue
            if self._bridge(frame, tr, done, id(tr) in examined) or self._colour_search(frame, tr, done, cfg.search_sim) \
                    or self._blob_carry(tr, done):
                done.append(tr.history[t].box)
                continue
            if t - tr.last_seen <= cfg.predict_frames:
                b = clip_box(tr.kf.box, wid, hgt)
                if b is not None:
                    tr.history[t] = Obs(b, 0.1, "predicted")
                    continue
            tr.state, tr.local, tr.local_box = "lost", None, None
        for tr in self.tracks:                                   # just lost: look for their colours nearby
            if tr.state == "lost" and tr.has_desc and t - tr.last_seen <= self._frames(cfg.search_s) and \
                    t not in tr.history and self._colour_search(frame, tr, done, cfg.search_sim_lost):
                tr.state = "active"
                tr.reid.append(t)
                done.append(tr.history[t].box)
        for tr in self.tracks:
            if tr.state == "lost" and t - tr.last_seen > self._frames(cfg.lost_s):
                tr.state = "removed"

        # births: high-score detections on nobody followed
        for j, d in enumerate(dets):
            if j in matched or d.score < cfg.birth:
                continue
            b = dets[j].bbox_px
            if done and iou_matrix(b[None], np.array(done)).max() > 0.3:
                continue
            tr = self._new(dets[j], descs[j])
            if t == 0:                                           # everyone in the first frame: no doubt to settle
                tr.state = "active"
                self._start_local(frame, tr, b)
            done.append(b)
        self._blobs_t = None
        self._measure_extents()
        self.closed += [tr for tr in self.tracks if tr.state == "removed" and tr.hits >= cfg.confirm_hits]
        self.tracks = [tr for tr in self.tracks if tr.state != "removed"]

    def _pair_scores(self, tracks: list[Track], dets: list[Detection], descs: list, min_app: float) -> np.ndarray:
        """(tracks, dets) association scores, -1 = no match. IoU with the prediction or the local
        tracker's box (+ appearance); when IoU fails (fast, rotated, a flip: the box changes shape),
        appearance alone within a gate widened by the track's speed and the time since it was seen."""
        cfg, t = self.cfg, self.t
        score = np.full((len(tracks), len(dets)), -1.0)
        dboxes = np.array([d.bbox_px for d in dets])
        iou_p = iou_matrix(np.array([tr.kf.box for tr in tracks]), dboxes)
        iou_l = iou_matrix(np.array([tr.local_box if tr.local_box is not None else tr.kf.box for tr in tracks]), dboxes)
        for i, tr in enumerate(tracks):
            gap = max(1, t - tr.last_seen)
            gate = (0.6 + 3.0 * tr.kf.speed * gap + 0.05 * gap) * tr.h
            size = float(np.sqrt(tr.kf.x[2] * tr.kf.x[3]))
            for k, d in enumerate(dets):
                a = tr.gallery.similarity(descs[k]) if tr.has_desc else 0.7
                an = float(np.clip((a - 0.5) / 0.4, 0.0, 1.0))
                iou = max(iou_p[i, k], iou_l[i, k])
                if iou >= cfg.min_iou:
                    score[i, k] = 1.0 + iou + 0.5 * an
                    continue
                dist = np.linalg.norm(centre(d.bbox_px) - tr.kf.x[:2])
                ratio = float(np.sqrt(d.bbox_px[2] * d.bbox_px[3])) / max(size, 1.0)     # sqrt(area): a flip keeps it
                if dist < gate and a >= min_app and 0.5 < ratio < 2.0:
                    score[i, k] = an * (1.0 - dist / gate)
        return score

    def _seed(self, frame: np.ndarray, box: np.ndarray, dets: list[Detection], descs: list) -> None:
        """The athlete's given box starts a track as given (the user knows where the athlete is);
        the detection on it is consumed."""
        box = np.asarray(box, np.float32)
        fake = Detection(box, 1.0)
        tr = self._new(fake, app.describe(frame, box, self._weights))
        tr.state, tr.hits = "active", self.cfg.confirm_hits
        self._start_local(frame, tr, box)
        self.seed_id = tr.id
        keep = [k for k, d in enumerate(dets) if iou_matrix(d.bbox_px[None], box[None])[0, 0] <= 0.3]
        dets[:] = [dets[k] for k in keep]
        descs[:] = [descs[k] for k in keep]

    def _update(self, frame: np.ndarray, tr: Track, det: Detection, desc) -> None:
        t = self.t
        tr.kf.update(det.bbox_px)
        box = tr.kf.box
        box = clip_box(box, *self._size)
        if box is None:
            box = det.bbox_px.copy()
        # the detection's centre and size, lightly smoothed by the filter: detections are noisy in size
        box = 0.5 * det.bbox_px + 0.5 * box
        a = tr.gallery.similarity(desc) if tr.has_desc else 1.0
        tr.history[t] = Obs(box.astype(np.float32), float(0.55 + 0.45 * det.score * np.clip((a - 0.5) / 0.4, 0, 1)),
                            "detected", axis_angle(det))
        if desc is not None:
            if not tr.has_desc:
                tr.gallery, tr.has_desc = app.Gallery(desc), True
            elif a >= 0.6:                                     # learn only what looks like the track (no drift onto others)
                tr.gallery.add(desc)
        tr.hits += 1
        tr.last_det = tr.last_seen = t
        tr.det_box = det.bbox_px.copy()
        if tr.state == "tentative" and tr.hits >= self.cfg.confirm_hits:
            tr.state = "active"
        if tr.state == "active":
            # restart the local tracker on the detection unless it agrees (a restart that was not needed makes it lag)
            if tr.local is None or tr.local_box is None or iou_matrix(tr.local_box[None], det.bbox_px[None])[0, 0] < 0.6:
                self._start_local(frame, tr, det.bbox_px)

    def _colour_search(self, frame: np.ndarray, tr: Track, done: list, min_sim: float) -> bool:
        """No detection, no local tracker: search the track's colours around its prediction
        (radius widened by its speed and the time since it was seen); accept a box that looks like
        the track, is not somebody else's and (static camera) is on something that moves."""
        cfg, t = self.cfg, self.t
        if not tr.has_desc:
            return False
        gap = t - tr.last_seen
        w, h = float(tr.kf.x[2]), float(tr.kf.x[3])
        radius = (0.3 + 1.5 * tr.kf.speed * gap + 0.1 * gap) * h
        b = app.search(frame, tr.gallery.mean, self._weights, tr.kf.x[:2], w, h, min(radius, 2.0 * h))
        if b is None:
            return False
        b = clip_box(b, *self._size)
        if b is None or (done and iou_matrix(b[None], np.array(done)).max() > 0.3):
            return False
        a = tr.gallery.similarity(app.describe(frame, b, self._weights))
        share = self._fg.share(b) if self._fg is not None else None
        if a < min_sim or (share is not None and share < cfg.bg_share):
            return False
        tr.kf.update(b, noise=2.0)
        tr.history[t] = Obs(b.copy(), float(0.25 + 0.3 * np.clip((a - 0.5) / 0.4, 0, 1)), "tracked")
        tr.last_seen = t
        self._start_local(frame, tr, b)
        return True

    def _frame_blobs(self) -> list[np.ndarray]:
        if self._blobs_t is None or self._blobs_t[0] != self.t:
            b = self._fg.blobs(16.0) if self._fg is not None else None
            self._blobs_t = (self.t, b or [])
        return self._blobs_t[1]

    def _blob_carry(self, tr: Track, done: list) -> bool:
        """Low-score evidence (ByteTrack's second stage, from the static camera's background model
        instead of the detector): a confirmed track the detector missed is continued on a moving
        blob of its size where the motion model expects it, if that blob is nobody else's. A
        person exercising in place turned sideways is missed by the face-driven detector for up
        to ~1 s at a time while their limbs keep moving. Never starts a track."""
        cfg, t = self.cfg, self.t
        if tr.state != "active" or t - tr.last_det > self._frames(cfg.carry_s):
            return False
        blobs = self._frame_blobs()
        p = tr.kf.box
        c = centre(p)
        best, best_d = None, None
        for b in blobs:
            if not 0.6 < b[3] / tr.h < 1.6 or b[2] > 1.5 * b[3]:
                continue
            if not (b[0] <= c[0] <= b[0] + b[2] and b[1] - 0.1 * p[3] <= c[1] <= b[1] + b[3] + 0.1 * p[3]):
                continue
            # merged with someone else's pixels (a passer-by): their box lies in the blob
            if done and iou_matrix(b[None], np.array(done)).max() > 0.1:
                continue
            d = abs(centre(b)[0] - c[0])
            if d > 0.15 * p[3]:
                continue            # a blob pulled sideways (someone walking into it): not where they are expected
            if best is None or d < best_d:
                best, best_d = b, d
        box = p.copy()
        if best is not None:
            box[0] = centre(best)[0] - p[2] / 2                     # the track's size, on the blob's column
        else:
            # someone standing since the clip began is part of the learnt background but for the
            # limbs that move: moving fragments on their still prediction spanning half its height,
            # nobody else there
            inside = [b for b in blobs if p[0] <= centre(b)[0] <= p[0] + p[2] and p[1] <= centre(b)[1] <= p[1] + p[3]]
            if not inside or tr.kf.speed > 0.05 or (done and iou_matrix(p[None], np.array(done)).max() > 0.2):
                return False
            top, bottom = min(b[1] for b in inside), max(b[1] + b[3] for b in inside)
            if bottom - top < cfg.carry_span * p[3]:
                return False
        box = clip_box(box, *self._size)
        if box is None:
            return False
        tr.kf.update(box, noise=3.0)
        tr.history[t] = Obs(box.astype(np.float32), 0.2, "tracked")
        tr.last_seen = t
        tr.local, tr.local_box = None, None
        return True

    def _measure_extents(self) -> None:
        """Every box of this frame gets the bounds of the moving pixels connected to its inner part
        (arms and legs reach outside the detector's trunk-and-hips box; a moving camera: none)."""
        fg, t = self._fg, self.t
        if fg is None or not fg.reliable:
            return
        s = fg.scale
        mh, mw = fg.mask.shape
        for tr in self.tracks:
            o = tr.history.get(t)
            if o is None or tr.state == "removed":
                continue
            x, y, w, h = (float(v) * s for v in o.box)
            x1, x2 = max(int(x - 1.0 * w), 0), min(int(np.ceil(x + 2.0 * w)), mw)
            y1, y2 = max(int(y - 0.15 * h), 0), min(int(np.ceil(y + 1.15 * h)), mh)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            win = cv2.dilate(fg.mask[y1:y2, x1:x2].astype(np.uint8), np.ones((3, 3), np.uint8))   # join an arm's fragments
            n, lab, st, _ = cv2.connectedComponentsWithStats(win, connectivity=8)
            ix1, ix2 = int(x + 0.3 * w) - x1, int(np.ceil(x + 0.7 * w)) - x1
            iy1, iy2 = int(y + 0.1 * h) - y1, int(np.ceil(y + 0.9 * h)) - y1
            inner = lab[max(iy1, 0):max(iy2, 0), max(ix1, 0):max(ix2, 0)]
            ids = [k for k in np.unique(inner) if k > 0]
            if not ids:
                continue
            bx1 = min(st[k, 0] for k in ids); by1 = min(st[k, 1] for k in ids)
            bx2 = max(st[k, 0] + st[k, 2] for k in ids); by2 = max(st[k, 1] + st[k, 3] for k in ids)
            o.extent = np.array([(x1 + bx1) / s, (y1 + by1) / s, (bx2 - bx1) / s, (by2 - by1) / s], np.float32)

    def _bridge(self, frame: np.ndarray, tr: Track, done: list, examined: bool) -> bool:
        """Carry an unmatched track on its local tracker's box, if that still looks like it."""
        cfg, t = self.cfg, self.t
        b = tr.local_box
        if b is None or t - tr.last_det > self._frames(cfg.bridge_s):
            return False
        if done and iou_matrix(b[None], np.array(done)).max() > 0.3:
            return False        # on somebody detected in front of them: occluded, let the prediction carry them
        gap = t - tr.last_det
        if np.linalg.norm(centre(b) - tr.kf.x[:2]) > (0.25 + 0.05 * gap) * tr.h:
            return False        # the local tracker went its own way (onto someone crossing): trust the motion model
        desc = app.describe(frame, b, self._weights)
        a = tr.gallery.similarity(desc) if tr.has_desc else 0.7
        agree = iou_matrix(b[None], tr.kf.box[None])[0, 0] >= 0.5 and t - tr.last_det <= self._frames(cfg.fresh_s)
        if a < cfg.bridge_sim and not agree:         # a fast turn changes the look: then the motion must agree
            return False
        share = self._fg.share(b) if self._fg is not None else None
        if share is not None and share < cfg.bg_share and t - tr.last_det > 3:
            return False                                        # a box left on the background (lamp post)
        tr.kf.update(b, noise=3.0)        # a local tracker's box: weak evidence, it must not bend the motion model
        miss = 0.0 if not examined else 0.1                     # the detector looked and did not see them
        tr.history[t] = Obs(b.copy(), float(0.3 + 0.3 * np.clip((a - 0.5) / 0.4, 0, 1) - miss), "tracked")
        tr.last_seen = t
        return True

    # ---------------------------------------------------------------- after the clip
    def finish(self) -> list[Track]:
        """Close every track, stitch tracks of one person, fill short gaps. -> confirmed tracks."""
        cfg = self.cfg
        out = self.closed + [tr for tr in self.tracks if tr.hits >= cfg.confirm_hits or tr.id == self.seed_id]
        self.tracks, self.closed = [], []
        for tr in out:                                          # trailing predictions are not the person
            while tr.history and tr.history[max(tr.history)].state == "predicted":
                del tr.history[max(tr.history)]
        out = [tr for tr in out if tr.history]
        out = self._merge_duplicates(out)
        if self._fg is not None and self._fg.static:
            out = self._split_at_stops(out)
        out = self._stitch(out)
        for tr in out:
            self._interpolate(tr)
        return sorted(out, key=lambda tr: tr.id)

    def _merge_duplicates(self, tracks: list[Track]) -> list[Track]:
        """Two tracks on one person at once (the older one lagged through a fast move and a
        detection started a new one beside it): when their boxes stay together over most of
        the frames they share, the younger joins the older; in shared frames a detection wins."""
        tracks = sorted(tracks, key=lambda tr: min(tr.history))
        gone: set[int] = set()
        for a in tracks:
            if a.id in gone:
                continue
            for b in tracks:
                if b is a or b.id in gone or min(b.history) < min(a.history) or b.id == self.seed_id:
                    continue
                shared = sorted(set(a.history) & set(b.history))
                if not shared:
                    continue
                near = both = 0
                for k in shared:
                    ba, bb = a.history[k].box, b.history[k].box
                    iou = iou_matrix(ba[None], bb[None])[0, 0]
                    near += iou >= 0.2 or np.linalg.norm(centre(ba) - centre(bb)) < 0.6 * max(ba[3], bb[3])
                    both += a.history[k].state == "detected" and b.history[k].state == "detected"
                # two people side by side are both detected in the same frames; one person is not
                if near < max(3, 0.6 * len(shared)) or both > 0.1 * len(shared):
                    continue
                for k, o in b.history.items():
                    if k not in a.history or (o.state == "detected" and a.history[k].state != "detected"):
                        a.history[k] = o
                a.gallery.snaps += b.gallery.snaps[:4]
                a.has_desc = a.has_desc or b.has_desc
                gone.add(b.id)
        return [tr for tr in tracks if tr.id not in gone]

    def _stitch(self, tracks: list[Track]) -> list[Track]:
        """Join track B to track A when B starts after A ends, they look alike and B is within reach."""
        cfg = self.cfg
        pairs = []
        for a in tracks:
            a_end = max(a.history)
            for b in tracks:
                b_start = min(b.history)
                gap = b_start - a_end
                if b is a or gap <= 0 or gap > self._frames(cfg.stitch_gap_s) or not a.has_desc or not b.has_desc:
                    continue
                if (a.id, b.id) in self._apart:
                    continue
                if a.id == self.seed_id and b.id == self.seed_id:
                    continue
                ea, sb = a.history[a_end].box, b.history[b_start].box
                h = max(float(ea[3]), 1.0)
                reach = (1.0 + gap * cfg.max_step_s / self.fps) * h
                if np.linalg.norm(centre(ea) - centre(sb)) > reach or not 0.5 < sb[3] / h < 2.0:
                    continue
                s = app.similarity(a.gallery.mean, b.gallery.mean)   # means: the best of many snapshots flatters lookalikes
                if s >= cfg.stitch_sim:
                    pairs.append((s, a, b))
                elif s >= cfg.still_stitch_sim and self._still_join(a, b):
                    pairs.append((-1.0 + 1.0 / (1.0 + gap), a, b))   # last, the nearest in time first (pieces in order)
                elif gap <= self._frames(cfg.fresh_s) and s >= cfg.fresh_sim:
                    # a short gap: where A's motion says it would be, not just anywhere within reach
                    prev = [a.history[k].box for k in range(a_end - 3, a_end) if k in a.history]
                    v = (centre(ea) - centre(prev[0])) / (a_end - (a_end - len(prev))) if prev else np.zeros(2)
                    if np.linalg.norm(centre(ea) + v * gap - centre(sb)) <= (0.5 + 0.1 * gap) * h:
                        pairs.append((s - 0.5, a, b))          # ranked below look-alike pairs
        nxt: dict[int, Track] = {}
        prev: dict[int, Track] = {}
        for s, a, b in sorted(pairs, key=lambda p: -p[0]):
            if a.id in nxt or b.id in prev:
                continue
            # no overlap with what is already chained after a / before b
            nxt[a.id], prev[b.id] = b, a
        out = []
        for tr in tracks:
            if tr.id in prev:
                continue
            cur = tr
            while cur.id in nxt:
                b = nxt[cur.id]
                if b.id == self.seed_id:
                    tr.id = b.id
                tr.reid.append(min(b.history))
                if max(tr.history) >= min(b.history):          # chains never overlap, but be safe
                    break
                tr.history.update(b.history)
                tr.gallery.snaps += b.gallery.snaps[:4]
                cur = b
            out.append(tr)
        return out

    def _split_at_stops(self, tracks: list[Track]) -> list[Track]:
        """Split a track where it goes from walking to standing still, or the reverse, each for at
        least `stop_s`: with a static camera that is mostly an identity switch, a walker's track
        that continued on someone exercising in place as the walker passed in front of them
        (the detector sees the one in front). The pieces are never stitched back together;
        `_still_join` joins the standing piece to the standing person's own pieces."""
        cfg, out = self.cfg, []
        run = self._frames(cfg.stop_s)
        half = max(1, run // 2)
        for tr in tracks:
            idx = sorted(tr.history)
            if len(idx) < 2 * run or tr.id == self.seed_id:
                out.append(tr)
                continue
            c = np.array([centre(tr.history[k].box) for k in idx])
            med_h = float(np.median([tr.history[k].box[3] for k in idx]))
            speed = np.full(len(idx), np.nan)
            for i in range(half, len(idx) - half):
                dt = (idx[i + half] - idx[i - half]) / self.fps
                speed[i] = np.linalg.norm(c[i + half] - c[i - half]) / max(med_h, 1.0) / dt
            label = np.where(speed > cfg.stop_moving, 1, np.where(speed < cfg.stop_still, -1, 0))
            cuts, i = [], 0
            while i < len(idx):                                 # runs of one label, >= run frames
                j = i
                while j + 1 < len(idx) and label[j + 1] == label[i] and idx[j + 1] - idx[j] == 1:
                    j += 1
                cuts.append((label[i], i, j))
                i = j + 1
            runs = [(lab, a, b) for lab, a, b in cuts if lab != 0 and b - a + 1 >= run]
            split_at = [b2[1] for b1, b2 in zip(runs, runs[1:]) if b1[0] != b2[0]]
            if not split_at:
                out.append(tr)
                continue
            bounds = [0] + split_at + [len(idx)]
            hist, pieces = tr.history, []
            for a, b in zip(bounds, bounds[1:]):
                keys = idx[a:b]
                piece = tr if a == 0 else copy.copy(tr)
                if a > 0:
                    piece.id = self._next
                    self._next += 1
                    piece.gallery = copy.deepcopy(tr.gallery)
                    piece.reid = []
                piece.history = {k: hist[k] for k in keys}
                pieces.append(piece)
            for p, q in zip(pieces, pieces[1:]):
                self._apart.add((p.id, q.id))
            out += pieces
        return out

    def _still_join(self, a: Track, b: Track) -> bool:
        """B starts where A ended, and both were nearly still there: one person exercising in place
        (turned sideways, a leg swing: the detector lost them, then found them again). A walker whose
        track ends beside them is moving, so is not joined to them."""
        cfg = self.cfg
        win = self._frames(1.0)
        a_idx, b_idx = sorted(a.history)[-win:], sorted(b.history)[:win]
        if len(a_idx) < 3 or len(b_idx) < 3:
            return False
        ea, sb = a.history[a_idx[-1]].box, b.history[b_idx[0]].box
        h = max(float(ea[3]), 1.0)
        if np.linalg.norm(centre(ea) - centre(sb)) > 0.5 * h or not 0.75 < sb[3] / h < 1.33:
            return False
        for idx, tr in ((a_idx, a), (b_idx, b)):
            c0, c1 = centre(tr.history[idx[0]].box), centre(tr.history[idx[-1]].box)
            if np.linalg.norm(c1 - c0) / h / max((idx[-1] - idx[0]) / self.fps, 1e-6) > cfg.still_speed:
                return False
        return True

    def _interpolate(self, tr: Track) -> None:
        idx = sorted(tr.history)
        limit = self._frames(self.cfg.interpolate_s)
        for a, b in zip(idx, idx[1:]):
            if 1 < b - a <= limit:
                ba, bb = tr.history[a].box, tr.history[b].box
                for k in range(a + 1, b):
                    w = (k - a) / (b - a)
                    tr.history[k] = Obs(((1 - w) * ba + w * bb).astype(np.float32), 0.15, "interpolated")


class HalvedKCF:
    """OpenCV's KCF (`local_tracker`'s parameters), the frame halved by the caller once for all tracks.

    KCF follows a box whose window (2.5 x the box) is over `max_patch` px on the frame halved,
    and halves the whole frame itself for that on every update (its `resize`): ~4 of the ~5 ms
    of an update for vtest's 30x85 px walkers. Here the caller passes the frame already halved
    (one resize per frame for every track, nearest-exact: what KCF's own halving gives, the same
    boxes to a pixel on vtest) and KCF's own resize is off: the same window, at the same
    resolution, as before."""

    def __init__(self, box: np.ndarray, max_patch: int):
        self.half = float(box[2]) * float(box[3]) * 2.5 * 2.5 > max_patch
        p = cv2.TrackerKCF_Params()
        p.detect_thresh = 0.1          # as local_tracker's: the default 0.5 gives up on small people
        p.max_patch_size = max_patch
        p.resize = False
        self._t = cv2.TrackerKCF_create(p)

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        """frame: halved when `half`; box (x, y, w, h) in the full frame's px."""
        x, y, w, h = (float(v) * (0.5 if self.half else 1.0) for v in box)
        self._t.init(frame, (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h)))))

    def update(self, frame: np.ndarray) -> tuple[bool, np.ndarray]:
        ok, raw = self._t.update(frame)
        return ok, np.array(raw, np.float32) * (2.0 if self.half else 1.0)


def _tiles_for(tiles: list, regions: list, wid: int, hgt: int) -> list:
    """The tiles that hold a region (x,y,w,h) whole, among those whose scale suits its size (its
    height at least the tile's smallest body; the letterboxed whole frame for people over a
    quarter of the frame's short side); for a region no such tile holds, the suitable tiles its
    centre is in."""
    short = float(min(wid, hgt))
    out: list = []
    for r in regions:
        r = np.asarray(r, np.float32)
        fit = [tl for tl in tiles if (tl.min_body is None or r[3] >= 0.8 * tl.min_body) and
               (tl.side < max(wid, hgt) or r[3] >= 0.25 * short)]
        hold = [tl for tl in fit if tl.x0 <= r[0] and tl.y0 <= r[1] and r[0] + r[2] <= tl.x0 + tl.side and
                r[1] + r[3] <= tl.y0 + tl.side]
        if not hold:
            hold = [tl for tl in fit if tl.distance(centre(r)) == 0.0]
        out += [tl for tl in hold if not any(tl is o for o in out)]
    return out


def _inside(b: np.ndarray, win: np.ndarray) -> bool:
    """Box b (x,y,w,h) lies inside the window (x,y,side,side), with a 10% margin."""
    m = 0.1 * win[2]
    return b[0] >= win[0] + m and b[1] >= win[1] + m and b[0] + b[2] <= win[0] + win[2] - m and \
        b[1] + b[3] <= win[1] + win[3] - m
