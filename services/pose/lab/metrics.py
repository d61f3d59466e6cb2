"""Pose evaluation against ground truth: MPJPE, PCKh@0.5, PCK@0.2 (and PCK@150mm in 3D), error heatmap.

Pure numpy for the metrics (arrays in, numbers out); file loading and the heatmap figure are
at the bottom. `coach eval --pred FILE --gt FILE --json [--heatmap PNG]` (services/pose/lab/cli.py).

Missing data (following the 3D athlete tracking evaluation, AWS ML blog / Intel 3DAT: ground-
truth nulls go into a mask B and are left out of every sum and every denominator):
  * ground truth missing (a null joint, a null frame): excluded from all metrics, counted as
    `gt_missing`;
  * ground truth labelled but not predicted (null / NaN joint, confidence below the cut, or the
    frame absent from the prediction): excluded from MPJPE (a distance to a made-up point would
    mean nothing) and counted as `pred_missing`; counted as *incorrect* in every PCK (the
    denominator is the labelled joints, as in the source's b-vector), so a model cannot raise
    its PCK by predicting less;
  * joints only one side names are not evaluated and are listed (`joints_gt_only`, ...).

Definitions (per frame t, joint j; e = ||P - G||, Euclidean, in the ground truth's units):
  MPJPE      mean of e over evaluated (labelled and predicted) entries; per joint: mean over frames
  PCK@a      correct if e < a * ref_t; per joint: correct / labelled; `mean`: the mean over joints
             of the per-joint values (the source's mean(c/b)); `overall`: all correct / all labelled
  PCKh@0.5   ref_t = head size: given `head_sizes`, else 0.6 x diagonal of a given head box (MPII),
             else, for BlazePose / COCO names, ||mid(ears) - mid(shoulders)|| of the ground truth
             (ear canal to the base of the neck: ~0.11 x stature, ~19 cm for a 1.75 m adult, close to
             MPII's head segment); frames without any are left out of PCKh (`no_head_size`)
  PCK@0.2    ref_t = max(h, w) of the person box (AI Coach, Wang et al. 2019): the given box, else
             the tight box around the labelled ground-truth joints of that frame (3D: the largest
             extent over the three axes)
  PCK@150mm  3D only: ref_t * a = 0.150 in metres
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from shared.skeleton import LANDMARK_NAMES


class PoseFileError(ValueError):
    pass


@dataclass
class PoseSet:
    names: list[str]
    frames: np.ndarray                       # [T] int frame indices
    coords: np.ndarray                       # [T, J, D] float, NaN = missing
    boxes: Optional[np.ndarray] = None       # [T, 4] x, y, w, h (NaN rows = none)
    head_boxes: Optional[np.ndarray] = None  # [T, 4]
    head_sizes: Optional[np.ndarray] = None  # [T]
    unit: str = ""

    @property
    def dim(self) -> int:
        return self.coords.shape[-1]


# ---------------------------------------------------------------- metrics core

def errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[T, J, D] x [T, J, D] -> e [T, J]; NaN where either side is missing."""
    return np.linalg.norm(np.asarray(pred, float) - np.asarray(gt, float), axis=-1)


def mpjpe(e: np.ndarray, gt_ok: np.ndarray) -> dict:
    """e [T, J] errors, gt_ok [T, J] labelled mask -> {"mean", "per_joint" [J], counts}."""
    ok = gt_ok & np.isfinite(e)
    per = np.array([e[ok[:, j], j].mean() if ok[:, j].any() else np.nan for j in range(e.shape[1])])
    return {"mean": float(e[ok].mean()) if ok.any() else None, "per_joint": per,
            "evaluated": int(ok.sum()), "pred_missing": int((gt_ok & ~np.isfinite(e)).sum())}


def pck(e: np.ndarray, gt_ok: np.ndarray, ref: np.ndarray, alpha: float) -> dict:
    """Correct if e < alpha * ref[t]; missing predictions count as wrong; frames whose ref is not
    finite and positive are left out (`no_reference` labelled joints)."""
    ref = np.asarray(ref, float)
    has_ref = np.isfinite(ref) & (ref > 0)
    lab = gt_ok & has_ref[:, None]
    thr = alpha * np.where(has_ref, ref, np.nan)
    with np.errstate(invalid="ignore"):
        correct = lab & np.isfinite(e) & (e < thr[:, None])
    c, b = correct.sum(axis=0), lab.sum(axis=0)
    per = np.where(b > 0, c / np.maximum(b, 1), np.nan)
    return {"mean": float(np.nanmean(per)) if (b > 0).any() else None,
            "overall": float(c.sum() / b.sum()) if b.sum() else None,
            "per_joint": per, "labelled": int(b.sum()), "correct": int(c.sum()),
            "no_reference": int((gt_ok & ~has_ref[:, None]).sum())}


