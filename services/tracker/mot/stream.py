"""`StreamingAthleteTracker` (`COACH_TRACKER=mot`, the default): a provisional athlete at once,
everybody followed, the athlete chosen after the whole clip.

The multi-person tracker can only choose once it has seen the whole clip, but a user should see
the first verdict while the clip is still being tracked (issue 17). So two trackers run side by side:

* the single-target tracker (`athlete.AthleteTracker`) picks a *provisional* athlete over its
  selection window and streams their boxes: push() returns them as they become final, and the
  worker sends them to pose at once (partial verdicts);
* the multi-person tracker (`MotAthleteTracker`) follows everybody on its own read of the video, in
  a thread (its detector calls and KCF updates release the GIL, so it overlaps the single-target
  loop and the frame uploads; no frames are buffered).

After the last frame, finish() returns the provisional rest and sets `final`, one FrameTrack per
frame: the athlete chosen by the policy (`COACH_ATHLETE_POLICY`) over the whole clip. Where the
provisional athlete *is* that person (their first stretch lies on the chosen track), the provisional
boxes are kept and fused with the multi-person track (`MotAthleteTracker.fuse`: a stretch on
another person is dropped, frames it lost are filled in: the flip); otherwise the single-target
tracker follows the chosen person over a second read (`MotAthleteTracker.single_pass`), as the
non-streaming tracker does. The worker compares `final` with what it streamed and, where they
differ, publishes the final clips as the analysis's next revision (docs/tracker.md).
"""
from __future__ import annotations

import threading

import numpy as np

from ..athlete import AthleteTracker
from ..detector import PersonDetector
from ..geometry import iou_xywh
from ..results import AthleteChoice, FrameTrack, NoPersonFound
from . import appearance as app
from .athlete import MotAthleteTracker
from .multi import MotConfig

AGREE_IOU = 0.5      # a provisional box "on" the chosen athlete's track
AGREE_SHARE = 0.5    # ... in at least this share of the provisional athlete's first stretch


def _copy(ft: FrameTrack) -> FrameTrack:
    return FrameTrack(ft.index, None if ft.bbox_px is None else ft.bbox_px.copy(), ft.score, ft.state, ft.track_id)


