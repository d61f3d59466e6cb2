"""The result in pages (#17): its summary and its per-frame part as columns, from a result document.

result.json holds every frame of every athlete (about 4 MB for 795 frames of vtest.avi); a page
needs the summary first and the frames around what it shows. Pure functions on the result's JSON
(a dict as stored, so results written by any earlier version page too):

    summarize(result)                  -> ResultSummary dict   (result.json less its per-frame arrays)
    frame_columns(result, start, n)    -> ResultFrames dict    (frames [start, start+n) as columns)
    chunks(result)                     -> [ResultFrames]       (what suggest stores, CHUNK_FRAMES each)
    join_pages(pages, start, n)        -> ResultFrames dict    (a range cut out of stored chunks)
    frame_rows(page)                   -> result.json's rows back (athletes[0].frames entries, exactly)

Values are not rounded again: pose, judge and biomechanics round when they write, and a page
carries them unchanged, so a page equals the frames of result.json.
"""
from __future__ import annotations

from typing import Any, Optional

from shared.result import ResultFrames, ResultSummary
from shared.skeleton import LANDMARK_NAMES

CHUNK_FRAMES = 200     # frames per stored chunk (analyses/<id>/result-frames/NNNNN.json)
MAX_PAGE_FRAMES = 1000  # the most frames one GET /v1/analyses/{id}/frames answers
DIMS = 3               # values per landmark: [x, y, confidence] in 2D, [x, y, z] in 3D


def _athletes(result: dict) -> tuple[dict, list[dict]]:
    """(the athlete, everybody else): athletes[0] is the athlete suggest wrote; is_target decides otherwise."""
    people = list(result.get("athletes") or [])
    target = next((a for a in people if a.get("is_target")), people[0] if people else {"frames": []})
    return target, [a for a in people if a is not target]


def _span(frames: list[dict]) -> tuple[int, int]:
    idx = [int(f["index"]) for f in frames]
    return (min(idx), max(idx) + 1) if idx else (0, 0)


