"""The web page athletes and coaches use, and the spreadsheet download behind it.

Serves
    GET /                                  the single-page app (static/index.html)
    GET /static/{name}                     its script and style sheet (no build step, no CDN)
    GET /v1/analyses/{id}/keypoints.csv    one row per frame of the target athlete: index, t_s, bbox,
                                           x/y/confidence per landmark, each angle, each fault probability
Everything the page needs comes from this gateway, so it works with no internet connection.
"""
from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Iterable, Iterator, Optional

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, StreamingResponse

from services.gateway.deps import Deps, check_id, done_status, get_deps
from services.gateway.openapi import V1, CSVResponse, errors
from shared.skeleton import LANDMARK_NAMES
from shared.store import ObjectNotFound, keys

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon", ".json": "application/json"}
_NO_CACHE = {"Cache-Control": "no-cache"}   # revalidate (ETag) so a new release is picked up at once


def _num(v) -> str:
    """A spreadsheet-friendly cell: empty when missing or not finite, no exponent for ordinary values."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return ""
    return f"{round(f, 4):.4f}".rstrip("0").rstrip(".") if f != int(f) else str(int(f))


def _target_athlete(result: dict, track_id: Optional[int]) -> Optional[dict]:
    athletes = result.get("athletes") or []
    if track_id is not None:
        return next((a for a in athletes if a.get("track_id") == track_id), None)
    return next((a for a in athletes if a.get("is_target")), athletes[0] if athletes else None)


def _ordered_keys(frames: Iterable[dict], field: str, preferred: Iterable[str] = ()) -> list[str]:
    seen: dict[str, None] = {k: None for k in preferred}
    found: set[str] = set()
    for fr in frames:
        for k in (fr.get(field) or {}):
            found.add(k)
            seen.setdefault(k, None)
    return [k for k in seen if k in found]


def keypoints_csv_rows(result: dict, track_id: Optional[int] = None) -> Iterator[list[str]]:
    """The CSV as rows of cells (header first). Pure: takes the result document."""
    athlete = _target_athlete(result, track_id)
    frames = sorted((athlete or {}).get("frames") or [], key=lambda f: f["index"])
    fault_types = [f["type"] for f in result.get("faults", [])]
    landmarks = _ordered_keys(frames, "keypoints", LANDMARK_NAMES)
    angles = _ordered_keys(frames, "angles_deg")
    angles_3d = _ordered_keys(frames, "angles_3d_deg", angles)   # from the 3D skeleton, when the result has them
    probs = _ordered_keys(frames, "faults", dict.fromkeys(fault_types))
    tid = (athlete or {}).get("track_id", "")
    # which fault segments cover each frame (the verdict after smoothing, not the raw probability)
    segments: dict[int, list[str]] = {}
    judged = athlete is not None and (athlete.get("is_target") or len(result.get("athletes", [])) == 1)
    for f in result.get("faults", []) if judged else []:   # faults are judged on the target athlete
        for i in range(int(f["start_frame"]), int(f["end_frame"]) + 1):
            lst = segments.setdefault(i, [])
            if f["type"] not in lst:
                lst.append(f["type"])

    header = ["frame", "t_s", "track_id", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]
    for name in landmarks:
        header += [f"{name}_x", f"{name}_y", f"{name}_confidence"]
    header += [f"angle_{a}_deg" for a in angles]
    header += [f"angle3d_{a}_deg" for a in angles_3d]
    header += [f"p_{p}" for p in probs]
    header += ["activity", "faults"]   # performing / not_performing (#16), then the segments covering the frame
    yield header

    for fr in frames:
        bbox = fr.get("bbox_px") or [None] * 4
        row = [str(fr["index"]), _num(fr.get("t_s")), str(tid)] + [_num(v) for v in list(bbox)[:4]]
        kps = fr.get("keypoints") or {}
        for name in landmarks:
            p = kps.get(name) or [None, None, None]
            row += [_num(p[0]), _num(p[1]), _num(p[2] if len(p) > 2 else None)]
        ang = fr.get("angles_deg") or {}
        row += [_num(ang.get(a)) for a in angles]
        ang3 = fr.get("angles_3d_deg") or {}
        row += [_num(ang3.get(a)) for a in angles_3d]
        fp = fr.get("faults") or {}
        row += [_num(fp.get(p)) for p in probs]
        row.append(fr.get("activity") or "")
        row.append(";".join(segments.get(int(fr["index"]), [])))
        yield row


def _csv_stream(rows: Iterable[list[str]], chunk_rows: int = 200) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    n = 0
    for row in rows:
        writer.writerow(row)
        n += 1
        if n % chunk_rows == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


router = APIRouter()


@router.get("/", include_in_schema=False)
def index():
    return FileResponse(STATIC_DIR / "index.html", media_type=_TYPES[".html"], headers=_NO_CACHE)

@router.get("/static/{name}", include_in_schema=False)
def static(name: str):
    path = STATIC_DIR / name
    if not _NAME_RE.match(name) or not path.is_file() or path.suffix not in _TYPES:
        raise HTTPException(404, f"no file {name[:80]}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_NO_CACHE)

@router.get("/v1/analyses/{aid}/keypoints.csv", tags=["results"], response_class=CSVResponse,
            responses=errors(*V1, 404, 409, 422, json_route=False),
            summary="Keypoints, joint angles and fault probabilities per frame, as CSV")
def keypoints_csv(aid: str, track_id: Optional[int] = None, deps: Deps = Depends(get_deps)):
    """One row per frame of the target athlete (or `track_id`): frame index, time, bounding box,
    x/y/confidence of every landmark (pixels of the original video), every joint angle (degrees;
    `angle3d_*` from the 3D skeleton when the result has them) and every fault probability; the last column lists the fault segments covering the frame.
    Missing values are empty cells."""
    store = deps.store
    done_status(store, check_id(aid))
    try:
        result = store.get_json(keys.result(aid))
    except ObjectNotFound:
        raise HTTPException(404, f"analysis {aid} has no result document") from None
    if track_id is not None and _target_athlete(result, track_id) is None:
        raise HTTPException(404, f"analysis {aid} has no athlete with track_id {track_id}")
    return StreamingResponse(
        _csv_stream(keypoints_csv_rows(result, track_id)), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="coach-{aid}-keypoints.csv"'})
