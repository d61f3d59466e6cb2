"""Is the right person chosen? The athlete choice evaluated from detection, not from a given box.

`coach tracker eval` starts every sequence from the athlete's ground-truth box, so choosing the
athlete is never measured. Here the trackers start with NO box, as the worker runs them when a
request has no `target_bbox_px` (services/tracker/worker.py `make_tracker`):

* `legacy` (`COACH_TRACKER=legacy`, the default until 2026-12-08): `AthleteTracker()`: whoever
  moved most over the first 15 frames after the first detection, then the single-target tracker
  follows them.
* `stream` (the worker's default, `COACH_TRACKER=mot` with `most_active`):
  `StreamingAthleteTracker`: the legacy tracker's provisional athlete streamed while the
  multi-person tracker follows everyone; the final athlete is the policy's, the provisional
  track kept and fused where it is that person, else refined as for `mot/<policy>`.
* `mot/<policy>` (`COACH_TRACKER=mot`, `COACH_ATHLETE_POLICY` = most_active | largest |
  first_seen): `MotAthleteTracker` follows everyone over the whole clip, its own `finish()` picks
  the athlete by the policy among the tracks of >= `COACH_MIN_TRACK_S` (1 s), then refines them
  with the single-target tracker (`COACH_TRACKER_REFINE`, default on). The multi-person pass runs
  once per sequence; every policy's `finish()` runs on a copy of its tracks (the same code the
  worker runs), and the refinement once per distinct chosen track.

The ground-truth athlete is the evaluation set's: actor 0 of every sequence (evalset.py).

Measures (pure functions below, `choice_row` / `summarise`):

* correct: the chosen track (for mot its multi-person track, the identity the policy picked; for
  legacy the athlete track it outputs) covers the athlete (IoU >= 0.5 with the athlete's
  ground truth) in more than half of the frames it has a box;
* picked: of the first 10 frames in which the chosen track covers anybody (IoU >= 0.5), most
  cover the athlete: the policy picked the athlete's track, even if the track later went to
  someone else (tracking's error, counted by `correct` and identity switches);
* delivered accuracy: the same test on the athlete boxes the worker outputs (for mot after
  refinement, which starts from the chosen track's first box and may follow the athlete even
  where the multi-person track later went to someone else, or the reverse);
* reachable: some track the worker keeps in tracking.json's `athletes` (>= min_track_s) is
  correct: after a wrong choice the user can switch to the athlete (`POST
  /v1/analyses/{id}/athlete`); for mot a wrong choice with a reachable athlete is the policy's
  fault, an unreachable one the tracking's;
* lock frame: the first frame from which the delivered track stays on the athlete: the first
  frame covering the athlete after the last frame it covers someone else (frames covering
  nobody, e.g. the athlete absent or the box on the background, neither lock nor break a lock);
  None if it never does. Time-to-lock = lock frame / fps;
* close: the policy listed alternatives (candidates scoring >= 0.7 x the chosen one);
* F-score (VOT-LT) of the delivered track, as in `coach tracker eval`;
* with `from_box`, the reference `legacy/box` and `mot/box`: the trackers started from the
  athlete's first ground-truth box (a request with `target_bbox_px`; `coach tracker eval`):
  how often the same measures are met when the choice cannot be wrong;
* on truth: the policy applied to the ground-truth boxes of all actors (perfect tracks, no
  keypoints): does it pick actor 0? Where it does not, the athlete is not distinguishable by that
  policy in that case (a walker among walkers), whatever the tracker does.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Sequence as Seq

import numpy as np

from ..geometry import iou_xywh

POLICIES = ("most_active", "largest", "first_seen")
MIN_IOU = 0.5


# ---------------------------------------------------------------- pure scoring

def covers(box, gts: Seq, min_iou: float = MIN_IOU) -> int | None:
    """Index of the actor a box covers (the best IoU, if >= min_iou), or None (nobody / no box)."""
    if box is None:
        return None
    ious = [0.0 if g is None else iou_xywh(np.asarray(box, float), np.asarray(g, float)) for g in gts]
    if not ious or max(ious) < min_iou:
        return None
    return int(np.argmax(ious))


def on_target_share(boxes: Seq, target_gt: Seq, min_iou: float = MIN_IOU) -> float | None:
    """Share of the frames where the track has a box in which it covers the target (IoU >=
    min_iou); None if the track has no box at all."""
    n = on = 0
    for b, g in zip(boxes, target_gt):
        if b is None:
            continue
        n += 1
        on += g is not None and iou_xywh(np.asarray(b, float), np.asarray(g, float)) >= min_iou
    return None if n == 0 else on / n


def is_correct(share: float | None) -> bool:
    """The chosen track is the athlete: it covers them in most (> half) of its frames."""
    return share is not None and share > 0.5


def lock_frame(boxes: Seq, actors_gt: Seq[Seq], target: int = 0, min_iou: float = MIN_IOU) -> int | None:
    """First frame from which the track stays on the target: the first frame covering the target
    after the last frame covering anyone else; None if there is no such frame."""
    who = [covers(b, gts, min_iou) for b, gts in zip(boxes, actors_gt)]
    last_other = max((t for t, w in enumerate(who) if w is not None and w != target), default=-1)
    return next((t for t in range(last_other + 1, len(who)) if who[t] == target), None)


@dataclass
class _Truth:
    """The fields of `multi.Obs` that `choice.describe_track` reads."""
    box: np.ndarray
    angle: float | None = None


def policy_on_truth(actors_gt: Seq[Seq], frame_h: int, fps: float, policy: str,
                    min_track_s: float = 1.0) -> int | None:
    """The actor the policy picks when every actor's track is its ground truth (perfect
    tracking, no keypoints); None if nobody is visible. Same pool rule as the worker: actors
    visible >= min_track_s, else everyone."""
    from ..mot import choice as ch

    n = len(actors_gt)
    n_act = max((len(g) for g in actors_gt), default=0)
    cands = []
    for a in range(n_act):
        hist = {t: _Truth(np.asarray(g[a], np.float64)) for t, g in enumerate(actors_gt) if g[a] is not None}
        if hist:
            cands.append(ch.describe_track(a, hist, n, frame_h, fps))
    if not cands:
        return None
    min_frames = max(1, int(round(min_track_s * fps)))
    pool = [c for c in cands if c.frames >= min_frames] or cands
    return ch.choose(pool, policy)[0].track_id


def picked_first(boxes: Seq, actors_gt: Seq[Seq], target: int = 0, first: int = 10,
                 min_iou: float = MIN_IOU) -> bool:
    """The choice picked the target's track: of the first `first` frames in which the track
    covers anybody, most cover the target (whatever the track does later: a later switch to
    someone else is the tracking's error, not the choice's)."""
    who = [w for w in (covers(b, gts, min_iou) for b, gts in zip(boxes, actors_gt)) if w is not None][:first]
    return bool(who) and sum(w == target for w in who) > len(who) / 2


def choice_row(chosen_boxes: Seq, delivered_boxes: Seq, actors_gt: Seq[Seq], fps: float,
               alternatives: int | None = None, reachable: bool | None = None) -> dict:
    """One sequence, one tracker/policy: the figures `summarise` aggregates.
    chosen_boxes: the chosen identity's track; delivered_boxes: the athlete's boxes the worker
    outputs (after refinement); alternatives: how many close runners-up (None: the tracker has no
    margin)."""
    target_gt = [g[0] if g else None for g in actors_gt]
    share = on_target_share(chosen_boxes, target_gt)
    delivered = on_target_share(delivered_boxes, target_gt)
    lock = lock_frame(delivered_boxes, actors_gt)
    return {"correct": is_correct(share), "on_athlete": None if share is None else round(share, 3),
            "picked": picked_first(chosen_boxes, actors_gt), "delivered_correct": is_correct(delivered),
            "reachable": reachable, "lock_frame": lock, "lock_s": None if lock is None else round(lock / fps, 2),
            "close": None if alternatives is None else alternatives > 0}


def summarise(rows: Seq[dict]) -> dict:
    """Per tracker/policy over sequences: sequences, choice accuracy, reachable (and how many
    wrong choices had the athlete listed: `wrong_but_listed`), close
    share (and wrong among the close ones), locked share and time-to-lock (median / mean s over
    the locked sequences)."""
    n = len(rows)
    if n == 0:
        raise ValueError("no sequences")
    out: dict = {"sequences": n, "correct": sum(r["correct"] for r in rows),
                 "accuracy": round(sum(r["correct"] for r in rows) / n, 3)}
    for key, name in (("picked", "picked"), ("delivered_correct", "delivered_accuracy")):
        if all(key in r for r in rows):
            out[name] = round(sum(r[key] for r in rows) / n, 3)
    reach = [r for r in rows if r.get("reachable") is not None]
    if reach:
        out["reachable"] = round(sum(r["reachable"] for r in reach) / len(reach), 3)
        # wrong choices where the athlete is among the people listed: a switch puts it right
        out["wrong_but_listed"] = sum(r["reachable"] and not r["correct"] for r in reach)
    close = [r for r in rows if r.get("close") is not None]
    if close:
        out["close"] = round(sum(r["close"] for r in close) / len(close), 3)
        out["close_and_wrong"] = sum(r["close"] and not r["correct"] for r in close)
    locks = [r["lock_s"] for r in rows if r["lock_s"] is not None]
    out["locked"] = round(len(locks) / n, 3)
    out["lock_s_median"] = None if not locks else round(float(np.median(locks)), 2)
    out["lock_s_mean"] = None if not locks else round(float(np.mean(locks)), 2)
    return out


# ---------------------------------------------------------------- running the trackers without a box

class _Replay:
    """Stands in for a finished `MultiTracker`: finish() returns a fresh copy of its tracks."""

    def __init__(self, mot):
        self._tracks = mot.finish()
        for tr in self._tracks:          # the local trackers (OpenCV objects) are done with
            tr.local = None
        self._weights, self.seed_id, self.stats = mot._weights, mot.seed_id, mot.stats

    def finish(self):
        return copy.deepcopy(self._tracks)


def run_mot_policies(frames: Seq[np.ndarray], detector, fps: float, policies: Seq[str] = POLICIES,
                     min_track_s: float = 1.0, refine: bool = True) -> tuple[dict, float]:
    """The multi-person tracker once over `frames`, then each policy's choice as the worker makes
    it (MotAthleteTracker.finish). -> ({policy: {"chosen": boxes of the chosen multi-person track,
    "delivered": the worker's athlete boxes, "alternatives": n, "reason", "kept": [boxes of every
    kept track]}}, seconds)."""
    from ..mot import MotAthleteTracker

    def make(policy, do_refine):
        return MotAthleteTracker(detector=detector, fps=fps, policy=policy, min_track_s=min_track_s,
                                 reread=lambda: iter(frames), refine=do_refine)

    started = time.perf_counter()
    first = make(policies[0], False)
    for f in frames:
        first.push(f)
    replay = _Replay(first.mot)
    n = len(frames)
    out: dict = {}
    refined: dict[int, list] = {}
    for p in policies:
        tr = make(p, False)
        tr.mot, tr._n, tr._size = replay, first._n, first._size
        fts = tr.finish()
        best = tr.choice.track_id
        chosen = [None if ft.bbox_px is None else ft.bbox_px.copy() for ft in fts]
        if refine and best not in refined:     # the worker's refinement, once per distinct choice
            again = make(p, True)
            again.mot, again._n, again._size = replay, first._n, first._size
            refined[best] = [(ft.bbox_px, float(ft.score)) for ft in again.finish()]
        kept = _kept_boxes(tr.athletes, n)
        delivered = refined.get(best) or [(b, float(ft.score)) for b, ft in zip(chosen, fts)]
        out[p] = {"chosen": chosen, "delivered": [b for b, _ in delivered], "scores": [s for _, s in delivered],
                  "alternatives": len(tr.alternatives), "reason": tr.choice.reason, "kept": kept, "track_id": best}
    return out, time.perf_counter() - started


def _kept_boxes(athletes: Seq[dict], n: int) -> list[list]:
    """tracking.json's `athletes` (frames, boxes_px) as one box or None per frame of the clip."""
    out = []
    for a in athletes:
        at = dict(zip(a["frames"], a["boxes_px"]))
        out.append([at.get(t) for t in range(n)])
    return out


