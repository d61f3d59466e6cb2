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
from typing import Iterable
from typing import Sequence as Seq

import numpy as np

from ..athlete import AthleteTracker
from ..config import TrackerConfig
from ..geometry import iou_xywh


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
    people: dict | None = None        # multi-person tracker: {track_id: {frame: box}} (MOTA / IDF1)
    alone: "Track | None" = None      # multi-person tracker: the athlete's track before refinement
    filled: list | None = None        # multi-person tracker: frames its track filled in after refinement


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


def run_tracker(seq, config, detector, frames: list | None = None, kind: str = "legacy", refine: bool = True) -> Track:
    """Track the target of an evalset.Sequence from its first-frame ground-truth box.
    `frames`: the sequence's (frame, ground truth) pairs, if already rendered. kind: "legacy"
    (AthleteTracker with `config`, a TrackerConfig) or "mot" (MotAthleteTracker, `config` a
    MotConfig or None; the set is 10 fps footage)."""
    frames_gt = iter(frames if frames is not None else seq)
    first, gt0 = next(frames_gt)
    if gt0 is None:
        raise ValueError(f"{seq.name}: the target is not visible in the first frame")
    gts = [gt0]
    target = tuple(float(v) for v in gt0)
    if kind == "mot":
        from ..mot import MotAthleteTracker
        rendered = frames if frames is not None else list(seq)
        frames_gt = iter(rendered)
        first, _ = next(frames_gt)
        tracker = MotAthleteTracker(config, target_bbox_px=target, detector=detector, fps=10.0,
                                    reread=lambda: (f for f, _ in rendered), refine=refine)
    else:
        tracker = AthleteTracker(config, target_bbox_px=target, detector=detector)
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
    people = {k: dict(v) for k, v in tracker.tracks().items()} if kind == "mot" else None
    r = Track(seq.name, [ft.bbox_px for ft in out], [float(ft.score) for ft in out], gts, spent,
              [ft.state for ft in out], people)
    r.filled = list(getattr(tracker, "filled", []))
    alone = getattr(tracker, "alone", None)
    if alone is not None:      # the multi-person track before the single-target refinement
        r.alone = Track(seq.name, [ft.bbox_px for ft in alone], [float(ft.score) for ft in alone], gts, spent,
                        [ft.state for ft in alone])
    return r


def identity_switches(boxes: Seq[np.ndarray | None], actors_gt: Seq[Seq[np.ndarray | None]], min_iou: float = 0.5) -> int:
    """How often the athlete's box moves from one person to another: in frames where it covers
    somebody (IoU >= min_iou with an actor's ground truth; actors_gt[t][i]), count the changes of
    whom it covers (frames covering nobody are skipped)."""
    switches, prev = 0, None
    for b, gts in zip(boxes, actors_gt):
        if b is None:
            continue
        ious = [0.0 if g is None else iou_xywh(np.asarray(b, float), np.asarray(g, float)) for g in gts]
        if not ious or max(ious) < min_iou:
            continue
        who = int(np.argmax(ious))
        switches += prev is not None and who != prev
        prev = who
    return switches


def mot_counts(people: dict, actors_gt: Seq[Seq[np.ndarray | None]], min_iou: float = 0.5) -> dict:
    """CLEAR-MOT and identity counts of all tracks vs all actors (IoU >= min_iou, Hungarian per
    frame): gt, tp, fp, fn, idsw (MOTA = 1 - (fn + fp + idsw) / gt) and idtp (IDF1 = 2 idtp /
    (gt + predicted boxes), with the one-to-one track <-> actor map that maximises idtp)."""
    from scipy.optimize import linear_sum_assignment

    ids = sorted(people)
    n_act = max((len(g) for g in actors_gt), default=0)
    c = {"gt": 0, "tp": 0, "fp": 0, "fn": 0, "idsw": 0, "pred": 0}
    last: dict[int, int] = {}
    pair = np.zeros((len(ids), n_act))
    for t, gts in enumerate(actors_gt):
        tb = [(k, people[i][t]) for k, i in enumerate(ids) if t in people[i]]
        ga = [(a, g) for a, g in enumerate(gts) if g is not None]
        c["gt"] += len(ga)
        c["pred"] += len(tb)
        for k, b in tb:                              # identity measure: every overlap counts
            for a, g in ga:
                if iou_xywh(np.asarray(b, float), np.asarray(g, float)) >= min_iou:
                    pair[k, a] += 1
        if not tb or not ga:
            c["fp"] += len(tb)
            c["fn"] += len(ga)
            continue
        m = np.array([[iou_xywh(np.asarray(b, float), np.asarray(g, float)) for _, g in ga] for _, b in tb])
        rows, cols = linear_sum_assignment(-m)
        good = [(r, q) for r, q in zip(rows, cols) if m[r, q] >= min_iou]
        c["tp"] += len(good)
        c["fp"] += len(tb) - len(good)
        c["fn"] += len(ga) - len(good)
        for r, q in good:
            a, k = ga[q][0], tb[r][0]
            c["idsw"] += a in last and last[a] != k
            last[a] = k
    rows, cols = linear_sum_assignment(-pair) if pair.size else ([], [])
    c["idtp"] = int(sum(pair[r, q] for r, q in zip(rows, cols)))
    return c


