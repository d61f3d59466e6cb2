"""CPU and wall time of the annotated video drawn in one piece vs in per-clip segments joined with
`-c copy` (services/suggest/annotate.py), on a real video's frames; checks the joined video.

    python scripts/bench_annotated_segments.py /usr/share/doc/opencv-doc/examples/data/vtest.avi [--runs 3]

Frames are JPEG-encoded in memory first and decoded when drawn, as the worker fetches them from
the store. The skeleton is a fixed figure following the frame index (drawing costs the same for
any pose); flags cycle red / green / grey per 40 frames. CPU time: this process plus its ffmpeg
children (resource.getrusage), so it counts what a shared machine pays whoever runs it.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.suggest import annotate  # noqa: E402
from shared.clips import clip_spans  # noqa: E402
from shared.documents import PoseFrame  # noqa: E402
from shared.skeleton import LANDMARK_INDEX  # noqa: E402


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _frames(n: int, w: int, h: int) -> list[PoseFrame]:
    out = []
    for i in range(n):
        x = (40 + 3 * i) % (w - 80)
        kps = [None] * 33
        for name, (dx, dy) in {"left_shoulder": (0, 60), "right_shoulder": (30, 60), "left_hip": (3, 120),
                               "right_hip": (27, 120), "left_knee": (3, 165), "right_knee": (27, 165),
                               "left_ankle": (3, 210), "right_ankle": (27, 210), "nose": (15, 35)}.items():
            kps[LANDMARK_INDEX[name]] = [float(x + dx), float(dy + 100), 0.9]
        out.append(PoseFrame(index=i, t_s=i / 10, bbox_px=[x - 10.0, 120.0, 50.0, 200.0], keypoints=kps))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("video")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clip-frames", type=int, default=32)
    ap.add_argument("--first-clip-frames", type=int, default=8)
    args = ap.parse_args()

    cap = cv2.VideoCapture(args.video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    jpegs = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    h, w = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
    frames = _frames(len(jpegs), w, h)
    flags = {f.index: [True, False, None][(f.index // 40) % 3] for f in frames}
    clips = [frames[a:b] for a, b in clip_spans(len(frames), args.clip_frames, args.first_clip_frames)]

    def load(i: int) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_COLOR)

    pool = ThreadPoolExecutor(max_workers=4)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for run in range(args.runs):
            c0, t0 = _cpu(), time.perf_counter()
            annotate.render(frames, [flags[f.index] for f in frames], load, fps, w, h, tmp / "serial.mp4", pool)
            c1, t1 = _cpu(), time.perf_counter()
            parts = []
            for seg in annotate.plan(clips, flags, 0, fps, w, h):
                parts.append(tmp / f"{seg.first_frame:06d}.mp4")
                annotate.render(seg.frames, seg.flags, load, fps, w, h, parts[-1], pool)
            c2, t2 = _cpu(), time.perf_counter()
            annotate.join(parts, tmp / "joined.mp4")
            c3, t3 = _cpu(), time.perf_counter()
            rows.append({"run": run + 1, "serial_s": round(t1 - t0, 2), "serial_cpu_s": round(c1 - c0, 2),
                         "segments_s": round(t2 - t1, 2), "segments_cpu_s": round(c2 - c1, 2),
                         "join_s": round(t3 - t2, 2), "join_cpu_s": round(c3 - c2, 2)})
            print(json.dumps(rows[-1]), flush=True)
        probe = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=codec_name,pix_fmt,avg_frame_rate,nb_read_frames", "-of", "json", str(tmp / "joined.mp4")],
            check=True, capture_output=True, text=True).stdout)["streams"][0]
        a, b = cv2.VideoCapture(str(tmp / "joined.mp4")), cv2.VideoCapture(str(tmp / "serial.mp4"))
        psnr = []
        while True:
            ok1, x = a.read()
            ok2, y = b.read()
            if not (ok1 and ok2):
                break
            psnr.append(cv2.PSNR(x, y))
    print(json.dumps({"frames": len(frames), "segments": len(clips), "probe_joined": probe,
                      "psnr_joined_vs_serial_db": {"min": round(min(psnr), 1), "mean": round(float(np.mean(psnr)), 1)}}))


if __name__ == "__main__":
    main()
