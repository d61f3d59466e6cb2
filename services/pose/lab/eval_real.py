"""Pose accuracy on hand-labelled real frames (services/pose/lab/real_labels.json; protocol in docs/pose.md).

`coach pose eval --real [--json] [--models lite full heavy]`, or `python -m services.pose.lab.eval_real`.

For each BlazePose model and each labelled person:
  * `whole`:  the whole images of the same span in video mode (the bare model; it may follow somebody else);
  * `crop`:   the frames from the person's first to last labelled frame in video mode, cropped around the
              labelled box (linearly interpolated between labelled frames: a tracker without tracker errors);
  * `crop+<refiner>`: that span refined at the video's own fps, then scored (REFINERS): `strn` = the shipped
              refiner (`make_refiner("strn")`: STRN + Savitzky-Golay post-pass), `strn_only` = the STRN network
              without its post-pass (`smooth=False`), `savgol` = the post-pass alone on the raw crop track (the
              checkpoint's window, 0.7 s at any fps, and order), `one_euro` = `make_refiner("one_euro")`.
Scored on the labelled frames only, reported for all frames, per video and per subset (SUBSETS: `rotated` =
frames tagged as a flip's inverted or strongly rotated body, `upright` = the rest). For the people with rotated
frames the crop method is run a second time with the rotated-body alignment off (`rotated_alignment`:
BlazePoseEstimator(align_rotated=True / False)). PCK@0.2: error < 0.2 x max(w, h) of the labelled box; PCKh@0.5: error
< 0.5 x the labelled head segment (head top - upper neck). A frame without a pose counts as wrong for every
labelled joint. Left/right is the person's own: swaps are not forgiven, only counted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from shared.skeleton import LANDMARK_INDEX

ROOT = Path(__file__).resolve().parents[3]
LABELS = Path(__file__).with_name("real_labels.json")
VIDEOS = {"sports2d": ROOT / ".media" / "sports2d-demo.mp4",
          "vtest": Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")}
# The project's 13 evaluation joints and groups (services/pose/lab/strn_train.py GROUPS), lower-case group names.
GROUPS: dict[str, tuple[str, ...]] = {
    "head": ("nose",), "shoulders": ("left_shoulder", "right_shoulder"), "elbows": ("left_elbow", "right_elbow"),
    "wrists": ("left_wrist", "right_wrist"), "hips": ("left_hip", "right_hip"), "knees": ("left_knee", "right_knee"),
    "ankles": ("left_ankle", "right_ankle")}
JOINTS = [n for g in GROUPS.values() for n in g]
HALVES = {"upper": ("shoulder", "elbow", "wrist"), "lower": ("hip", "knee", "ankle")}
REFINERS = ("strn", "strn_only", "savgol", "one_euro")
TAGS = ("rotated",)   # per-frame tags of the label file (schema /2)
METHODS = ("whole", "crop", *(f"crop+{r}" for r in REFINERS))


class _SavgolOnly:
    """The STRN's Savitzky-Golay post-pass alone (no network): the checkpoint's window and order, scaled to fps."""

    def __init__(self, freq_hz: float) -> None:
        from services.pose.strn import StrnRefiner, savgol
        ref = StrnRefiner(freq_hz=freq_hz)
        self.window, self.poly, self._savgol = ref.smoother_window(), int(ref.smoother.get("poly", 1)), savgol

    def refine(self, keypoints_px: np.ndarray, present: np.ndarray, boxes_px) -> np.ndarray:
        return self._savgol(keypoints_px, present, self.window, self.poly)


def make_eval_refiner(name: str, fps: float):
    """A refiner of REFINERS at the video's frame rate."""
    from services.pose.refine import make_refiner
    if name == "strn_only":
        return make_refiner("strn", freq_hz=fps, smooth=False)
    if name == "savgol":
        return _SavgolOnly(fps)
    return make_refiner(name, freq_hz=fps)


def load_labels(path: Path = LABELS) -> dict:
    return json.loads(Path(path).read_text())


