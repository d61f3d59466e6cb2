"""Long-term tracking precision, recall and F-score (VOT-LT), and the tracker run on the evaluation set.

Measures (Lukezic et al., "Now you see me: evaluating performance in long-term visual
tracking", 2018; VOT2018-LT). A tracker reports per frame a box A_t with a confidence theta_t, or
None ("the target is not here"). With a confidence threshold tau, a prediction counts only if
theta_t >= tau (a None box never counts). G_t is the ground truth, None when the target is absent.

    Pr(tau) = 1/N_p(tau) * sum over frames with a counted prediction of  IoU(A_t, G_t)
    Re(tau) = 1/N_g      * sum over frames with the target visible of  IoU(A_t, G_t)

IoU is 0 when either side is empty, so a box reported while the target is absent lowers
precision, and a frame where the visible target is not reported lowers recall. These are the
paper's precision / recall *integrated over IoU thresholds*: the share of frames with IoU > tau_IoU,
integrated over tau_IoU in [0, 1], is the mean IoU. F(tau) = 2 Pr Re / (Pr + Re), and the reported
F-score is max over tau, with Pr and Re at that tau. Over several sequences the Pr(tau) and Re(tau)
curves are averaged first (on one threshold grid, from all the confidences, as the VOT toolkit
does), then F is maximised. A threshold with no counted prediction has Pr = 1, Re = 0 (toolkit).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, Sequence as Seq

import numpy as np

from .tracking import AthleteTracker, TrackerConfig, iou_xywh


def overlaps(pred: Seq[np.ndarray | None], gt: Seq[np.ndarray | None]) -> np.ndarray:
    """Per-frame IoU of x,y,w,h boxes; 0 where either is None."""
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} predictions but {len(gt)} ground-truth frames")
    return np.array([0.0 if p is None or g is None else iou_xywh(np.asarray(p, float), np.asarray(g, float))
                     for p, g in zip(pred, gt)], dtype=np.float64)


def thresholds_from(scores: Iterable[float], resolution: int = 100) -> np.ndarray:
    """Confidence thresholds as the VOT toolkit picks them: the scores themselves (at most
    `resolution - 2` of them, evenly spaced in rank) plus +inf and -inf, descending."""
    s = sorted((float(v) for v in scores if v is not None and not math.isnan(v)), reverse=True)
    if len(s) > resolution - 2:
        delta = len(s) // (resolution - 2)
        idx = np.round(np.linspace(delta, len(s) - delta, num=resolution - 2)).astype(int)
        s = [s[i] for i in idx]
    return np.array([math.inf] + s + [-math.inf])


def pr_curve(pred: Seq[np.ndarray | None], conf: Seq[float], gt: Seq[np.ndarray | None],
             thresholds: Seq[float]) -> tuple[np.ndarray, np.ndarray]:
    """Pr(tau), Re(tau) of one sequence for each tau in `thresholds`."""
    ov = overlaps(pred, gt)
    reported = np.array([p is not None for p in pred])
    conf = np.array([-math.inf if c is None else float(c) for c in conf])
    n_visible = sum(g is not None for g in gt)
    if n_visible == 0:
        raise ValueError("the target is never visible: recall is undefined")
    precision, recall = np.zeros(len(thresholds)), np.zeros(len(thresholds))
    for i, tau in enumerate(thresholds):
        counted = reported & (conf >= tau)
        if not counted.any():
            precision[i], recall[i] = 1.0, 0.0
        else:
            precision[i] = ov[counted].mean()
            recall[i] = ov[counted].sum() / n_visible
    return precision, recall


@dataclass
class Track:
    """One tracker run on one sequence."""
    name: str
    boxes: list[np.ndarray | None]
    scores: list[float]
    gt: list[np.ndarray | None]
    seconds: float = 0.0
    states: list[str] | None = None


def vot_lt(runs: Seq[Track], resolution: int = 100) -> dict:
    """{"precision", "recall", "f_score", "threshold"} over one or more sequences (curves averaged)."""
    if not runs:
        raise ValueError("no sequences")
    thr = thresholds_from([s for r in runs for s, b in zip(r.scores, r.boxes) if b is not None], resolution)
    curves = [pr_curve(r.boxes, r.scores, r.gt, thr) for r in runs]
    pr = np.mean([c[0] for c in curves], axis=0)
    re = np.mean([c[1] for c in curves], axis=0)
    f = np.where(pr + re > 0, 2 * pr * re / np.maximum(pr + re, 1e-12), 0.0)
    k = int(np.argmax(f))
    return {"precision": round(float(pr[k]), 4), "recall": round(float(re[k]), 4), "f_score": round(float(f[k]), 4),
            "threshold": None if not math.isfinite(thr[k]) else round(float(thr[k]), 4)}


# ---------------------------------------------------------------- running trackers on the set

def plain_config(base: TrackerConfig | None = None) -> TrackerConfig:
    """The local tracker alone: no verification, no re-detection (the paper's baseline)."""
    from dataclasses import replace

    return replace(base or TrackerConfig(), verify=False, redetect=False)


def run_tracker(seq, config: TrackerConfig, detector, frames: list | None = None) -> Track:
    """Track the target of an evalset.Sequence from its first-frame ground-truth box.
    `frames`: the sequence's (frame, ground truth) pairs, if already rendered."""
    frames_gt = iter(frames if frames is not None else seq)
    first, gt0 = next(frames_gt)
    if gt0 is None:
        raise ValueError(f"{seq.name}: the target is not visible in the first frame")
    gts = [gt0]
    tracker = AthleteTracker(config, target_bbox_px=tuple(float(v) for v in gt0), detector=detector)
    out = []
    spent = 0.0
    t = time.perf_counter()
    out += tracker.push(first)
    spent += time.perf_counter() - t
    for frame, gt in frames_gt:
        gts.append(gt)
        t = time.perf_counter()
        out += tracker.push(frame)
        spent += time.perf_counter() - t
    t = time.perf_counter()
    out += tracker.finish()
    spent += time.perf_counter() - t
    assert [ft.index for ft in out] == list(range(len(gts)))
    return Track(seq.name, [ft.bbox_px for ft in out], [float(ft.score) for ft in out], gts, spent,
                 [ft.state for ft in out])


def evaluate(split: str = "test", cases: tuple[str, ...] | None = None, config: TrackerConfig | None = None,
             detector=None, progress=None) -> dict:
    """Plain vs full tracker on a split of the evaluation set: the `coach tracker eval` document."""
    from . import evalset
    from .detector import PersonDetector

    cases = tuple(cases or evalset.CASES)
    detector = detector or PersonDetector()
    full_cfg = config or TrackerConfig()
    modes = {"plain": plain_config(full_cfg), "full": full_cfg}
    sprites = evalset.load_sprites()
    seqs = [evalset.make_sequence(c, s, sprites) for c in cases
            for s in (evalset.SPLITS["tune"] + evalset.SPLITS["test"] if split == "all" else evalset.SPLITS[split])]
    runs: dict[str, list[Track]] = {m: [] for m in modes}
    per_seq = []
    for seq in seqs:
        row = {"sequence": seq.name, "case": seq.case, "split": seq.split, "frames": seq.n_frames,
               "athlete": seq.actors[0].sprite}
        rendered = list(seq)               # render once, run both trackers on the same frames
        for m, cfg in modes.items():
            r = run_tracker(seq, cfg, detector, rendered)
            runs[m].append(r)
            s = vot_lt([r])
            row[m] = {"f_score": s["f_score"], "precision": s["precision"], "recall": s["recall"],
                      "fps": round(seq.n_frames / max(r.seconds, 1e-9), 1)}
            if m == "full":
                row[m]["states"] = {k: r.states.count(k) for k in sorted(set(r.states))}
        row["absent_frames"] = sum(g is None for g in runs["full"][-1].gt)
        del rendered
        per_seq.append(row)
        if progress:
            progress(row)
    out: dict = {"split": split, "sequences": len(seqs), "frames": sum(s.n_frames for s in seqs)}
    for m in modes:
        out[m] = vot_lt(runs[m])
    hard = [i for i, s in enumerate(seqs) if s.case in evalset.HARD]
    if hard:
        out["hard"] = {m: vot_lt([runs[m][i] for i in hard]) for m in modes}
    out["cases"] = {}
    for c in cases:
        idx = [i for i, s in enumerate(seqs) if s.case == c]
        out["cases"][c] = {m: vot_lt([runs[m][i] for i in idx]) for m in modes}
        out["cases"][c]["sequences"] = len(idx)
    secs = {m: sum(r.seconds for r in runs[m]) for m in modes}
    out["fps"] = round(out["frames"] / max(secs["full"], 1e-9), 1)
    out["fps_plain"] = round(out["frames"] / max(secs["plain"], 1e-9), 1)
    out["per_sequence"] = per_seq
    return out