def _idx(names: list[str], n: str) -> Optional[int]:
    return names.index(n) if n in names else None


def head_size(gt: PoseSet) -> tuple[np.ndarray, str]:
    """Per-frame head size [T] of the ground truth, and how it was obtained."""
    T = len(gt.frames)
    if gt.head_sizes is not None:
        return np.asarray(gt.head_sizes, float), "given head sizes"
    if gt.head_boxes is not None:
        hb = np.asarray(gt.head_boxes, float)
        return 0.6 * np.hypot(hb[:, 2], hb[:, 3]), "0.6 x head box diagonal (MPII)"
    ix = [_idx(gt.names, n) for n in ("left_ear", "right_ear", "left_shoulder", "right_shoulder")]
    if None in ix:
        return np.full(T, np.nan), "none (no head boxes, sizes, or ears and shoulders in the ground truth)"
    c = gt.coords
    ears = 0.5 * (c[:, ix[0]] + c[:, ix[1]])
    sh = 0.5 * (c[:, ix[2]] + c[:, ix[3]])
    return np.linalg.norm(ears - sh, axis=-1), "||mid(ears) - mid(shoulders)|| of the ground truth"


def person_size(gt: PoseSet) -> tuple[np.ndarray, str]:
    """Per-frame max(h, w) of the person box [T]."""
    if gt.boxes is not None:
        b = np.asarray(gt.boxes, float)
        return np.maximum(b[:, 2], b[:, 3]), "max(h, w) of the given person box"
    c = gt.coords
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ext = np.nanmax(c, axis=1) - np.nanmin(c, axis=1)       # [T, D]
            size = np.nanmax(ext, axis=1)
    return size, "max extent of the labelled ground-truth joints (tight box)"


def root_align(coords: np.ndarray, names: list[str]) -> np.ndarray:
    """Subtract the hip midpoint per frame (the whole frame becomes missing where a hip is)."""
    li, ri = _idx(names, "left_hip"), _idx(names, "right_hip")
    if li is None or ri is None:
        raise PoseFileError("--root-align needs left_hip and right_hip on both sides")
    root = 0.5 * (coords[:, li] + coords[:, ri])
    return coords - root[:, None, :]


@dataclass
class Evaluation:
    joints: list[str]
    frames: np.ndarray
    e: np.ndarray                  # [T, J]
    gt_ok: np.ndarray              # [T, J]
    report: dict = field(default_factory=dict)