def paging(result: dict) -> dict:
    start, end = _span(_athletes(result)[0].get("frames") or [])
    return {"start": start, "end": end, "chunk_frames": CHUNK_FRAMES, "chunks": -(-end // CHUNK_FRAMES)}


def summarize(result: dict) -> dict:
    """The result without athletes[].frames and biomechanics.series: counts and spans instead."""
    out = {k: v for k, v in result.items() if k not in ("athletes", "biomechanics")}
    out["schema"] = ResultSummary.model_fields["schema_"].default
    people = []
    for a in result.get("athletes") or []:
        frames = a.get("frames") or []
        seen = [int(f["index"]) for f in frames if f.get("bbox_px") is not None]
        people.append({**{k: v for k, v in a.items() if k != "frames"}, "frame_count": len(frames),
                       "frames_seen": len(seen), "frames_posed": sum(1 for f in frames if f.get("keypoints")),
                       "first_seen_frame": min(seen) if seen else None, "last_seen_frame": max(seen) if seen else None})
    out["athletes"] = people
    if "biomechanics" in result:
        bio = result["biomechanics"]
        out["biomechanics"] = None if bio is None else {k: v for k, v in bio.items() if k != "series"}
    out["frame_paging"] = paging(result)
    return out


def keypoint_names(result: dict) -> list[str]:
    """The landmark order of the flat arrays: BlazePose's, then any other name the result uses."""
    names = list(LANDMARK_NAMES)
    known = set(names)
    for f in _athletes(result)[0].get("frames") or []:
        for kp in (f.get("keypoints"), f.get("keypoints_3d")):
            for n in kp or ():
                if n not in known:
                    known.add(n)
                    names.append(n)
    return names


def _flat(kp: Optional[dict], names: list[str]) -> Optional[list[Optional[float]]]:
    if kp is None:
        return None
    out: list[Optional[float]] = []
    for n in names:
        row = kp.get(n)
        out.extend((list(row) + [None] * DIMS)[:DIMS] if row is not None else [None] * DIMS)
    return out


def _named(flat: Optional[list], names: list[str]) -> Optional[dict[str, list[float]]]:
    if flat is None:
        return None
    rows = (flat[i * DIMS:(i + 1) * DIMS] for i in range(len(names)))
    return {n: r for n, r in zip(names, rows) if any(v is not None for v in r)}


def _keys(dicts) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        for k in d or ():
            seen.setdefault(k, None)
    return list(seen)


def frame_columns(result: dict, start: int, count: int, names: Optional[list[str]] = None) -> dict:
    """The frames of the athlete (and everybody else) with index in [start, start + count), as a
    ResultFrames dict. `names`: the landmark order (keypoint_names(result) when not given)."""
    names = names if names is not None else keypoint_names(result)
    target, others = _athletes(result)
    frames = target.get("frames") or []
    lo, hi = start, start + count
    pos = [p for p, f in enumerate(frames) if lo <= int(f["index"]) < hi]
    rows = [frames[p] for p in pos]
    angle_names = _keys(f.get("angles_deg") for f in frames)
    fault_names = _keys(f.get("faults") for f in frames)
    a3 = [f.get("angles_3d_deg") for f in frames]
    a3_names = _keys(a3)
    has_3d = any(a is not None for a in a3)
    bio = result.get("biomechanics")
    series = None
    if bio and bio.get("series"):
        series = {k: ({n: [col[p] for p in pos] for n, col in v.items()} if isinstance(v, dict) else [v[p] for p in pos])
                  for k, v in bio["series"].items()}
    return {
        "schema": ResultFrames.model_fields["schema_"].default, "id": result.get("id", ""),
        "revision": result.get("revision", 0), "start": start, "count": count, "end": paging(result)["end"],
        "track_id": target.get("track_id"), "keypoint_names": names,
        "index": [int(f["index"]) for f in rows], "t_s": [f.get("t_s", 0.0) for f in rows],
        "bbox_px": [f.get("bbox_px") for f in rows],
        "keypoints": [_flat(f.get("keypoints"), names) for f in rows],
        "keypoints_3d": [_flat(f.get("keypoints_3d"), names) for f in rows],
        "angles_deg": {n: [(f.get("angles_deg") or {}).get(n) for f in rows] for n in angle_names},
        "angles_3d_deg": {n: [(f.get("angles_3d_deg") or {}).get(n) for f in rows] for n in a3_names} if has_3d else None,
        "angles_3d_present": [f.get("angles_3d_deg") is not None for f in rows] if has_3d else None,
        "judged": [bool(f.get("faults")) for f in rows],
        "faults": {n: [(f.get("faults") or {}).get(n) for f in rows] for n in fault_names},
        "activity": [f.get("activity") for f in rows], "view": [f.get("view") for f in rows],
        "phase": [f.get("phase") for f in rows],
        "biomechanics": series,
        "others": [o for o in ({"track_id": a.get("track_id", -1),
                                **{c: [f.get(c) for f in a.get("frames") or [] if lo <= int(f["index"]) < hi]
                                   for c in ("index", "t_s", "bbox_px")}} for a in others) if o["index"]],
    }


def chunks(result: dict) -> list[ResultFrames]:
    """The stored chunks of a result: chunk k covers frame indices [k*CHUNK_FRAMES, (k+1)*CHUNK_FRAMES)."""
    names = keypoint_names(result)
    return [ResultFrames.model_validate(frame_columns(result, k * CHUNK_FRAMES, CHUNK_FRAMES, names))
            for k in range(paging(result)["chunks"])]


def chunk_numbers(start: int, count: int) -> range:
    """The chunks that hold frame indices [start, start + count)."""
    return range(start // CHUNK_FRAMES, (start + count - 1) // CHUNK_FRAMES + 1) if count > 0 else range(0)


def _cut(col: Any, keep: list[int]) -> Any:
    if isinstance(col, dict):
        return {k: _cut(v, keep) for k, v in col.items()}
    return [col[p] for p in keep]


def _join(parts: list[Any], sizes: list[int]) -> Any:
    """Concatenate columns (lists, or dicts of lists: a name one part lacks is null there)."""
    if all(p is None for p in parts):
        return None
    if any(isinstance(p, dict) for p in parts):
        names = _keys(p for p in parts if p)
        return {n: _join([(p or {}).get(n, [None] * s) for p, s in zip(parts, sizes)], sizes) for n in names}
    out: list = []
    for p, s in zip(parts, sizes):
        out.extend(p if p is not None else [None] * s)
    return out


PER_FRAME = ("index", "t_s", "bbox_px", "keypoints", "keypoints_3d", "angles_deg", "angles_3d_deg",
             "angles_3d_present", "judged", "faults", "activity", "view", "phase", "biomechanics")


def join_pages(pages: list[dict], start: int, count: int) -> dict:
    """Frames [start, start + count) out of consecutive pages of one result (the stored chunks)."""
    lo, hi = start, start + count
    cut = []
    for p in pages:
        keep = [i for i, ix in enumerate(p["index"]) if lo <= ix < hi]
        cut.append(({c: (_cut(p.get(c), keep) if p.get(c) is not None else None) for c in PER_FRAME}, len(keep), p))
    sizes = [n for _, n, _ in cut]
    first = pages[0]
    out = {**{k: first[k] for k in ("schema", "id", "revision", "end", "track_id", "keypoint_names")},
           "start": start, "count": count}
    for c in PER_FRAME:
        out[c] = _join([part[c] for part, _, _ in cut], sizes)
        if out[c] is None and c not in ("angles_3d_deg", "angles_3d_present", "biomechanics"):
            out[c] = {} if c in ("angles_deg", "faults") else []
    others: dict[int, dict] = {}
    for _, _, p in cut:
        for o in p.get("others") or []:
            keep = [i for i, ix in enumerate(o["index"]) if lo <= ix < hi]
            if not keep:
                continue
            acc = others.setdefault(o["track_id"], {"track_id": o["track_id"], "index": [], "t_s": [], "bbox_px": []})
            for c in ("index", "t_s", "bbox_px"):
                acc[c].extend(o[c][i] for i in keep)
    out["others"] = list(others.values())
    return out


def frame_rows(page: dict) -> list[dict]:
    """The athlete's frames of a page as result.json has them (athletes[0].frames entries)."""
    names = page["keypoint_names"]
    a3, present = page.get("angles_3d_deg"), page.get("angles_3d_present")
    rows = []
    for i, ix in enumerate(page["index"]):
        row = {"index": ix, "t_s": page["t_s"][i], "bbox_px": page["bbox_px"][i],
               "keypoints": _named(page["keypoints"][i], names), "keypoints_3d": _named(page["keypoints_3d"][i], names),
               "angles_deg": {n: col[i] for n, col in page["angles_deg"].items()},
               "angles_3d_deg": {n: col[i] for n, col in a3.items()} if a3 is not None and present and present[i] else None,
               "faults": {n: col[i] for n, col in page["faults"].items()} if page["judged"][i] else {},
               "activity": page["activity"][i], "view": page["view"][i], "phase": page["phase"][i]}
        rows.append(row)
    return rows


# -- reading them back (the gateway): from the stored chunks, else paged out of result.json ---------
def _stored_summary(store, aid: str) -> Optional[dict]:
    """The stored summary when it belongs to the stored result (the revision suggest last finished)."""
    from shared.documents import MalformedDocument, StageStatus
    from shared.store import ObjectNotFound, keys

    try:
        summary = store.get_json(keys.result_summary(aid))
    except ObjectNotFound:
        return None   # a result stored before the pages existed
    try:
        done = StageStatus.read(store, keys.status(aid, "suggest")).result_revision
    except (ObjectNotFound, MalformedDocument):
        done = None
    return summary if done is None or done == summary.get("revision", 0) else None


def read_summary(store, aid: str) -> dict:
    """The result of `aid` without its per-frame arrays (ResultSummary)."""
    from shared.store import keys

    summary = _stored_summary(store, aid)
    return summary if summary is not None else summarize(store.get_json(keys.result(aid)))


def read_frames(store, aid: str, start: int, count: int) -> dict:
    """Frames [start, start + count) of `aid`'s result as columns (ResultFrames): from the chunks
    that hold them, or out of result.json for a result stored before chunks existed (or while its
    chunks and summary do not agree on the revision)."""
    from shared.store import ObjectNotFound, keys

    summary = _stored_summary(store, aid)
    stored = summary["frame_paging"]["chunks"] if summary is not None else 0
    if stored:
        numbers = [k for k in chunk_numbers(start, count) if k < stored] or [stored - 1]
        try:
            pages = [store.get_json(keys.result_frames(aid, k)) for k in numbers]
        except ObjectNotFound:
            pages = []
        if pages and all(p.get("revision", 0) == summary.get("revision", 0) for p in pages):
            return join_pages(pages, start, count)
    return frame_columns(store.get_json(keys.result(aid)), start, count)
