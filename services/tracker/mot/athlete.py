"""`MotAthleteTracker`: the multi-person tracker behind the `AthleteTracker` interface.

push(frame) follows everyone and returns nothing (the athlete is chosen once the whole clip is
seen); finish() chooses the athlete by the policy and returns one FrameTrack per pushed frame,
in order. Memory: boxes only, no frames are buffered.

Refinement (`reread` given, `refine=True`): once the athlete is chosen, the single-target tracker
(athlete.AthleteTracker: local tracker + online verifier + re-detection, better at telling one
walker from a lookalike) follows them from their first box over a second read of the frames;
its boxes win where it has one, the multi-person track fills the frames it reports lost (a flip,
a long absence), at a twentieth of its confidence.
"""
from __future__ import annotations

import numpy as np

from ..detector import PersonDetector
from ..geometry import clip_box
from ..results import AthleteChoice, FrameTrack, NoPersonFound, PersonBox
from . import appearance as app
from . import choice as ch
from .association import iou_matrix
from .multi import MotConfig, MultiTracker, Track

FILL_SCALE = 0.05   # confidence of a multi-person fill-in = this x its own (<= 0.05)
STATES = {"detected": "detected", "tracked": "tracked", "predicted": "tracked", "interpolated": "interpolated"}


class MotAthleteTracker:
    def __init__(self, config: MotConfig | None = None, target_bbox_px=None, detector: PersonDetector | None = None,
                 fps: float = 25.0, policy: str = "most_active", min_track_s: float = 1.0,
                 max_search_frames: int | None = None, reread=None, refine: bool = True, legacy_config=None,
                 progress=None):
        if policy not in ch.POLICIES:
            raise ValueError(f"unknown athlete policy {policy!r} ({' | '.join(ch.POLICIES)})")
        self.detector = detector or PersonDetector()
        self.mot = MultiTracker(self.detector, fps, config)
        self.fps = self.mot.fps
        self.target = None if target_bbox_px is None else np.asarray(target_bbox_px, np.float32)
        self.policy = "box" if self.target is not None else policy
        self.min_track_s = min_track_s
        self.max_search_frames = max_search_frames
        self._n = 0
        self._size = (0, 0)
        self._choice: AthleteChoice | None = None
        self._tracks: list[Track] = []
        self.athletes: list[dict] = []       # every person kept (>= min_track_s), for tracking.json
        self.alternatives: list[dict] = []
        self._finished = False
        self.reread = reread                 # () -> iterable of the same frames again (refinement)
        self.refine = refine
        self.legacy_config = legacy_config
        self.progress = progress             # (frames done in the second read) -> None: a long finish() reports progress
        self.alone: list[FrameTrack] | None = None   # the multi-person track before refinement (evaluation)
        self.overrule_below = 0.6                    # see fuse
        self.filled: list[int] = []                  # frames the multi-person track filled in (refinement)

    @property
    def choice(self) -> AthleteChoice | None:
        return self._choice

    def push(self, frame: np.ndarray) -> list[FrameTrack]:
        if self._finished:
            raise RuntimeError("push() after finish()")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected BGR uint8 (H,W,3), got {frame.dtype} {frame.shape}")
        if self._n == 0 and self.target is not None:
            hgt, wid = frame.shape[:2]
            if clip_box(self.target, wid, hgt) is None:
                raise ValueError(f"target_bbox_px {self.target.tolist()} is outside the {wid}x{hgt} frame")
        self._size = (frame.shape[1], frame.shape[0])
        self.mot.step(frame, self.target if self._n == 0 else None)
        self._n += 1
        if self.max_search_frames is not None and self._n >= self.max_search_frames and \
                not any(tr.hits >= 2 for tr in self.mot.tracks + self.mot.closed):
            raise NoPersonFound(f"no person detected in the first {self._n} frames")
        return []

    def finish(self) -> list[FrameTrack]:
        if self._finished:
            return []
        out, athlete = self.choose()
        if self.refine and self.reread is not None:
            self.alone = [FrameTrack(f.index, None if f.bbox_px is None else f.bbox_px.copy(), f.score, f.state,
                                     f.track_id) for f in out]
            out = self.fuse(out, athlete, *self.single_pass(athlete))
        return out

    def choose(self) -> tuple[list[FrameTrack], Track]:
        """After the last push: everybody's tracks closed, the athlete chosen by the policy ->
        (one FrameTrack per pushed frame from the athlete's multi-person track, the athlete's Track).
        NoPersonFound if nobody was followed."""
        if self._finished:
            raise RuntimeError("choose() twice")
        self._finished = True
        tracks = self.mot.finish()
        if not tracks:
            raise NoPersonFound(f"no person detected in {self._n} frames")
        self._tracks = tracks
        n, (_, hgt) = self._n, self._size
        min_frames = max(1, int(round(self.min_track_s * self.fps)))
        cands = {tr.id: ch.describe_track(tr.id, tr.history, n, hgt, self.fps) for tr in tracks}
        if self.policy == "box":
            best_id = self.mot.seed_id
            dets0 = [tr for tr in tracks if tr.id != best_id and 0 in tr.history]
            c = cands[best_id]
            c.score = 1.0
            reason = "target_bbox: tracked from the given box"
            others = [cands[tr.id] for tr in tracks if tr.id != best_id and tr.history and len(tr.history) >= min_frames]
            alts: list[ch.Candidate] = []
            ious = [float(iou_matrix(tr.history[0].box[None], self.target[None])[0, 0]) for tr in dets0]
            if ious and max(ious) > 0.1:
                reason = f"matched target_bbox (IoU {max(ious):.2f})"
        else:
            pool = [c for c in cands.values() if c.frames >= min_frames] or list(cands.values())
            best, reason, alts = ch.choose(pool, self.policy)
            best_id = best.track_id
            others = [c for c in pool if c.track_id != best_id]
        self._cands = cands
        keep = {best_id} | {c.track_id for c in others}
        by_id = {tr.id: tr for tr in tracks}
        self.athletes = [self._athlete(by_id[i], cands[i]) for i in sorted(keep)]
        self.alternatives = [self._cand(c) for c in alts]
        self._choice = AthleteChoice(best_id, reason, [self._cand(cands[i]) for i in sorted(keep)])
        athlete = by_id[best_id]
        out = []
        reid = set(athlete.reid)
        for k in range(n):
            o = athlete.history.get(k)
            people = [PersonBox(i, by_id[i].history[k].box.copy(), round(by_id[i].history[k].score, 3))
                      for i in sorted(keep - {best_id}) if k in by_id[i].history]
            if o is None:
                out.append(FrameTrack(k, None, 0.0, "lost", best_id, people))
            else:
                state = "redetected" if k in reid and o.state == "detected" else STATES[o.state]
                out.append(FrameTrack(k, o.box.copy(), round(float(o.score), 4), state, best_id, people))
        return out, athlete

    def first_look(self, athlete: Track) -> np.ndarray | None:
        """The athlete's first colour snapshot (what `fuse` compares the single-target boxes with)."""
        return athlete.gallery.snaps[0] if athlete.has_desc else None

    def single_pass(self, athlete: Track) -> tuple[list[FrameTrack], int, dict[int, float]]:
        """Second read: the single-target tracker from the athlete's first box -> (its FrameTracks,
        indexed from `start`; start, the athlete's first frame; {frame: colour likeness of its box to
        the athlete's first look})."""
        from ..athlete import AthleteTracker

        start = min(athlete.history)
        box0 = self.target if self.policy == "box" else athlete.history[start].box
        single = AthleteTracker(self.legacy_config, target_bbox_px=tuple(float(v) for v in box0), detector=self.detector)
        fts = []
        looks: dict[int, float] = {}          # frame -> the single-target box's colour likeness to the athlete's first look
        first_look = self.first_look(athlete)
        for k, frame in enumerate(self.reread()):
            if k >= start:
                for ft in single.push(frame):      # a target box: one FrameTrack per push, this frame's
                    fts.append(ft)
                    if ft.bbox_px is not None and ft.index + start == k and first_look is not None:
                        looks[k] = app.similarity(first_look, app.describe(frame, ft.bbox_px, self.mot._weights))
            if self.progress is not None and k % 50 == 49:
                self.progress(k + 1)
        fts += single.finish()
        return fts, start, looks

    def fuse(self, out: list[FrameTrack], athlete: Track, fts: list[FrameTrack], start: int,
             looks: dict[int, float]) -> list[FrameTrack]:
        """The athlete's final boxes: the single-target tracker's `fts` (frame = index + start) win
        where they have a box, unless a stretch of them lies on another followed person whose colours
        differ (module doc); the multi-person track `out` fills the rest at FILL_SCALE confidence.
        `fts` boxes may be cleared (pass copies)."""
        others = {i: tr for i, tr in ((tr.id, tr) for tr in self._tracks) if i != athlete.id}
        # The single-target tracker's stretches of boxes after its first (each one begins with a
        # re-detection) are dropped when they mostly lie on another followed person: it took
        # someone else for the athlete (sports2d: the walker, after losing the athlete in the flip).
        seg: list = []
        for ft in fts + [None]:
            if ft is not None and ft.bbox_px is not None:
                seg.append(ft)
                continue
            if seg and seg[0].index > 0:
                on = [self._on_someone_else(f.bbox_px, f.index + start, athlete, others) for f in seg]
                like = [looks[f.index + start] for f in seg if f.index + start in looks]
                # overruled only where the colours clearly say "someone else" too: colour cannot
                # tell lookalikes apart (the verifier does better), but it does tell a shirtless
                # athlete from a walker in grey
                if np.mean(on) >= 0.5 and like and float(np.median(like)) < self.overrule_below:
                    for f in seg:
                        f.bbox_px = None
            seg = []
        for ft in fts:
            k = ft.index + start
            if k >= len(out):
                break
            if ft.bbox_px is not None:
                out[k].bbox_px, out[k].score, out[k].state = ft.bbox_px.copy(), round(float(ft.score), 4), ft.state
            elif out[k].bbox_px is not None:
                # a fill-in is less sure than any box of the single-target tracker: its confidence is
                # scaled under theirs (a confidence threshold keeps theirs and can drop the fill-ins)
                out[k].score = round(FILL_SCALE * out[k].score, 4)
                self.filled.append(k)
        # tracking.json's boxes of the athlete: the fused ones
        athlete.history = {f.index: type(next(iter(athlete.history.values())))(f.bbox_px, f.score, f.state)
                           for f in out if f.bbox_px is not None}
        for a in self.athletes:
            if a["track_id"] == athlete.id:
                a.update(self._athlete(athlete, self._cands[athlete.id]))
        return out

    @staticmethod
    def _on_someone_else(box: np.ndarray, k: int, athlete: Track, others: dict) -> bool:
        """The athlete's own track is elsewhere in frame k (IoU < 0.3) and the box lies on another
        person's track (IoU >= 0.5). Where the athlete's track has no box, the multi-person tracker
        has no better answer (its identities can be wrong too), so nothing is overruled."""
        mine = athlete.history.get(k)
        if mine is None or iou_matrix(box[None], mine.box[None])[0, 0] >= 0.3:
            return False
        return any(k in tr.history and iou_matrix(box[None], tr.history[k].box[None])[0, 0] >= 0.5
                   for tr in others.values())

    def _cand(self, c: ch.Candidate) -> dict:
        tr = next(t for t in self._tracks if t.id == c.track_id)
        first = tr.history[min(tr.history)].box
        return {"track_id": c.track_id, "bbox_px": [round(float(v), 1) for v in first], "score": c.score,
                "frames": c.frames, "coverage": round(c.coverage, 3), "size": round(c.size, 3),
                "activity": round(c.activity, 3)}

    def _athlete(self, tr: Track, c: ch.Candidate) -> dict:
        idx = sorted(tr.history)
        return {"track_id": tr.id, "frames": idx,
                "boxes_px": [[round(float(v), 1) for v in tr.history[k].box] for k in idx],
                "score": c.score, "seconds": round(len(idx) / self.fps, 2)}

    def tracks(self) -> dict[int, list[tuple[int, np.ndarray]]]:
        """Everybody followed (after finish()): {track_id: [(frame index, x,y,w,h)]}."""
        return {tr.id: [(k, tr.history[k].box.copy()) for k in sorted(tr.history)] for tr in self._tracks}

    def summary(self) -> dict:
        return {"policy": self.policy, "detector_passes": self.detector.passes, **self.mot.stats,
                "tracks": len(self._tracks), "athletes": len(self.athletes)}