def evaluate(pred: PoseSet, gt: PoseSet, root: bool = False) -> Evaluation:
    """Align pred to gt by frame index and joint name; compute every metric."""
    if pred.dim != gt.dim:
        raise PoseFileError(f"prediction is {pred.dim}D but ground truth is {gt.dim}D (use --dim)")
    joints = [n for n in gt.names if n in pred.names]
    if not joints:
        raise PoseFileError("prediction and ground truth share no joint names")
    gi = [gt.names.index(n) for n in joints]
    pi = [pred.names.index(n) for n in joints]
    T, D = len(gt.frames), gt.dim
    row = {int(f): i for i, f in enumerate(pred.frames)}
    matched = np.array([int(f) in row for f in gt.frames], dtype=bool)
    P_all = np.full((T, len(pred.names), D), np.nan)      # prediction on the ground truth's frames
    for t, f in enumerate(gt.frames):
        if int(f) in row:
            P_all[t] = pred.coords[row[int(f)]]
    G_all = gt.coords
    if root:
        P_all, G_all = root_align(P_all, pred.names), root_align(G_all, gt.names)
    P, G = P_all[:, pi], G_all[:, gi]
    gt_ok = np.isfinite(G).all(axis=-1)
    e = errors(P, G)
    e[~gt_ok] = np.nan

    hs, hs_how = head_size(gt)
    ps, ps_how = person_size(gt)
    m = mpjpe(e, gt_ok)
    out = {
        "dim": D, "unit": gt.unit or pred.unit or ("px" if D == 2 else "m"),
        "root_aligned": bool(root),
        "joints": joints,
        "joints_gt_only": [n for n in gt.names if n not in pred.names],
        "joints_pred_only": [n for n in pred.names if n not in gt.names],
        "frames": {"gt": int(T), "pred": int(len(pred.frames)), "matched": int(matched.sum()),
                   "gt_without_pred": int((~matched).sum()),
                   "pred_without_gt": int(len(set(map(int, pred.frames)) - set(map(int, gt.frames))))},
        "counts": {"gt_labelled": int(gt_ok.sum()), "gt_missing": int((~gt_ok).sum()),
                   "evaluated": m["evaluated"], "pred_missing": m["pred_missing"]},
        "mpjpe": {"mean": m["mean"], "per_joint": _named(joints, m["per_joint"])},
    }
    for key, ref, alpha, how in (("pckh@0.5", hs, 0.5, hs_how), ("pck@0.2", ps, 0.2, ps_how)):
        r = pck(e, gt_ok, ref, alpha)
        out[key] = {"mean": r["mean"], "overall": r["overall"], "per_joint": _named(joints, r["per_joint"]),
                    "labelled": r["labelled"], "correct": r["correct"], "no_reference": r["no_reference"],
                    "reference": how}
    if D == 3:
        r = pck(e, gt_ok, np.full(T, 0.150), 1.0)
        out["pck@150mm"] = {"mean": r["mean"], "overall": r["overall"], "per_joint": _named(joints, r["per_joint"]),
                            "labelled": r["labelled"], "correct": r["correct"], "reference": "0.150 (metres)"}
    return Evaluation(joints=joints, frames=np.asarray(gt.frames), e=e, gt_ok=gt_ok, report=out)


def _named(names: list[str], values: np.ndarray) -> dict[str, Optional[float]]:
    return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, values)}


# ---------------------------------------------------------------- files

def load_poses(path: str | Path, dim: Optional[int] = None, min_confidence: float = 0.0) -> PoseSet:
    """Read poses from our result.json, a JSON of arrays, or an NPZ (formats: docs/biomechanics.md).

    dim picks 2D keypoints or 3D keypoints_3d from a result.json (default 2); for array files it
    must match the data when given. Joints below min_confidence (when confidences are given) are
    treated as missing."""
    path = Path(path)
    if not path.exists():
        raise PoseFileError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            doc = {k: z[k] for k in z.files}
        return _from_arrays(doc, path, dim, min_confidence)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PoseFileError(f"{path}: not JSON ({exc})") from None
    if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("coach.result/"):
        return _from_result(doc, dim or 2, min_confidence)
    if isinstance(doc, dict) and "keypoints" in doc:
        return _from_arrays(doc, path, dim, min_confidence)
    raise PoseFileError(f"{path}: neither a coach result document nor a pose array file (needs 'keypoints')")


def _from_result(doc: dict, dim: int, min_confidence: float) -> PoseSet:
    frames = doc["athletes"][0]["frames"] if doc.get("athletes") else []
    names = list(LANDMARK_NAMES)
    T = len(frames)
    c = np.full((T, len(names), dim), np.nan)
    boxes = np.full((T, 4), np.nan)
    for t, f in enumerate(frames):
        kp = f.get("keypoints") or {}
        src = kp if dim == 2 else (f.get("keypoints_3d") or {})
        for j, n in enumerate(names):
            r = src.get(n)
            if r is None:
                continue
            conf = kp.get(n, [None, None, 1.0])[2] if kp.get(n) else 1.0
            if conf is not None and conf < min_confidence:
                continue
            c[t, j] = r[:dim]
        if f.get("bbox_px"):
            boxes[t] = f["bbox_px"]
    return PoseSet(names=names, frames=np.array([f["index"] for f in frames], dtype=int), coords=c,
                   boxes=boxes, unit="px" if dim == 2 else "m")