class StreamingAthleteTracker:
    """push(frame) -> the provisional athlete's final FrameTracks so far (the single-target
    tracker's streaming contract); finish() -> the rest of them, and sets `final` (one FrameTrack per
    pushed frame, the policy's athlete). `reread()` yields the same frames again (the worker reopens
    the file): the multi-person thread reads them once, a second read happens only where the chosen
    athlete is not the provisional one. `mot_detector` must not be `detector` (one per thread).
    close() stops the thread (an analysis that fails half way)."""

    def __init__(self, reread, detector: PersonDetector | None = None, mot_detector: PersonDetector | None = None,
                 fps: float = 25.0, policy: str = "most_active", min_track_s: float = 1.0, target_bbox_px=None,
                 config: MotConfig | None = None, legacy_config=None, refine: bool = True, progress=None):
        detector = detector or PersonDetector()
        mot_detector = mot_detector or PersonDetector()
        if mot_detector is detector:
            raise ValueError("the multi-person thread needs a detector of its own")
        self.single = AthleteTracker(legacy_config, target_bbox_px=target_bbox_px, detector=detector)
        self.mot = MotAthleteTracker(config, target_bbox_px=target_bbox_px, detector=mot_detector, fps=fps,
                                     policy=policy, min_track_s=min_track_s, reread=reread, refine=refine,
                                     legacy_config=legacy_config, progress=progress)
        self.policy = self.mot.policy
        self.reread = reread
        self.final: list[FrameTrack] | None = None
        self.kept_provisional: bool | None = None    # after finish(): the provisional athlete was the chosen one
        self.alone: list[FrameTrack] | None = None   # after finish(): the chosen track before fusion
        self._provisional: list[FrameTrack] = []     # copies of what push()/finish() returned
        self._descs: dict[int, np.ndarray] = {}      # frame -> colour descriptor of the provisional box
        self._weights = None
        self._n = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._seen = 0                               # frames the multi-person thread has followed
        self._thread = threading.Thread(target=self._follow_everyone, name="tracker-everyone", daemon=True)
        # called every `waiting_every_s` while finish() waits for the thread (the worker's heartbeat: a
        # long video's multi-person read may end minutes after the stream's, and a stage that says
        # nothing that long looks stalled to the watchdog)
        self.waiting = None
        self.waiting_every_s = 5.0

    @property
    def everyone_frames(self) -> int:
        """Frames the multi-person thread has followed so far."""
        return self._seen

    # -- the multi-person thread -------------------------------------------------------------
    def _follow_everyone(self) -> None:
        try:
            for frame in self.reread():
                if self._stop.is_set():
                    return
                self.mot.push(frame)
                self._seen += 1
        except BaseException as exc:  # noqa: BLE001 — handed to finish(), which raises it in the worker
            self._error = exc

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    # -- the AthleteTracker interface ----------------------------------------------------------
    @property
    def choice(self) -> AthleteChoice | None:
        if self.final is None:
            return self.single.choice
        chosen = self.mot.choice
        if self.policy == "box" and self.single.choice is not None:
            # the single-target tracker matched the box against the first frame's detections
            # ("matched target_bbox (IoU 0.81)"): the reason a user can check
            return AthleteChoice(chosen.track_id, self.single.choice.reason, chosen.candidates)
        return chosen

    @property
    def athletes(self) -> list[dict]:
        return self.mot.athletes

    @property
    def alternatives(self) -> list[dict]:
        return self.mot.alternatives

    def tracks(self) -> dict[int, list[tuple[int, np.ndarray]]]:
        return self.mot.tracks()

    def push(self, frame: np.ndarray) -> list[FrameTrack]:
        out = self.single.push(frame)   # validates the frame and the target box first
        k, self._n = self._n, self._n + 1
        if k == 0:
            self._weights = app.scene_weights(frame)
            self._thread.start()
        for ft in out:
            if ft.index == k and ft.bbox_px is not None:   # this frame's box: its colours, for fuse()
                d = app.describe(frame, ft.bbox_px, self._weights)
                if d is not None:
                    self._descs[k] = d
        self._provisional += [_copy(ft) for ft in out]
        return out

    def finish(self) -> list[FrameTrack]:
        if self.final is not None:
            return []
        try:
            rest = self.single.finish()
        except NoPersonFound:
            rest = []            # the single-target tracker found nobody: its frames all came back lost
        self._provisional += [_copy(ft) for ft in rest]
        while self._thread.is_alive():
            self._thread.join(self.waiting_every_s)
            if self.waiting is not None and self._thread.is_alive():
                self.waiting()
        if self._error is not None:
            raise self._error
        if self._seen != self._n:
            raise RuntimeError(f"the multi-person read saw {self._seen} frames, the stream {self._n}")
        out, athlete = self.mot.choose()         # NoPersonFound: nobody in the whole clip
        self.alone = [_copy(ft) for ft in out]   # the chosen athlete's multi-person track (evaluation)
        self.kept_provisional = self._agrees(athlete)
        if self.kept_provisional:
            first_look = self.mot.first_look(athlete)
            looks = {k: app.similarity(first_look, d) for k, d in self._descs.items()} if first_look is not None else {}
            self.final = self.mot.fuse(out, athlete, [_copy(ft) for ft in self._provisional], 0, looks)
        elif self.mot.refine:
            self.final = self.mot.fuse(out, athlete, *self.mot.single_pass(athlete))
        else:
            self.final = out
        return rest

    def _agrees(self, athlete) -> bool:
        """The provisional athlete is the chosen person: their first stretch of boxes (up to the
        single-target tracker's first loss) lies on the chosen track in >= AGREE_SHARE of its frames."""
        stretch = []
        for ft in sorted(self._provisional, key=lambda f: f.index):
            if ft.bbox_px is not None:
                stretch.append(ft)
            elif stretch:
                break
        if not stretch:
            return False
        on = [ft.index in athlete.history and iou_xywh(ft.bbox_px, athlete.history[ft.index].box) >= AGREE_IOU
              for ft in stretch]
        return float(np.mean(on)) >= AGREE_SHARE

    def summary(self) -> dict:
        return {**self.mot.summary(), "kept_provisional": self.kept_provisional}
