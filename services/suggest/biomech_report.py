"""Biomechanics for the result document: the `biomechanics` section, per-frame 3D angles, plots, CSV.

services/suggest/biomech.py computes (arrays in, arrays out); this module turns its output into
the typed result models (shared/result.py), PNG plots (matplotlib, Agg) and a spreadsheet-
friendly CSV (one row per frame), and stores plots and CSV beside the result:

    analyses/<id>/biomech/angles.png   3D joint angles and angular velocities over time
    analyses/<id>/biomech/com.png      centre-of-mass height and speed, flight phases shaded
    analyses/<id>/biomech/frames.csv   one row per frame (columns: docs/biomechanics.md)

Used by the suggest worker (attach_biomechanics) and by `coach biomech` on a result.json.

Computed ahead (issue 17): they need the poses only, so suggest computes them when the last clip
is posed (`Ahead.start`, in a thread of its own) and stores them under the fingerprint of exactly those inputs

    analyses/<id>/biomech-ahead/<fingerprint>/{angles.png, com.png, frames.csv, section.json}

(section.json written last: stored means complete). At the final verdict attach_biomechanics
reuses them when the fingerprint of its own poses matches, and computes them as before when it
does not (an athlete switch, poses again, anything missing or unreadable).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from pydantic import BaseModel, ValidationError

from services.suggest import biomech as bm
from shared.documents import AnalysisRequest, MalformedDocument, PoseFrame
from shared.result import (AngleSummary, AnalysisResult, Artifact, Biomechanics, BiomechScale, BiomechSeries,
                           JumpResult)
from shared.skeleton import LANDMARK_NAMES, NUM_LANDMARKS
from shared.store import ObjectNotFound, StoreUnavailable, keys

log = logging.getLogger("biomech")

PLOTTED_ANGLES = ("knee_l", "knee_r", "hip_l", "hip_r", "elbow_l", "elbow_r", "trunk")
ARTIFACTS = {   # artifact name -> (file name under analyses/<id>/biomech/, content type)
    "biomech_angles_plot": ("angles.png", "image/png"),
    "biomech_com_plot": ("com.png", "image/png"),
    "biomech_csv": ("frames.csv", "text/csv"),
}
BIOMECH_VERSION = 1   # bump when what build() makes changes: biomechanics computed ahead by older code stop matching
AHEAD_SECTION = "section.json"


# ---------------------------------------------------------------- inputs

def arrays_from_frames(frames: Iterable[dict | PoseFrame]) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a clip-poses document (rows in LANDMARK_NAMES order) or of a result document
    (name -> row) -> keypoints [T,33,3] (x_px, y_px, confidence) and world [T,33,3]; NaN where absent."""
    frames = _plain(frames)
    k = np.full((len(frames), NUM_LANDMARKS, 3), np.nan)
    w = np.full((len(frames), NUM_LANDMARKS, 3), np.nan)
    for t, f in enumerate(frames):
        for arr, rows in ((k, f.get("keypoints")), (w, f.get("keypoints_3d"))):
            if not rows:
                continue
            if isinstance(rows, dict):
                rows = [rows.get(n) for n in LANDMARK_NAMES]
            for j, r in enumerate(rows):
                if r is not None:
                    arr[t, j, :len(r)] = r[:3]
    return k, w


# ---------------------------------------------------------------- result models

def _f(v, digits: int = 3) -> Optional[float]:
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


def _col(a: np.ndarray, digits: int = 3) -> list[Optional[float]]:
    return [_f(v, digits) for v in a]


def _vec(a: np.ndarray, digits: int = 2) -> list[Optional[list[float]]]:
    return [[round(float(x), digits) for x in r] if np.all(np.isfinite(r)) else None for r in a]


def angles_3d_rows(bio: bm.Biomech) -> list[Optional[dict[str, Optional[float]]]]:
    """Per-frame `angles_3d_deg` (raw, like angles_deg): None on frames without a 3D pose."""
    out = []
    for row in bio.angles_3d:
        out.append(None if not np.isfinite(row).any() else {n: _f(v, 2) for n, v in zip(bm.ANGLE_NAMES, row)})
    return out


def filter_description(fps: float) -> str:
    w = bm.filter_window(fps)
    return (f"Savitzky-Golay, order 2, window {w} frames ({w / fps:.2f} s); gaps up to "
            f"{int(round(0.2 * fps))} frames bridged linearly, longer gaps split the series")