def _from_arrays(doc: dict, path: Path, dim: Optional[int], min_confidence: float) -> PoseSet:
    names = [str(n) for n in np.asarray(doc.get("names", [])).tolist()]
    raw = doc["keypoints"]
    if isinstance(raw, np.ndarray):
        kp = raw.astype(float)
    else:   # JSON: frames may be null, joints may be null
        if not raw:
            raise PoseFileError(f"{path}: 'keypoints' is empty")
        D = next((len(j) for fr in raw if fr for j in fr if j), None)
        if D is None:
            raise PoseFileError(f"{path}: no joint has coordinates")
        J = max(len(fr) for fr in raw if fr)
        kp = np.full((len(raw), J, D), np.nan)
        for t, fr in enumerate(raw):
            for j, v in enumerate(fr or []):
                if v is not None:
                    kp[t, j] = [np.nan if x is None else x for x in v]
    if kp.ndim != 3 or kp.shape[-1] not in (2, 3):
        raise PoseFileError(f"{path}: keypoints must be [T, J, 2|3], got {list(kp.shape)}")
    if not names:
        names = list(LANDMARK_NAMES) if kp.shape[1] == len(LANDMARK_NAMES) else [f"j{j}" for j in range(kp.shape[1])]
    if len(names) != kp.shape[1]:
        raise PoseFileError(f"{path}: {len(names)} names for {kp.shape[1]} joints")
    if dim is not None and kp.shape[-1] != dim:
        raise PoseFileError(f"{path}: data is {kp.shape[-1]}D, --dim {dim} asked")
    T = kp.shape[0]
    if doc.get("confidence") is not None:
        conf = np.array([[np.nan if v is None else v for v in (row or [None] * kp.shape[1])]
                         for row in np.asarray(doc["confidence"], dtype=object).tolist()], dtype=float)
        kp[~(conf >= min_confidence)] = np.nan
    frames = np.asarray(doc["frames"], dtype=int) if doc.get("frames") is not None else np.arange(T)
    if len(frames) != T:
        raise PoseFileError(f"{path}: {len(frames)} frame indices for {T} frames")

    def rows(key: str, width: int) -> Optional[np.ndarray]:
        v = doc.get(key)
        if v is None:
            return None
        out = np.array([[np.nan] * width if r is None else r for r in np.asarray(v, dtype=object).tolist()], dtype=float)
        return out.reshape(T, width) if width > 1 else out.reshape(T)

    return PoseSet(names=names, frames=frames, coords=kp, boxes=rows("boxes", 4), head_boxes=rows("head_boxes", 4),
                   head_sizes=rows("head_sizes", 1), unit=str(doc.get("unit", "")))


# ---------------------------------------------------------------- heatmap

def error_heatmap(ev: Evaluation, path: str | Path, title: str = "") -> None:
    """Per-frame x per-joint error image (joints down, frames across) with the per-joint MPJPE
    beside it; grey = ground truth missing, black = labelled but not predicted."""
    from matplotlib import colors
    from matplotlib.figure import Figure   # no pyplot: no global state, Agg canvas

    e = ev.e.T                                        # [J, T]
    J, T = e.shape
    fig = Figure(figsize=(max(7.0, min(16, 4 + T / 40)), 1.8 + 0.28 * J), dpi=100)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [5, 1]}, sharey=True)
    missing_pred = (ev.gt_ok & ~np.isfinite(ev.e)).T
    base = np.full((J, T, 3), 0.85)                   # grey: not labelled
    base[missing_pred] = 0.0                          # black: not predicted
    ax.imshow(base, aspect="auto", interpolation="nearest")
    finite = np.isfinite(e)
    vmax = float(np.nanpercentile(e[finite], 99)) if finite.any() else 1.0
    im = ax.imshow(np.ma.masked_invalid(e), aspect="auto", interpolation="nearest", cmap="YlOrRd",
                   norm=colors.Normalize(0, max(vmax, 1e-9)))
    unit = ev.report.get("unit", "")
    fig.colorbar(im, ax=ax, label=f"error ({unit})", fraction=0.03, pad=0.01)
    ax.set_yticks(range(J), ev.joints, fontsize=7)
    step = max(1, T // 12)
    ax.set_xticks(range(0, T, step), [str(int(f)) for f in ev.frames[::step]], fontsize=7)
    ax.set_xlabel("frame")
    ax.set_title(title or f"position error per frame and joint; MPJPE {ev.report['mpjpe']['mean'] or float('nan'):.3g} {unit}\n"
                          "(grey: not labelled, excluded; black: labelled but not predicted)", fontsize=9)
    per = [ev.report["mpjpe"]["per_joint"][n] or 0.0 for n in ev.joints]
    bx.barh(range(J), per, color="C3")
    bx.set_xlabel(f"MPJPE ({unit})")
    bx.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
