"""Which tracked person is the athlete: chosen after the whole clip was seen.

Policies (`COACH_ATHLETE_POLICY`):
* `most_active` (default): coverage x sqrt(size) x (0.1 + activity). coverage = share of the
  clip's frames the person is in; size = median box height / frame height; activity = per
  second (boxes smoothed over 0.2 s), a quarter of the box centre's path in body heights + the
  limb motion beyond a walking gait: the change of the aspect of the moving pixels' bounds
  around the box (`Obs.extent`, static camera) minus the path per second, at least 0. Without
  extents (a moving camera): the quarter path + the box's vertical motion + the change of the
  box's aspect (bending, lying, a flip) + the turning of the body axis in half turns (detections'
  keypoints, median of 5). A walker
  crossing the view is active but briefly present; someone standing at the side is present but
  still; the athlete is both.
* `largest`: the largest median box area x coverage (the person nearest the camera).
* `first_seen`: the first person to appear (the largest of those who appear together).
* `box`: the person on the request's target box in the first frame (tracking starts from it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POLICIES = ("most_active", "largest", "first_seen", "box")


@dataclass
class Candidate:
    track_id: int
    frames: int            # frames with a box
    coverage: float        # frames / clip frames
    size: float            # median height / frame height
    activity: float        # body heights + aspect change + half turns, per second
    first: int             # first frame
    score: float = 0.0
    limbs: float | None = None   # the part of activity from the moving pixels' shape (None: from the box)


def describe_track(track_id: int, history: dict, n_frames: int, frame_h: int, fps: float) -> Candidate:
    """history: {frame index: Obs} of one track."""
    idx = sorted(history)
    boxes = np.array([history[k].box for k in idx], np.float64)            # (n, 4)
    h = np.maximum(boxes[:, 3], 1.0)
    med_h = float(np.median(h))
    k = max(1, int(round(fps / 5)))                                          # 0.2 s moving average: box jitter is not motion
    smooth = np.array([boxes[max(0, i - k):i + k + 1].mean(axis=0) for i in range(len(boxes))])
    c = smooth[:, :2] + smooth[:, 2:] / 2                                    # (n, 2) centres
    consecutive = np.diff(idx) == 1
    step = np.linalg.norm(np.diff(c, axis=0), axis=1)[consecutive] / med_h
    vertical = np.abs(np.diff(c[:, 1]))[consecutive] / med_h
    # walking is translation (weight 0.25); exercising bends, jumps, turns: vertical motion, shape change, rotation
    path = 0.25 * float(step.sum()) + float(vertical.sum())
    seconds = max(len(idx) / fps, 1e-6)
    limbs = limb_motion(idx, [getattr(history[i], "extent", None) for i in idx], k, fps)
    if limbs is None:                                                        # no moving-pixel bounds (moving camera)
        aspect = np.log(np.maximum(smooth[:, 2], 1.0) / np.maximum(smooth[:, 3], 1.0))
        shape = float(np.abs(np.diff(aspect))[consecutive].sum()) / seconds
    else:
        path = 0.25 * float(step.sum())      # the moving pixels show a hop or a squat as a change of shape;
        # the box's vertical motion is mostly a walker coming nearer or the detector's jitter then
        # a walking gait opens and closes the silhouette too, about as much per second as the walker
        # moves in body heights (the tuning part's walkers: 0.26-0.63/s at ~0.5 heights/s): count the
        # limbs' motion beyond that, what someone exercising in place does
        shape = max(0.0, limbs - float(step.sum()) / seconds)
    angles = [(i, history[i].angle) for i in idx if history[i].angle is not None]
    turn = 0.0
    if len(angles) > 4:
        a = np.unwrap(np.array([v for _, v in angles]))
        a = np.array([np.median(a[max(0, i - 2):i + 3]) for i in range(len(a))])   # keypoint noise is not rotation
        fr = np.array([i for i, _ in angles])
        turn = float(np.abs(np.diff(a))[np.diff(fr) <= 3].sum())
    if limbs is not None:
        turn = 0.0          # the moving pixels' shape turns with the body too; keypoint angles of small people are noise
    activity = (path + turn / np.pi) / seconds + shape
    return Candidate(track_id, len(idx), len(idx) / max(n_frames, 1), med_h / max(frame_h, 1), activity, idx[0],
                     limbs=None if limbs is None else shape)


def limb_motion(idx: list[int], extents: list, k: int, fps: float, min_share: float = 0.3) -> float | None:
    """Shape change of the moving pixels' bounds per second: |d log(w / h)| of the extents (arms and
    legs spread and close: a jumping jack doubles the width, a leg swing sideways too), smoothed
    like the boxes (k frames either side), summed over consecutive frames that both have one,
    divided by their duration. None when under `min_share` of the frames have an extent."""
    have = [i for i, e in enumerate(extents) if e is not None]
    if len(have) < max(3, min_share * len(idx)):
        return None
    fr = np.array([idx[i] for i in have])
    e = np.array([extents[i] for i in have], np.float64)
    aspect = np.log(np.maximum(e[:, 2], 1.0) / np.maximum(e[:, 3], 1.0))
    aspect = np.array([aspect[max(0, i - k):i + k + 1].mean() for i in range(len(aspect))])
    consecutive = np.diff(fr) == 1
    if not consecutive.any():
        return None
    return float(np.abs(np.diff(aspect))[consecutive].sum()) / (consecutive.sum() / fps)


def score(c: Candidate, policy: str) -> float:
    if policy == "most_active":
        return c.coverage * float(np.sqrt(c.size)) * (0.1 + c.activity)
    if policy == "largest":
        return c.coverage * c.size ** 2
    if policy == "first_seen":
        return 1.0 / (1.0 + c.first) + 1e-3 * c.size
    raise ValueError(f"unknown athlete policy {policy!r} ({' | '.join(POLICIES)})")


def explain(c: Candidate, policy: str) -> str:
    figures = (f"in {c.coverage:.0%} of frames, {c.size:.2f} of the frame tall, "
               f"activity {c.activity:.2f} body heights/s")
    if c.limbs is not None:
        figures += f" (limbs {c.limbs:.2f}/s)"
    return {"most_active": f"most active (score {c.score:.3f}: {figures})",
            "largest": f"largest (score {c.score:.3f}: {figures})",
            "first_seen": f"first seen (frame {c.first}; {figures})"}.get(policy, figures)


def choose(cands: list[Candidate], policy: str, close: float = 0.7) -> tuple[Candidate, str, list[Candidate]]:
    """-> (athlete, reason in words with the figures, close alternatives (score >= close x best))."""
    if not cands:
        raise ValueError("no candidates")
    for c in cands:
        c.score = round(score(c, policy), 4)
    ranked = sorted(cands, key=lambda c: -c.score)
    best = ranked[0]
    alts = [c for c in ranked[1:] if c.score >= close * best.score] if best.score > 0 else []
    reason = explain(best, policy)
    if alts:
        reason += "; close: " + ", ".join(f"track {c.track_id} ({c.score:.3f})" for c in alts)
    elif len(ranked) > 1:
        reason += f"; next: track {ranked[1].track_id} ({ranked[1].score:.3f})"
    return best, reason, alts