def label_arrays(frame: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One labelled frame -> gt [13, 2] (NaN = cannot place), visible [13] bool, occluded [13] bool."""
    gt = np.full((len(JOINTS), 2), np.nan)
    vis = np.zeros(len(JOINTS), bool)
    occ = np.zeros(len(JOINTS), bool)
    for j, n in enumerate(JOINTS):
        v = frame["joints"][n]
        if v is None:
            continue
        gt[j] = v[:2]
        vis[j], occ[j] = v[2] == 1, v[2] == 0
    return gt, vis, occ


def head_size(frame: dict) -> float:
    a, b = frame["joints"]["head_top"], frame["joints"]["upper_neck"]
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def read_span(video: Path, first: int, last: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"{video}: cannot open (see docs/media.md)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    frames = []
    for _ in range(first, last + 1):
        ok, f = cap.read()
        if not ok:
            raise ValueError(f"{video}: frame {len(frames) + first} missing")
        frames.append(f)
    cap.release()
    return frames, fps


def interp_boxes(person: dict, first: int, last: int) -> list[np.ndarray]:
    """The box per frame: labelled frames' boxes and box-only keyframes (`boxes`: where the person moves fast
    between labelled frames, e.g. through the flip; never scored), linearly interpolated."""
    keys = {b["frame"]: np.asarray(b["box"], float) for b in person.get("boxes", [])}
    keys.update({f["frame"]: np.asarray(f["box"], float) for f in person["frames"]})
    ks = sorted(keys)
    out = []
    for t in range(first, last + 1):
        a, b = max(k for k in ks if k <= t), min(k for k in ks if k >= t)
        w = 0.0 if a == b else (t - a) / (b - a)
        out.append((1 - w) * keys[a] + w * keys[b])
    return out


def swapped(pred: np.ndarray, gt: np.ndarray, ok: np.ndarray) -> bool:
    """True when relabelling left<->right in the upper or the lower half brings the prediction closer to the labels."""
    for parts in HALVES.values():
        li = [JOINTS.index(f"left_{p}") for p in parts]
        ri = [JOINTS.index(f"right_{p}") for p in parts]
        m = ok[li] & ok[ri]
        if not m.any():
            continue
        li, ri = np.array(li)[m], np.array(ri)[m]
        same = np.linalg.norm(pred[li] - gt[li], axis=1).sum() + np.linalg.norm(pred[ri] - gt[ri], axis=1).sum()
        cross = np.linalg.norm(pred[ri] - gt[li], axis=1).sum() + np.linalg.norm(pred[li] - gt[ri], axis=1).sum()
        if cross < same:
            return True
    return False


def score(items: list[dict]) -> dict:
    """items: per labelled frame {pred [13,2] or None, gt, vis, occ, box_side, head}. -> metrics."""
    n_j = len(JOINTS)
    c02, c05, lab = np.zeros(n_j), np.zeros(n_j), np.zeros(n_j)
    occ_c, occ_n, posed, swaps, errs = 0, 0, 0, 0, []
    for it in items:
        vis, occ = it["vis"], it["occ"]
        lab += vis
        occ_n += int(occ.sum())
        if it["pred"] is None:
            continue
        posed += 1
        e = np.linalg.norm(it["pred"] - it["gt"], axis=1)
        c02 += vis & (e < 0.2 * it["box_side"])
        c05 += vis & (e < 0.5 * it["head"])
        occ_c += int((occ & (e < 0.2 * it["box_side"])).sum())
        errs += [float(x / it["box_side"]) for x in e[vis]]
        swaps += swapped(it["pred"], it["gt"], vis)

    def groups(c: np.ndarray) -> dict:
        out = {}
        for g, ns in GROUPS.items():  # None: no visible labelled joint of the group (e.g. a walker seen from behind)
            n = sum(lab[JOINTS.index(j)] for j in ns)
            out[g] = round(float(sum(c[JOINTS.index(j)] for j in ns) / n), 3) if n else None
        out["overall"] = round(float(c.sum() / max(1, lab.sum())), 3)
        return out

    return {"frames": len(items), "coverage": round(posed / max(1, len(items)), 3),
            "visible_joints": int(lab.sum()), "pck@0.2": groups(c02), "pckh@0.5": groups(c05),
            "occluded_joints": occ_n, "pck@0.2_occluded": round(occ_c / occ_n, 3) if occ_n else None,
            "median_error_per_box_side": round(float(np.median(errs)), 4) if errs else None,
            "lr_swapped_frames": int(swaps)}


def subsets(items: list[dict]) -> dict[str, list[dict]]:
    """The scored subsets: all frames, per video, per tag (`rotated`) with its complement (`upright`), per person."""
    out = {"all": items, **{v: [i for i in items if i["video"] == v] for v in sorted({i["video"] for i in items})}}
    for tag in TAGS:
        out[tag] = [i for i in items if tag in i["tags"]]
    out["upright"] = [i for i in items if "rotated" not in i["tags"]]
    for pid in dict.fromkeys(i["person"] for i in items):
        out[f"person:{pid}"] = [i for i in items if i["person"] == pid]
    return out


CLIP_METHODS = ("crop/clips-fresh", "crop/clips-continued")


def clip_pieces(first: int, last: int, clip_frames: int = 32, first_clip_frames: int = 8) -> list[tuple[int, int]]:
    """[first, last] cut where the pose worker's clips of the whole video end (shared/clips.py), relative to first."""
    from shared.clips import clip_spans
    return [(max(s, first) - first, min(e, last + 1) - first) for s, e in clip_spans(last + 1, clip_frames, first_clip_frames)
            if e > first]