def run_legacy(frames: Seq[np.ndarray], detector, fps: float, config=None, min_track_s: float = 1.0) -> tuple[dict, float]:
    """The default tracker as the worker runs it without a box: AthleteTracker(). "kept": every
    track the worker writes to tracking.json's `athletes` (>= min_track_s; worker.people_doc),
    the people a user can switch to."""
    from ..athlete import AthleteTracker

    started = time.perf_counter()
    tracker = AthleteTracker(config, detector=detector)
    fts = []
    for f in frames:
        fts += tracker.push(f)
    fts += tracker.finish()
    seconds = time.perf_counter() - started
    boxes = [ft.bbox_px for ft in fts]
    min_frames = max(1, int(round(min_track_s * fps)))
    kept = []
    for v in tracker.tracks().values():
        if len(v) >= min_frames:
            at = dict(v)
            kept.append([at.get(t) for t in range(len(frames))])
    return {"chosen": boxes, "delivered": boxes, "scores": [float(ft.score) for ft in fts], "alternatives": None,
            "reason": tracker.choice.reason if tracker.choice else None, "kept": kept}, seconds


def run_stream(frames: Seq[np.ndarray], detector, everyone, fps: float, policy: str = "most_active",
               min_track_s: float = 1.0) -> tuple[dict, float]:
    """The worker's default tracker without a box (`StreamingAthleteTracker`, `everyone`: the
    multi-person thread's own detector): "chosen" is the policy's multi-person track, "delivered"
    the final boxes, "kept" everyone in tracking.json's `athletes`."""
    from ..mot import StreamingAthleteTracker

    started = time.perf_counter()
    tr = StreamingAthleteTracker(lambda: iter(frames), detector, everyone, fps=fps, policy=policy,
                                 min_track_s=min_track_s)
    for f in frames:
        tr.push(f)
    tr.finish()
    seconds = time.perf_counter() - started
    kept = _kept_boxes(tr.athletes, len(frames))
    return {"chosen": [ft.bbox_px for ft in tr.alone], "delivered": [ft.bbox_px for ft in tr.final],
            "scores": [float(ft.score) for ft in tr.final], "alternatives": len(tr.alternatives),
            "reason": tr.choice.reason, "kept": kept, "track_id": tr.choice.track_id}, seconds