def mot_summary(counts: Seq[dict]) -> dict:
    tot = {k: sum(c[k] for c in counts) for k in counts[0]}
    return {"mota": round(1 - (tot["fn"] + tot["fp"] + tot["idsw"]) / max(tot["gt"], 1), 4),
            "idf1": round(2 * tot["idtp"] / max(tot["gt"] + tot["pred"], 1), 4),
            "id_switches": tot["idsw"], **{k: tot[k] for k in ("gt", "tp", "fp", "fn")}}


def evaluate(split: str = "test", cases: tuple[str, ...] | None = None, config: TrackerConfig | None = None,
             detector=None, progress=None, trackers: tuple[str, ...] = ("plain", "full", "mot"),
             mot_config=None) -> dict:
    """Trackers on a split of the evaluation set: the `coach tracker eval` document.
    trackers: "plain" (local tracker alone), "full" (the single-target tracker: verifier,
    re-detection), "mot" (tracking by detection of everyone, services/tracker/mot)."""
    from ..detector import PersonDetector
    from . import evalset

    cases = tuple(cases or evalset.CASES)
    detector = detector or PersonDetector()
    full_cfg = config or TrackerConfig()
    known = {"plain": (plain_config(full_cfg), "legacy"), "full": (full_cfg, "legacy"), "mot": (mot_config, "mot")}
    modes = {m: known[m] for m in trackers}
    sprites = evalset.load_sprites()
    seqs = [evalset.make_sequence(c, s, sprites) for c in cases
            for s in (evalset.SPLITS["tune"] + evalset.SPLITS["test"] if split == "all" else evalset.SPLITS[split])]
    names = list(modes) + (["mot_alone"] if "mot" in modes else [])
    runs: dict[str, list[Track]] = {m: [] for m in names}
    switches: dict[str, list[int]] = {m: [] for m in names}
    mot_c: list[dict] = []
    per_seq = []
    for seq in seqs:
        row = {"sequence": seq.name, "case": seq.case, "split": seq.split, "frames": seq.n_frames,
               "athlete": seq.actors[0].sprite}
        rendered = [seq.render(t)[:2] for t in range(seq.n_frames)]   # render once, run every tracker on the same frames
        actors_gt = [b for _, b in rendered]
        pairs = [(f, b[0]) for f, b in rendered]
        for m, (cfg, kind) in modes.items():
            r = run_tracker(seq, cfg, detector, pairs, kind)
            runs[m].append(r)
            s = vot_lt([r])
            switches[m].append(identity_switches(r.boxes, actors_gt))
            row[m] = {"f_score": s["f_score"], "precision": s["precision"], "recall": s["recall"],
                      "fps": round(seq.n_frames / max(r.seconds, 1e-9), 1), "id_switches": switches[m][-1],
                      "states": {k: r.states.count(k) for k in sorted(set(r.states))}}
            if r.people is not None:
                mot_c.append(mot_counts(r.people, actors_gt))
                row[m]["mot"] = mot_summary([mot_c[-1]])
            if r.alone is not None:
                runs["mot_alone"].append(r.alone)
                switches["mot_alone"].append(identity_switches(r.alone.boxes, actors_gt))
                row["mot_alone"] = {k: v for k, v in vot_lt([r.alone]).items() if k != "threshold"}
                row["mot_alone"]["id_switches"] = switches["mot_alone"][-1]
        row["absent_frames"] = sum(g is None for _, g in pairs)
        del rendered, pairs
        per_seq.append(row)
        if progress:
            progress(row)
    out: dict = {"split": split, "sequences": len(seqs), "frames": sum(s.n_frames for s in seqs)}
    modes = {m: None for m in names if runs[m]}
    for m in modes:
        out[m] = vot_lt(runs[m])
        out[m]["id_switches_per_sequence"] = round(float(np.mean(switches[m])), 3)
    if mot_c:
        out["mot"]["all_people"] = mot_summary(mot_c)
    hard = [i for i, s in enumerate(seqs) if s.case in evalset.HARD]
    if hard:
        out["hard"] = {m: vot_lt([runs[m][i] for i in hard]) for m in modes}
    out["cases"] = {}
    for c in cases:
        idx = [i for i, s in enumerate(seqs) if s.case == c]
        out["cases"][c] = {m: vot_lt([runs[m][i] for i in idx]) for m in modes}
        out["cases"][c]["sequences"] = len(idx)
    secs = {m: sum(r.seconds for r in runs[m]) for m in modes if m != "mot_alone"}
    out["fps"] = {m: round(out["frames"] / max(secs[m], 1e-9), 1) for m in secs}
    out["per_sequence"] = per_seq
    return out
