"""`TrackerConfig`: every threshold and interval of the single-target athlete tracker."""
from __future__ import annotations

from dataclasses import dataclass, field

from .detector import DetectorConfig


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
    # The periodic verification is skipped while the local tracker and the verifier agree: confidence
    # >= verify_skip_above on a box that is on foreground (static camera: a box left on the background
    # is not confident, however it scores), with nobody else followed within verify_skip_clear box
    # heights (centre to centre); at most verify_skip_max periodic verifications in a row
    # (KCF's fixed scale still gets a detection every (verify_skip_max + 1) x verify_interval frames).
    # 0 = never skipped (default): 1 saves a third of vtest.avi's detector passes but cost the test
    # part's occlusion case 0.14 F (docs/tracker.md, "Third pass").
    verify_skip_max: int = 0
    verify_skip_above: float = 0.75
    verify_skip_clear: float = 1.5
    doubt_interval: int = 3           # confidence in [accept_score, verify_below): verify at most every N frames
    verify_context: float = 2.0       # local verification window = this x the box's long side
    redetect_interval: int = 5        # while lost, whole-image re-detection every N frames...
    redetect_interval_long: int = 10  # ...every M frames once lost for more than 30 frames
    # Re-detection budget (docs/tracker.md, "Per-frame costs"): every redetect_full_every-th
    # re-detection of a loss (the first included; 0: all) runs every tile; the others only tiles
    # that can hold a reachable athlete (redetect_reach) and, with a static camera, a person on a
    # moving region (redetect_motion: blobs of at least redetect_blob_area x the athlete's box area).
    redetect_reach: bool = True
    redetect_motion: bool = True
    redetect_full_every: int = 3
    redetect_blob_area: float = 0.1
    # The first re-detection of a loss, static camera: tiles on moving regions anywhere (+ those within
    # reach when the athlete's last box is not foreground) instead of every tile (docs/tracker.md).
    redetect_first_motion: bool = True
    # The later full sweeps of a loss, static camera, once the athlete walked out of the frame (last box
    # on its edge, predicted centre outside it): tiles on moving regions only (the athlete can only come back walking in; a still person
    # elsewhere is another person, already followed or found by the next sweep inside the frame).
    redetect_out_motion: bool = True
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
    # Another person's template tracker that no detection has confirmed for this many frames and whose
    # box has not moved by `others_static_frac` of its height over them is following background (a
    # walker passed a lamp post; the template stayed on the post): the track ends at its last confirmation.
    others_static_frames: int = 20
    others_static_frac: float = 0.25
    local_pad: tuple[float, float] = (1.0, 1.0)        # the athlete's local tracker runs on the box widened by this (w, h)
    candidate_pad: tuple[float, float] = (1.25, 1.05)  # selection-window candidates: see LocalTracker
    detector: DetectorConfig = field(default_factory=DetectorConfig)
