"""`coach pose run` and `coach pose bench-models`: pose on one file with the pipeline's tracker
in the same process (detect, track, verify, re-detect, then BlazePose on the athlete's crops and
the refiner), and the BlazePose models timed on tracked-size crops.

They need the tracker and the pose service together, so they live here, not in either service
(services never import each other); the `coach pose` parser stays in services/pose/lab/strn_cli.py
and coach/cli.py routes these two sub-commands here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def pose_file(path: str, refiner_name: str = "one_euro", boxes_from: str = "tracker", max_frames: int | None = None,
              chunk: int = 64, pose_model: str = "full") -> dict:
    """Keypoints of the athlete in an image (raw, whole image) or a video (tracked, crops, refined)."""
    import cv2
    import numpy as np

    from services.pose.blazepose import BlazePoseEstimator, PoseSequence
    from services.pose.refine import make_refiner
    from shared.skeleton import LANDMARK_NAMES
    from shared.video import read_frames

    def rows(kp, ok):
        return None if not ok else {n: [round(float(v), 2) for v in kp[j]] for j, n in enumerate(LANDMARK_NAMES)}

    if Path(path).suffix.lower() in IMAGE_EXT:
        img = cv2.imread(path)
        if img is None:
            raise ValueError(f"{path}: not a readable image")
        with BlazePoseEstimator(model=pose_model) as est:
            seq = est.estimate_frames([img])
        return {"input": path, "kind": "image", "pose_model": est.model_id, "refiner": "none",
                "frames": [{"index": 0, "keypoints": rows(seq.keypoints_px[0], seq.present[0])}]}

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"{path}: not a readable image or video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    kps, present, boxes = [], [], []
    with BlazePoseEstimator(model=pose_model) as est:
        if boxes_from == "pose":  # whole-frame pose -> boxes, held over frames where it found nobody
            from services.pose.lab.bench import boxes_from_pose
            frames = read_frames(cap, max_frames)
            found = boxes_from_pose(est.estimate_frames(frames))
            held = next((b for b in found if b is not None), None)
            for b in found:
                held = b if b is not None else held
                boxes.append(held)
            for s in range(0, len(frames), chunk):
                seq = est.estimate_sequence(frames[s:s + chunk], boxes[s:s + chunk])
                kps.append(seq.keypoints_px)
                present.append(seq.present)
        else:  # the pipeline's tracker (detect, track, verify, re-detect); pose on chunks as tracks become final
            from services.tracker.athlete import AthleteTracker
            from services.tracker.results import NoPersonFound

            tracker, pending, ready = AthleteTracker(), {}, []
            n = 0

            def flush(final: bool = False) -> None:
                while len(ready) >= chunk or (final and ready):
                    part = ready[:chunk]
                    del ready[:chunk]
                    frames = [pending.pop(ft.index) for ft in part]
                    bx = [ft.bbox_px for ft in part]
                    seq = est.estimate_sequence(frames, bx)
                    kps.append(seq.keypoints_px)
                    present.append(seq.present)
                    boxes.extend(bx)

            while max_frames is None or n < max_frames:
                ok, f = cap.read()
                if not ok:
                    break
                pending[n] = f
                n += 1
                ready.extend(tracker.push(f))
                flush()
            try:
                ready.extend(tracker.finish())
            except NoPersonFound:
                ready.extend(type("FT", (), {"index": i, "bbox_px": None})() for i in sorted(pending))
            flush(final=True)
    cap.release()
    if not kps:
        return {"input": path, "kind": "video", "fps": fps, "pose_model": est.model_id, "refiner": refiner_name,
                "frames": []}
    seq = PoseSequence(np.concatenate(kps), np.concatenate(kps), np.concatenate(present))
    params = {"freq_hz": fps} if refiner_name in ("strn", "one_euro") else {}
    refined = make_refiner(refiner_name, **params).refine(seq.keypoints_px, seq.present, boxes)
    return {"input": path, "kind": "video", "fps": fps, "pose_model": est.model_id, "refiner": refiner_name,
            "boxes": boxes_from,
            "frames": [{"index": t, "keypoints": rows(refined[t], seq.present[t])} for t in range(len(seq))]}


def cmd_run(args) -> int:
    from services.pose.blazepose import PoseModelError
    from shared.settings import Settings

    try:
        doc = pose_file(args.input, args.refiner, args.boxes, args.max_frames,
                        pose_model=args.pose_model or Settings.from_env().pose_model)
    except (ValueError, PoseModelError) as exc:
        print(f"coach pose run: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc))
        return 0
    n = sum(f["keypoints"] is not None for f in doc["frames"])
    print(f"{args.input}: {doc['kind']}, {len(doc['frames'])} frames, pose in {n}, {doc['pose_model']}, "
          f"refiner {doc['refiner']}")
    for f in doc["frames"]:
        k = f["keypoints"]
        print(f"{f['index']:>6}  " + ("-" if k is None else "nose " + ",".join(f"{v:.1f}" for v in k["nose"][:2])
                                      + "  l_ankle " + ",".join(f"{v:.1f}" for v in k["left_ankle"][:2])))
    return 0


def tracker_boxes(frames) -> list:
    """The athlete's box per frame from the pipeline's tracker (None where absent): the crops the pose worker sees."""
    from services.tracker.athlete import AthleteTracker
    from services.tracker.results import NoPersonFound

    tracker, found = AthleteTracker(), []
    for f in frames:
        found += tracker.push(f)
    try:
        found += tracker.finish()
    except NoPersonFound:
        return [None] * len(frames)
    boxes = [None] * len(frames)
    for ft in found:
        boxes[ft.index] = ft.bbox_px
    return boxes


def cmd_bench_models(args) -> int:
    from services.pose.blazepose import PoseModelError
    from services.pose.lab.bench import BENCH_VIDEOS, bench_models

    boxes_fn = tracker_boxes if args.boxes == "tracker" else None
    try:
        rep = [bench_models(v, max_frames=args.max_frames, repeat=args.repeat, boxes_fn=boxes_fn)
               for v in (args.videos or BENCH_VIDEOS)]
    except (FileNotFoundError, ValueError, PoseModelError) as exc:
        print(f"coach pose bench-models: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{'video':<22}{'size':>10}{'frames':>7}{'model':>7}{'whole ms/f':>12}{'with pose':>10}{'crops ms/f':>12}{'with pose':>10}")
    for r in rep:
        print(f"{Path(r['video']).name}: crops around {r['boxes']} boxes on {r['frames_with_box']} frames, "
              f"median side {r['box_side_px_median']} px")
        for m, row in r["models"].items():
            w, c = row["whole"], row["crops"]
            print(f"{Path(r['video']).name:<22}{r['size']:>10}{r['frames']:>7}{m:>7}{w['ms_per_frame']:>12.1f}"
                  f"{w['frames_with_pose']:>10}{c['ms_per_frame']:>12.1f}{c['frames_with_pose']:>10}")
    return 0