def predict(doc: dict, model: str, refiners, align_rotated: bool = True, clips: bool = False) -> dict[str, list[dict]]:
    """Per method, the scoring items of every labelled frame (in label-file order). clips: also the span
    cut at the worker's clip boundaries and posed piece by piece, restarting at each piece ("fresh")
    or continuing one BlazePose session ("continued"; services/pose/sessions.py)."""
    from services.pose.blazepose import BlazePoseEstimator

    idx = [LANDMARK_INDEX[n] for n in JOINTS]
    out: dict[str, list[dict]] = {m: [] for m in ("whole", "crop", *(f"crop+{r}" for r in refiners),
                                                  *(CLIP_METHODS if clips else ()))}
    with BlazePoseEstimator(model=model, align_rotated=align_rotated) as est:
        for person in doc["people"]:
            if not person["frames"]:
                continue
            first, last = person["frames"][0]["frame"], person["frames"][-1]["frame"]
            frames, fps = read_span(VIDEOS[person["video"]], first, last)
            boxes = interp_boxes(person, first, last)
            seq = est.estimate_sequence(frames, boxes)
            whole = est.estimate_frames(frames)  # video mode over the same span: the bare model's own tracking
            tracks = {"crop": seq.keypoints_px}
            present = {"crop": seq.present}
            if clips:
                for m, session in zip(CLIP_METHODS, (None, est.new_session())):
                    parts = [est.estimate_sequence(frames[s:e], boxes[s:e], session) for s, e in clip_pieces(first, last)]
                    tracks[m] = np.concatenate([p_.keypoints_px for p_ in parts])
                    present[m] = np.concatenate([p_.present for p_ in parts])
                    if session is not None:
                        est.end_session(session)
            for name in refiners:
                ref = make_eval_refiner(name, fps)
                tracks[f"crop+{name}"] = ref.refine(seq.keypoints_px.copy(), seq.present.copy(), boxes)
            for f in person["frames"]:
                gt, vis, occ = label_arrays(f)
                base = {"gt": gt, "vis": vis, "occ": occ, "box_side": float(max(f["box"][2:])), "head": head_size(f),
                        "video": person["video"], "person": person["id"], "frame": f["frame"],
                        "tags": tuple(f.get("tags", ()))}
                t = f["frame"] - first
                for m, kp in tracks.items():
                    ok = present.get(m, seq.present)[t]
                    out[m].append({**base, "pred": kp[t, idx, :2].astype(float) if ok else None})
                out["whole"].append({**base, "pred": whole.keypoints_px[t, idx, :2].astype(float) if whole.present[t] else None})
    return out