def run_from_box(seq, pairs, detector, fps: float, kind: str) -> tuple[dict, float]:
    """Reference: the tracker started from the athlete's first ground-truth box (`coach tracker
    eval`, request with target_bbox_px = policy "box"): the same measures, no choice involved."""
    from .evaluation import run_tracker

    r = run_tracker(seq, None, detector, pairs, kind)
    chosen = r.alone.boxes if r.alone is not None else r.boxes
    return {"chosen": list(chosen), "delivered": list(r.boxes), "scores": list(r.scores), "alternatives": None,
            "reason": "target_bbox (ground truth)", "kept": None}, r.seconds


SAVED = ("chosen", "delivered", "scores", "kept", "alternatives", "reason", "track_id")


def evaluate_choice(split: str = "test", cases: tuple[str, ...] | None = None, policies: Seq[str] = POLICIES,
                    legacy: bool = True, detector=None, progress=None, fps: float = 10.0,
                    seeds: tuple[int, ...] | None = None, save_dir: str | None = None,
                    from_box: bool = False, stream: bool = False) -> dict:
    """The `coach tracker eval --choice` document (module doc). seeds: a subset of the split's;
    save_dir: also write every sequence's record there (<sequence>.pkl: ground truth of every
    actor, and per tracker the chosen, delivered and kept tracks): `score_saved` scores them again.
    from_box: also the reference runs from the ground-truth box (`legacy/box`, `mot/box`);
    stream: also the worker's default (`stream`, most_active)."""
    import pickle
    from pathlib import Path

    from ..detector import PersonDetector
    from . import evalset

    cases = tuple(cases or evalset.CASES)
    detector = detector or PersonDetector()
    everyone = PersonDetector() if stream else None
    sprites = evalset.load_sprites()
    seeds = seeds or (evalset.SPLITS["tune"] + evalset.SPLITS["test"] if split == "all" else evalset.SPLITS[split])
    seconds: dict[str, float] = {"legacy": 0.0, "mot": 0.0, "legacy/box": 0.0, "mot/box": 0.0, "stream": 0.0}
    records = []
    for case in cases:
        for seed in seeds:
            seq = evalset.make_sequence(case, seed, sprites)
            rendered = [seq.render(t)[:2] for t in range(seq.n_frames)]
            frames = [f for f, _ in rendered]
            results: dict[str, dict] = {}
            if legacy:
                results["legacy"], sec = run_legacy(frames, detector, fps)
                seconds["legacy"] += sec
            if stream:
                results["stream"], sec = run_stream(frames, detector, everyone, fps)
                seconds["stream"] += sec
            if policies:
                by_policy, sec = run_mot_policies(frames, detector, fps, policies)
                seconds["mot"] += sec
                for p, r in by_policy.items():
                    results[f"mot/{p}"] = r
            if from_box:
                pairs = [(f, b[0]) for f, b in rendered]
                for m, kind in (("legacy/box", "legacy"), ("mot/box", "mot")):
                    results[m], sec = run_from_box(seq, pairs, detector, fps, kind)
                    seconds[m] += sec
            rec = {"sequence": seq.name, "case": case, "split": seq.split, "athlete": seq.actors[0].sprite,
                   "actors_gt": [b for _, b in rendered], "fps": fps, "size": seq.size,
                   "results": {m: {k: r.get(k) for k in SAVED} for m, r in results.items()}}
            records.append(rec)
            if save_dir:
                Path(save_dir).mkdir(parents=True, exist_ok=True)
                with open(Path(save_dir) / f"{seq.name}.pkl", "wb") as fh:
                    pickle.dump(rec, fh)
            if progress:
                progress(score_record(rec, policies))
            del rendered, frames
    out = score_records(records, split, policies)
    n_frames = out["frames"]
    out["fps"] = {k: round(n_frames / v, 1) for k, v in seconds.items() if v > 0}
    return out


