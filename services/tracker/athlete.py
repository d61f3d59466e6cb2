"""`AthleteTracker`: the streaming single-target athlete tracker (the default,
`COACH_TRACKER=legacy`). Picks the athlete over a selection window (or from a target box),
follows them with `target.TargetTrack`, and everyone else with `people.TemplateTracker`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from .appearance import AppearanceModel
from .config import TrackerConfig
from .detector import Detection, PersonDetector
from .geometry import centre, clip_box, iou_xywh
from .local_tracker import LocalTracker, make_local_tracker
from .people import Person, TemplateTracker
from .results import AthleteChoice, FrameTrack, NoPersonFound, PersonBox
from .target import TargetTrack

log = logging.getLogger(__name__)


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
        self._track: TargetTrack | None = None
        self._choice: AthleteChoice | None = None
        self._finished = False
        self._others: list[Person] = []
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
        still_n, still_frac = self.config.others_static_frames, self.config.others_static_frac
        for p in self._others:
            p.score = p.tracker.update(gray)
            if p.score >= 0.5:
                p.last_seen = self._n
            p.centres = p.centres[-still_n + 1:] + [tuple(centre(p.box))]
            if not p.ghost and p.still_since_confirmed(still_n, still_frac) and self._background(p.box):
                # A template left on background when its person walked on (a lamp post, a cone). It stays a
                # hard negative for the athlete (unchanged tracking), but is no longer reported as a person,
                # nor are its still frames; a detection on it later starts a new reported id.
                p.ghost = True
                log.debug("person %d: still and unconfirmed since frame %d, no longer reported at frame %d (box %s)",
                          p.out_id, p.last_confirmed - 1, self._n - 1, np.round(p.box).astype(int).tolist())
                cut = max(p.last_confirmed, self._n - still_n)   # frame index = frame count - 1
                kept = [r for r in self._tracks.get(p.out_id, []) if r[0] < cut]
                self._tracks.pop(p.out_id, None)
                if kept:
                    self._tracks[p.out_id] = kept
        # drop people not matched for a while, and duplicates (two trackers on one person)
        self._others = [p for p in self._others if self._n - p.last_seen <= 30]
        keep: list[Person] = []
        for p in sorted(self._others, key=lambda p: p.track_id):
            if all(iou_xywh(p.box, q.box) < 0.6 for q in keep):
                keep.append(p)
        self._others = keep
        for p in self._others:
            if self._n - p.last_seen <= 3:
                out.append(PersonBox(p.out_id, p.box.copy(), round(max(p.score, 0.0), 3)))
        return out

    def _background(self, box: np.ndarray) -> bool:
        """Nothing moves in the box (static camera; with no opinion, e.g. a moving camera: yes). A person
        walking towards the camera barely moves their box but is foreground; a standing one fades into
        the background model over a few seconds, and is then no longer reported until detected again."""
        fg = self._track.fg if self._track is not None else None
        share = fg.share(box) if fg is not None else None
        return share is None or share < self.config.fg_min

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
                best.confirm(self._n)
                if best.ghost:     # someone found where a template had been left behind: a new person to report
                    best.ghost, best.out_id = False, self._new_id()
            elif d.score >= 0.8 and not near_lost and len(self._others) < self.config.max_others:
                self._others.append(Person(self._new_id(), TemplateTracker(gray, d.bbox_px), self._n))

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
        ft.people = [p for p in people if any(q.out_id == p.track_id and not q.ghost for q in self._others)
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
            self._others = [Person(c.track_id, TemplateTracker(gray, c.boxes[-1]), self._n)
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
            self._others = [Person(i, TemplateTracker(gray, d.bbox_px), self._n) for i, d in rest]
            out[0].people = [PersonBox(i, d.bbox_px.copy(), 1.0) for i, d in rest]
        return out

    def _begin(self, frame: np.ndarray, index: int, bbox: np.ndarray, score: float,
               others: list[np.ndarray] = (), people: bool = True) -> list[FrameTrack]:
        self._track = TargetTrack(self.config, self.detector, frame, np.asarray(bbox, np.float32), list(others))
        return [self._track.first(index, score)]