def section(bio: bm.Biomech, athlete_height_m: float | None = None) -> Biomechanics:
    """The result document's `biomechanics` section."""
    speed_px = bio.com_speed_px_s
    speed_m = bio.to_m_s(speed_px)
    jspeed_px = bio.joint_speed_px_s
    jspeed_m = bio.to_m_s(jspeed_px)
    angles = {}
    for i, name in enumerate(bm.ANGLE_NAMES):
        a, v = bio.angles_3d_f[:, i], bio.angular_velocity[:, i]
        ok = np.isfinite(a)
        angles[name] = AngleSummary(
            min_deg=_f(a[ok].min(), 1) if ok.any() else None, max_deg=_f(a[ok].max(), 1) if ok.any() else None,
            range_deg=_f(a[ok].max() - a[ok].min(), 1) if ok.any() else None,
            peak_velocity_deg_s=_f(np.nanmax(np.abs(v)), 1) if np.isfinite(v).any() else None)
    scale_ok = bio.scale_source != "none"
    return Biomechanics(
        fps=bio.fps, filter=filter_description(bio.fps), com_model=bm.COM_MODEL,
        scale=BiomechScale(px_per_m=_f(np.nanmedian(bio.px_per_m), 2) if scale_ok else None, source=bio.scale_source,
                           athlete_height_m=athlete_height_m,
                           skeleton_stature_m=None if bio.stature_m is None else _f(bio.stature_m, 3)),
        angles=angles,
        peak_com_speed_px_s=_f(np.nanmax(speed_px), 1) if np.isfinite(speed_px).any() else None,
        peak_com_speed_m_s=_f(np.nanmax(speed_m), 2) if scale_ok and np.isfinite(speed_m).any() else None,
        jumps=[JumpResult(**vars(j)) for j in bio.jumps],
        bone_length_cv={k: None if v is None else round(v, 4) for k, v in bio.bone_cv.items()},
        series=BiomechSeries(
            com_px=_vec(bio.com_px), com_velocity_px_s=_vec(bio.com_velocity_px_s, 1),
            com_speed_m_s=_col(speed_m) if scale_ok else [None] * len(speed_m),
            px_per_m=_col(bio.px_per_m, 2) if scale_ok else [None] * len(speed_m),
            angles_3d_deg={n: _col(bio.angles_3d_f[:, i], 1) for i, n in enumerate(bm.ANGLE_NAMES)},
            angular_velocity_deg_s={n: _col(bio.angular_velocity[:, i], 1) for i, n in enumerate(bm.ANGLE_NAMES)},
            joint_speed_px_s={n: _col(jspeed_px[:, i], 1) for i, n in enumerate(bm.SPEED_JOINTS)},
            joint_speed_m_s={n: (_col(jspeed_m[:, i]) if scale_ok else [None] * len(speed_m))
                             for i, n in enumerate(bm.SPEED_JOINTS)},
            airborne=[bool(x) for x in bio.airborne]),
    )


# ---------------------------------------------------------------- CSV

def csv_columns() -> list[str]:
    cols = ["frame", "t_s", "pose", "com_x_px", "com_y_px", "com_vx_px_s", "com_vy_px_s", "com_speed_px_s",
            "com_speed_m_s", "px_per_m", "airborne"]
    for n in bm.ANGLE_NAMES:
        cols += [f"{n}_2d_deg", f"{n}_3d_deg", f"{n}_3d_filtered_deg", f"{n}_3d_velocity_deg_s"]
    for n in bm.SPEED_JOINTS:
        cols += [f"{n}_x_px", f"{n}_y_px", f"{n}_speed_px_s", f"{n}_speed_m_s"]
    return cols


