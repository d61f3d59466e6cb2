"""The tracker service: find the athlete (and everybody around them) and follow them through a video.

The single-target athlete tracker (`athlete.AthleteTracker`, the default) - detection, fast local
tracking, verification, re-detection; everyone else too:

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

Modules (docs/tracker.md): results.py, config.py (what it returns, its settings), geometry.py
(boxes), appearance.py (colour bins and model), local_tracker.py (KCF / CSRT), motion.py (Kalman),
verifier.py, background.py (ForegroundModel), people.py (the other people), target.py (one
athlete's track: verification, re-detection), athlete.py (selection + streaming); detector.py;
mot/ (the multi-person tracker); worker.py (the service loop). Evaluation and benchmarks are
in lab/, which the worker and the core never import.

`TrackerConfig(verify=False, redetect=False)` is the plain tracker: the local tracker alone with
its cheap confidence (colour similarity x motion agreement), the baseline of `coach tracker eval`.
"""