def score_record(rec: dict, policies: Seq[str] = POLICIES) -> dict:
    """One sequence's row: per tracker `choice_row` + F-score, identity switches and the reason;
    `on_truth`: per policy, whether it picks the athlete on the ground-truth tracks."""
    from .evaluation import Track, identity_switches, vot_lt

    actors_gt, fps = rec["actors_gt"], rec["fps"]
    target_gt = [g[0] for g in actors_gt]
    row = {k: rec[k] for k in ("sequence", "case", "split", "athlete")}
    for m, r in rec["results"].items():
        reach = None if r.get("kept") is None else any(is_correct(on_target_share(k, target_gt)) for k in r["kept"])
        cr = choice_row(r["chosen"], r["delivered"], actors_gt, fps, r["alternatives"], reach)
        cr["f_score"] = vot_lt([Track(rec["sequence"], list(r["delivered"]), list(r["scores"]), target_gt)])["f_score"]
        cr["id_switches"] = identity_switches(r["delivered"], actors_gt)
        cr["reason"] = r["reason"]
        row[m] = cr
    row["on_truth"] = {p: policy_on_truth(actors_gt, rec["size"][1], fps, p) == 0 for p in policies}
    return row


def score_records(records: Seq[dict], split: str, policies: Seq[str] = POLICIES) -> dict:
    """The document from per-sequence records (evaluate_choice's, or saved ones)."""
    from .evaluation import Track, vot_lt

    rows = [score_record(r, policies) for r in records]
    modes = list(records[0]["results"]) if records else []
    tracks = {m: [Track(r["sequence"], list(r["results"][m]["delivered"]), list(r["results"][m]["scores"]),
                        [g[0] for g in r["actors_gt"]]) for r in records] for m in modes}
    out: dict = {"split": split, "sequences": len(rows), "frames": sum(len(r["actors_gt"]) for r in records),
                 "athlete": "actor 0 (evalset)"}
    for m in modes:
        out[m] = summarise([r[m] for r in rows])
        out[m]["f_score"] = vot_lt(tracks[m])["f_score"]
        out[m]["id_switches_per_sequence"] = round(float(np.mean([r[m]["id_switches"] for r in rows])), 3)
    out["on_truth"] = {p: round(float(np.mean([r["on_truth"][p] for r in rows])), 3) for p in policies}
    out["cases"] = {}
    for c in dict.fromkeys(r["case"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["case"] == c]
        cc = {m: {"accuracy": round(float(np.mean([rows[i][m]["correct"] for i in idx])), 3),
                  "picked": round(float(np.mean([rows[i][m]["picked"] for i in idx])), 3),
                  "delivered_accuracy": round(float(np.mean([rows[i][m]["delivered_correct"] for i in idx])), 3),
                  "f_score": vot_lt([tracks[m][i] for i in idx])["f_score"]} for m in modes}
        cc["on_truth"] = {p: round(float(np.mean([rows[i]["on_truth"][p] for i in idx])), 3) for p in policies}
        cc["sequences"] = len(idx)
        out["cases"][c] = cc
    out["per_sequence"] = rows
    return out


def score_saved(save_dirs: str | Seq[str], policies: Seq[str] = POLICIES) -> dict:
    """Score the records earlier runs saved (`--save-tracks DIR`) again, without tracking; the
    trackers of several runs over the same sequences are merged per sequence."""
    import pickle
    from pathlib import Path

    by_name: dict[str, dict] = {}
    for d in ([save_dirs] if isinstance(save_dirs, str) else save_dirs):
        for f in sorted(Path(d).glob("*.pkl")):
            with open(f, "rb") as fh:
                rec = pickle.load(fh)
            if rec["sequence"] in by_name:
                by_name[rec["sequence"]]["results"].update(rec["results"])
            else:
                by_name[rec["sequence"]] = rec
    records = list(by_name.values())
    if not records:
        raise ValueError(f"{save_dirs}: no saved sequences (*.pkl)")
    modes = set(records[0]["results"])
    if any(set(r["results"]) != modes for r in records):
        raise ValueError("the saved runs do not cover the same sequences with the same trackers")
    from . import evalset

    order = {c: i for i, c in enumerate(evalset.ALL_CASES)}
    records.sort(key=lambda r: (order.get(r["case"], 99), int(r["sequence"].rsplit("-", 1)[1])))
    return score_records(records, records[0]["split"], policies)