def to_csv(bio: bm.Biomech, keypoints_px: np.ndarray, frame_index: list[int], t_s: list[float]) -> str:
    """One row per frame, a header row, '.' decimals, empty cells where unknown (opens as-is in
    spreadsheets and pandas)."""
    from shared.skeleton import LANDMARK_INDEX as LI

    def num(v, digits=3):
        v = float(v)
        return f"{v:.{digits}f}" if math.isfinite(v) else ""

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(csv_columns())
    sp, sm = bio.com_speed_px_s, bio.to_m_s(bio.com_speed_px_s)
    jsp, jsm = bio.joint_speed_px_s, bio.to_m_s(bio.joint_speed_px_s)
    scale_ok = bio.scale_source != "none"
    for t in range(len(frame_index)):
        row = [frame_index[t], num(t_s[t], 4), int(np.isfinite(keypoints_px[t, :, 0]).any()),
               num(bio.com_px[t, 0], 2), num(bio.com_px[t, 1], 2), num(bio.com_velocity_px_s[t, 0], 1),
               num(bio.com_velocity_px_s[t, 1], 1), num(sp[t], 1), num(sm[t]) if scale_ok else "",
               num(bio.px_per_m[t], 2) if scale_ok else "", int(bio.airborne[t])]
        for i in range(len(bm.ANGLE_NAMES)):
            row += [num(bio.angles_2d[t, i], 2), num(bio.angles_3d[t, i], 2), num(bio.angles_3d_f[t, i], 2),
                    num(bio.angular_velocity[t, i], 1)]
        for i, n in enumerate(bm.SPEED_JOINTS):
            row += [num(keypoints_px[t, LI[n], 0], 2), num(keypoints_px[t, LI[n], 1], 2), num(jsp[t, i], 1),
                    num(jsm[t, i]) if scale_ok else ""]
        wr.writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------- plots

def _figure(rows: int):
    """A matplotlib Figure without pyplot (no global state: safe in worker threads; Agg canvas)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3 * rows), dpi=100)
    return fig, fig.subplots(rows, 1, sharex=True)


def warm_up() -> None:
    """Import matplotlib and draw a tiny PNG (fonts, Agg): ~0.6 CPU-s once per process, spent at the
    service's start instead of in its first analysis's biomechanics."""
    fig, _ = _figure(1)
    _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _shade(ax, bio: bm.Biomech) -> None:
    for j in bio.jumps:
        ax.axvspan(j.takeoff_s, j.landing_s, color="orange", alpha=0.25, lw=0)


def plot_angles(bio: bm.Biomech, t_s: np.ndarray) -> bytes:
    fig, (a1, a2) = _figure(2)
    for name in PLOTTED_ANGLES:
        i = bm.ANGLE_NAMES.index(name)
        style = "--" if name.endswith("_r") else "-"
        a1.plot(t_s, bio.angles_3d_f[:, i], style, lw=1.2, label=name)
        a2.plot(t_s, bio.angular_velocity[:, i], style, lw=1.0, label=name)
    a1.set_ylabel("3D joint angle (deg)\n0 = straight")
    a2.set_ylabel("angular velocity (deg/s)")
    a2.set_xlabel("time (s)")
    a1.legend(ncol=4, fontsize=8, loc="upper right")
    a1.set_title("Joint angles from BlazePose world landmarks (filtered)")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        _shade(ax, bio)
    return _png(fig)


def plot_com(bio: bm.Biomech, t_s: np.ndarray) -> bytes:
    fig, (a1, a2) = _figure(2)
    metric = bio.scale_source != "none"
    y = bio.com_px[:, 1]
    ref = np.nanmedian(y) if np.isfinite(y).any() else 0.0
    height = (ref - y) / bio.px_per_m if metric else ref - y          # up = +
    a1.plot(t_s, height, lw=1.2, color="C0")
    a1.set_ylabel("COM up in the image vs median\n(" + ("m at the athlete" if metric else "px") + ")")
    a1.set_title("Centre of mass (segment model, Winter/Dempster)" + ("; jumps shaded" if bio.jumps else ""))
    speed = bio.to_m_s(bio.com_speed_px_s) if metric else bio.com_speed_px_s
    a2.plot(t_s, speed, lw=1.2, color="C3")
    a2.set_ylabel("COM speed (" + ("m/s" if metric else "px/s") + ")")
    a2.set_xlabel("time (s)")
    for j in bio.jumps:
        a1.annotate(f"{j.flight_time_s:.2f} s, {j.height_m:.2f} m" if j.height_m is not None else f"{j.flight_time_s:.2f} s",
                    (0.5 * (j.takeoff_s + j.landing_s), np.nanmax(height)), ha="center", fontsize=8)
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        _shade(ax, bio)
    return _png(fig)


# ---------------------------------------------------------------- all together

def _plain(frames: Iterable[dict | PoseFrame]) -> list[dict]:
    return [f.model_dump() if isinstance(f, PoseFrame) else f for f in frames]


def build(frames: list[dict | PoseFrame], fps: float, athlete_height_m: float | None = None):
    """frames (clip-poses or result frames) -> (Biomech, section, angles_3d rows, {file name: (bytes, type)})."""
    frames = _plain(frames)
    k, w = arrays_from_frames(frames)
    with warnings.catch_warnings():   # all-NaN slices (frames without a pose) are expected: they give null
        warnings.simplefilter("ignore", RuntimeWarning)
        bio = bm.analyse(k, w, fps, athlete_height_m=athlete_height_m)
    idx = [int(f["index"]) for f in frames]
    ts = np.array([float(f.get("t_s", i / fps)) for i, f in zip(idx, frames)])
    files = {
        "angles.png": (plot_angles(bio, ts), "image/png"),
        "com.png": (plot_com(bio, ts), "image/png"),
        "frames.csv": (to_csv(bio, k, idx, ts.tolist()).encode(), "text/csv"),
    }
    return bio, section(bio, athlete_height_m), angles_3d_rows(bio), files


def athlete_height(store, aid: str) -> float | None:
    """The optional `athlete_height_m` of the analysis's request.json (sessions accept it)."""
    try:
        height = AnalysisRequest.read(store, keys.request(aid)).athlete_height_m
    except ObjectNotFound:
        return None
    return float(height) if height else None


