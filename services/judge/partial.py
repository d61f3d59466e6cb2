"""Provisional verdicts while an analysis runs (issue 17): judge the clips posed so far.

The final verdict waits for every clip (the packs use temporal deltas, the activity gating looks
at the whole sequence). A user should not wait that long to hear something, so on a ClipPoses of
an analysis that is not complete the judge may judge the *contiguous posed prefix* (clips 0..k-1
all stored, for the same athlete revision) and publish a PartialVerdict:

- when: the first time `FIRST_CLIPS` clips are posed, then each time the prefix has grown by half
  since the last partial (`GROWTH`): clips 1, 2, 3, 5, 8, 12, ... — a few partials per analysis,
  whose total cost is a small multiple of the final judgement's, never one per clip;
- what: only what later frames cannot change much. A fault segment (or a not-judgeable stretch)
  that ends less than `SAFE_MARGIN_S` before the prefix's end may still grow, merge or vanish
  (the segmenter merges runs across gaps, the activity gating may see a repetition differently):
  it is withheld and counted (`withheld`). The activity gating of the final verdict applies as it
  is: when the prefix shows no exercise, the partial says so in `finding` and lists no faults.
  Repetition quality and the action score are left to the final verdict.

Everything here is pure (arrays and documents in, fields out); services/judge/worker.py reads
the store, judges and publishes.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from shared.documents import ClipPosesDocument, PartialVerdictDocument, PoseFrame
from shared.messages import FaultSegment, NotJudgeable
from shared.poses import keypoints_array
from shared.render import fault_flag
from shared.store import ObjectNotFound, keys

FIRST_CLIPS = 1        # the first partial as soon as this many clips are posed
GROWTH = 1.5           # the next one once the posed prefix is this many times the last one's
SAFE_MARGIN_S = 1.0    # segments ending closer than this to the prefix's end are withheld


def contiguous_clips(aid: str, stored_keys: Sequence[str], clip_count: Optional[int] = None) -> int:
    """How many clips 0..k-1 have a poses object among `stored_keys` (a listing of poses/)."""
    names, k = set(stored_keys), 0
    while (clip_count is None or k < clip_count) and keys.clip_poses(aid, k) in names:
        k += 1
    return k


def due(clips_ready: int, last: Optional[PartialVerdictDocument], revision: int,
        clip_count: Optional[int] = None) -> int:
    """The sequence number of the partial verdict to make now for `clips_ready` posed clips, or 0
    when none is due: not enough new clips, a complete analysis (the final verdict comes instead),
    or a stored partial of a newer athlete revision (this message is stale)."""
    if clips_ready < FIRST_CLIPS or (clip_count is not None and clips_ready >= clip_count):
        return 0
    if last is None or last.revision < revision:
        return 1
    if last.revision > revision:
        return 0
    return last.sequence + 1 if clips_ready >= math.ceil(last.clips_posed * GROWTH) else 0


def load_prefix(store, aid: str, clips: int, revision: int) -> tuple[int, list[PoseFrame], np.ndarray]:
    """Clips 0..clips-1 as far as they are stored for `revision` (a clip of another revision, or one
    gone missing, ends the prefix): (clips read, frames, keypoints [N,33,3])."""
    frames: list[PoseFrame] = []
    k = 0
    for k in range(clips):
        try:
            doc = ClipPosesDocument.read(store, keys.clip_poses(aid, k))
        except ObjectNotFound:
            return k, frames, keypoints_array(frames)
        if doc.revision != revision:
            return k, frames, keypoints_array(frames)
        frames.extend(doc.frames)
    else:
        k = clips
    return k, frames, keypoints_array(frames)


def frame_flags(judged: Optional[dict], fault_ids: Sequence[str], thresholds: dict[str, float],
                n: int) -> list[Optional[bool]]:
    """Each prefix frame's colour in the annotated video by the rule the final verdict is drawn with
    (shared.render.fault_flag on the probabilities as verdict.json stores them: rounded, null outside
    the exercise). The suggest stage pre-renders from these; where the final verdict differs, it
    renders that clip again."""
    if judged is None:
        return [None] * n
    probs, performing = judged["probs"], judged["performing"]
    return [fault_flag({fid: (None if not np.isfinite(p) else round(float(p), 4)) for fid, p in zip(fault_ids, probs[t])},
                       thresholds) if performing[t] else None for t in range(n)]


def provisional(judged: Optional[dict], segments: list[dict], frame_indices: Sequence[int], fps: float,
                track_id: int, frames_total: Optional[int], exercise_sport: bool,
                margin_s: float = SAFE_MARGIN_S) -> dict:
    """The safe part of a prefix's judgement, as PartialVerdictBody fields.

    judged: services/judge/worker.py judge_while_performing() on the prefix (None when no frame of
    the prefix has a pose); segments: fault_segments() on its probabilities (positions in the prefix)."""
    n = len(frame_indices)
    margin = int(math.ceil(margin_s * fps - 1e-9))
    safe_end = n - margin                 # a stretch is safe when it ends (exclusive) by this position
    posed_until_s = round(n / fps, 3)
    safe_until_s = round(max(0, safe_end) / fps, 3)
    total_s = f" of {frames_total / fps:.1f} s" if frames_total else ""
    notes = [f"provisional: judged on the first {posed_until_s:.1f} s{total_s}; the final verdict may differ"]

    def at(t: int) -> int:
        return int(frame_indices[t])

    if judged is None or judged["finding"]:
        finding = (judged or {}).get("finding") or f"no body pose found in the first {posed_until_s:.1f} s yet"
        notes.append("the exercise is not seen so far: later frames may show it")
        return {"faults": [], "withheld": 0, "not_judgeable": [], "finding": finding, "frames_performing":
                0 if judged is None else int(judged["frames_performing"]),
                "repetitions": 0 if exercise_sport else None, "posed_until_s": posed_until_s,
                "safe_until_s": safe_until_s, "notes": notes}
    faults, withheld = [], 0
    for s in segments:
        if s["end_frame"] + 1 > safe_end:
            withheld += 1
            continue
        faults.append(FaultSegment(type=s["type"], start_frame=at(s["start_frame"]), end_frame=at(s["end_frame"]),
                                   start_s=round(s["start_frame"] / fps, 3), end_s=round(s["end_frame"] / fps, 3),
                                   peak_probability=round(float(s["peak_probability"]), 4), track_id=track_id))
    not_judgeable = [NotJudgeable(type=fid, start_frame=at(s0), end_frame=at(e0), start_s=round(s0 / fps, 3),
                                  end_s=round(e0 / fps, 3), view=view, reason=reason)
                     for fid, s0, e0, view, reason in judged["not_judgeable"] if e0 + 1 <= safe_end]
    reps = None
    if judged.get("repetitions") is not None:
        reps = sum(1 for r in judged["repetitions"] if not r.partial and r.end + 1 <= safe_end)
    elif judged.get("counted_reps") is not None:
        reps = sum(1 for _, e0 in judged["counted_reps"] if e0 + 1 <= safe_end)
    elif exercise_sport:
        reps = 0
    if withheld:
        notes.append(f"{withheld} fault segment(s) ending after {safe_until_s:.1f} s withheld until later frames "
                     "settle them")
    if exercise_sport:
        notes.append("repetition quality and the action score come with the final verdict")
    return {"faults": faults, "withheld": withheld, "not_judgeable": not_judgeable, "finding": None,
            "frames_performing": int(judged["frames_performing"]), "repetitions": reps,
            "posed_until_s": posed_until_s, "safe_until_s": safe_until_s, "notes": notes}