def evaluate(models=("lite", "full", "heavy"), refiners=REFINERS, labels: Path = LABELS,
             align_off: bool = True, clips: bool = False) -> dict:
    doc = load_labels(labels)
    tilted = {"schema": doc.get("schema"), "people": [p for p in doc["people"]
                                                      if any("rotated" in f.get("tags", ()) for f in p["frames"])]}
    rep = {"labels": str(Path(labels).relative_to(ROOT)) if Path(labels).is_relative_to(ROOT) else str(labels),
           "ground_truth": "hand-labelled by a developer (an AI agent) on gridded zooms; see docs/pose.md",
           "people": {p["id"]: len(p["frames"]) for p in doc["people"] if p["frames"]},
           "consecutive_runs": consecutive_runs(doc),
           "subset_frames": {k: len(v) for k, v in subsets([{"video": p["video"], "person": p["id"],
                                                              "tags": tuple(f.get("tags", ()))}
                                                            for p in doc["people"] for f in p["frames"]]).items()},
           "models": {}, "rotated_alignment": {}}
    for model in models:
        items = predict(doc, model, refiners, clips=clips)
        rep["models"][model] = {m: {k: score(v) for k, v in subsets(its).items()} for m, its in items.items()}
        if align_off and tilted["people"]:
            # the same crops, people with rotated frames only, alignment off vs on (the `on` items are the run above)
            ids = {p["id"] for p in tilted["people"]}
            on = [i for i in items["crop"] if i["person"] in ids]
            off = predict_crop(tilted, model, align_rotated=False)
            rep["rotated_alignment"][model] = {
                "people": sorted(ids),
                "on": {k: score(subsets(on)[k]) for k in ("rotated", "upright")},
                "off": {k: score(subsets(off)[k]) for k in ("rotated", "upright")}}
    return rep


def predict_crop(doc: dict, model: str, align_rotated: bool) -> list[dict]:
    return predict(doc, model, refiners=(), align_rotated=align_rotated)["crop"]


def consecutive_runs(doc: dict) -> list[str]:
    runs = []
    for p in doc["people"]:
        fr = [f["frame"] for f in p["frames"]]
        s = 0
        for i in range(1, len(fr) + 1):
            if i == len(fr) or fr[i] != fr[i - 1] + 1:
                if i - s >= 3:
                    runs.append(f"{p['id']} {fr[s]}-{fr[i - 1]}")
                s = i
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="coach pose eval --real", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--models", nargs="+", default=["lite", "full", "heavy"], choices=("lite", "full", "heavy"))
    ap.add_argument("--refiners", nargs="+", default=list(REFINERS), choices=REFINERS)
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--no-align-off", action="store_true",
                    help="skip the second crop run with the rotated-body alignment off")
    ap.add_argument("--clips", action="store_true", help="also the spans cut into the worker's clips, fresh vs continued")
    args = ap.parse_args(argv)
    rep = evaluate(args.models, refiners=tuple(args.refiners), labels=Path(args.labels), align_off=not args.no_align_off,
                   clips=args.clips)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{rep['labels']}: {sum(rep['people'].values())} labelled person-frames; runs {', '.join(rep['consecutive_runs'])}")
    print(f"{'model':<7}{'method':<15}{'subset':<20}{'cover':>6}{'PCK@.2':>8}{'PCKh@.5':>8}{'swaps':>6}")
    for model, ms in rep["models"].items():
        for m, subs in ms.items():
            for s, r in subs.items():
                print(f"{model:<7}{m:<15}{s:<20}{r['coverage']:>6.2f}{r['pck@0.2']['overall']:>8.3f}"
                      f"{r['pckh@0.5']['overall']:>8.3f}{r['lr_swapped_frames']:>6}")
    for model, al in rep["rotated_alignment"].items():
        for on_off in ("on", "off"):
            for s, r in al[on_off].items():
                print(f"{model:<7}{'crop align ' + on_off:<15}{s:<20}{r['coverage']:>6.2f}{r['pck@0.2']['overall']:>8.3f}"
                      f"{r['pckh@0.5']['overall']:>8.3f}{r['lr_swapped_frames']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