def fingerprint(frames: list[PoseFrame], fps: float, athlete_height_m: float | None) -> str:
    """sha1 of exactly what build() reads: each frame's index, t_s, keypoints and 3D keypoints, the
    fps, the athlete's height and BIOMECH_VERSION. Equal fingerprints give equal biomechanics."""
    h = hashlib.sha1(f"biomech|{BIOMECH_VERSION}|{float(fps)!r}|{athlete_height_m!r}|".encode())
    for f in frames:
        h.update(json.dumps([f.index, f.t_s, f.keypoints, f.keypoints_3d], separators=(",", ":")).encode())
    return h.hexdigest()


class AheadSection(BaseModel):
    """section.json of biomechanics computed ahead: what the result takes besides the files."""
    fingerprint: str
    biomechanics: Biomechanics
    angles_3d_deg: list[Optional[dict[str, Optional[float]]]]


def store_ahead(store, aid: str, fp: str, built) -> None:
    """Store what build() returned under the fingerprint: files first, section.json last."""
    _, sec, rows, files = built
    for name, (data, ctype) in files.items():
        store.put_bytes(keys.biomech_ahead(aid, fp, name), data, ctype)
    store.put_json(keys.biomech_ahead(aid, fp, AHEAD_SECTION),
                   AheadSection(fingerprint=fp, biomechanics=sec, angles_3d_deg=rows))


def load_ahead(store, aid: str, fp: str):
    """(section, angles_3d rows, {file name: (bytes, type)}) computed ahead for these poses, or None
    when nothing complete is stored for this fingerprint (or it was swept meanwhile)."""
    try:
        doc = AheadSection.model_validate(store.get_json(keys.biomech_ahead(aid, fp, AHEAD_SECTION)))
        if doc.fingerprint != fp:
            return None
        files = {name: (store.get_bytes(keys.biomech_ahead(aid, fp, name)), ctype)
                 for name, ctype in ARTIFACTS.values()}
    except (ObjectNotFound, MalformedDocument, ValidationError, ValueError):
        return None
    return doc.biomechanics, doc.angles_3d_deg, files


class Ahead:
    """Biomechanics computed once the last clip is posed, and the final verdict's wait for them.

    The store is the truth (a stored section.json means done, whoever computed it); within a
    process the final verdict waits for a computation of the same fingerprint under way instead
    of starting a second one. `start` computes in a thread of its own, so that the loop that
    started it goes on (pre-rendering the last clip's segment) while the plots are drawn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="biomech-ahead")

    def start(self, store, aid: str, frames: list[PoseFrame], fps: float,
              done: Callable[[str, float], None] = lambda how, seconds: None) -> str:
        """Compute and store them in the background unless stored or under way; `done(what, seconds)`
        is called when finished ("computed", or "failed: ..."; errors are never raised).
        Returns "started", "stored already" or "under way"."""
        height = athlete_height(store, aid)
        fp = fingerprint(frames, fps, height)
        key = keys.biomech_ahead(aid, fp, AHEAD_SECTION)
        if store.exists(key):
            return "stored already"
        with self._lock:
            if key in self._inflight:
                return "under way"
            event = self._inflight[key] = threading.Event()   # registered now: the final verdict waits for it

        def run() -> None:
            t = time.perf_counter()
            try:
                store_ahead(store, aid, fp, build(frames, fps, height))
                how = "computed"
            except Exception as exc:  # noqa: BLE001 — the final verdict computes them itself
                how = f"failed: {type(exc).__name__}: {exc}"[:300]
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
                event.set()
            done(how, time.perf_counter() - t)

        try:
            self._pool.submit(run)
        except RuntimeError:   # shutting down
            with self._lock:
                self._inflight.pop(key, None)
            event.set()
            raise
        return "started"

    def compute(self, store, aid: str, frames: list[PoseFrame], fps: float) -> str:
        """start() and wait: "computed", "failed: ...", "stored already" or "under way"."""
        got: list[str] = []
        how = self.start(store, aid, frames, fps, done=lambda h, s: got.append(h))
        if how == "started":
            self.settle()   # the callback runs in the same task, after the event is set
            return got[0]
        return how

    def settle(self) -> None:
        """Wait for every computation started so far (the pool runs them one at a time, in order)."""
        self._pool.submit(lambda: None).result()

    def wait(self, aid: str, fp: str, timeout_s: float = 120.0) -> bool:
        """Wait for a computation of this fingerprint under way here; True if one was waited for."""
        with self._lock:
            busy = self._inflight.get(keys.biomech_ahead(aid, fp, AHEAD_SECTION))
        if busy is None:
            return False
        busy.wait(timeout=timeout_s)
        return True


def attach_biomechanics(store, aid: str, result: AnalysisResult, frames: list[PoseFrame], fps: float,
                        ahead: Ahead | None = None) -> str:
    """Fill result.biomechanics, each frame's angles_3d_deg and the plot/CSV artifacts (stored now).

    With `ahead`, biomechanics computed ahead from the same poses (same fingerprint) are reused,
    after waiting for a computation of them under way in this process; otherwise they are computed
    here. An optional `athlete_height_m` in the analysis's request.json (sessions accept it) sets
    the metric scale. Failures other than the store being down are logged and leave the result
    without biomechanics: a plot must never fail an analysis. Returns "reused", "computed" or "failed"."""
    try:
        height = athlete_height(store, aid)
        got = None
        if ahead is not None:
            fp = fingerprint(frames, fps, height)
            ahead.wait(aid, fp)
            got = load_ahead(store, aid, fp)
        how = "reused" if got is not None else "computed"
        if got is None:
            _, sec, rows, files = build(frames, fps, height)
        else:
            sec, rows, files = got
        athlete = result.athletes[0]
        for fr, row in zip(athlete.frames, rows):
            fr.angles_3d_deg = row
        result.biomechanics = sec
        for art, (name, ctype) in ARTIFACTS.items():
            key = keys.biomech(aid, name)
            store.put_bytes(key, files[name][0], ctype)
            result.artifacts[art] = Artifact(key=key, content_type=ctype)
        return how
    except StoreUnavailable:
        raise
    except Exception:   # noqa: BLE001 - see docstring
        log.exception("biomechanics failed; result stored without it", extra={"analysis_id": aid})
        return "failed"


def write_local(result_doc: dict, out_dir: Path, athlete_height_m: float | None = None) -> dict:
    """`coach biomech`: biomechanics of a result.json into out_dir (biomechanics.json, plots, CSV)."""
    frames = result_doc["athletes"][0]["frames"] if result_doc.get("athletes") else []
    fps = float(result_doc["video"]["fps"])
    bio, sec, _, files = build(frames, fps, athlete_height_m)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in files.items():
        (out_dir / name).write_bytes(data)
    (out_dir / "biomechanics.json").write_text(sec.model_dump_json(indent=1))
    return {"frames": len(frames), "fps": fps, "scale": sec.scale.model_dump(), "jumps": [j.model_dump() for j in sec.jumps],
            "bone_length_cv": sec.bone_length_cv, "peak_com_speed_m_s": sec.peak_com_speed_m_s,
            "angles": {k: v.model_dump() for k, v in sec.angles.items()},
            "files": sorted(str(out_dir / n) for n in list(files) + ["biomechanics.json"])}
