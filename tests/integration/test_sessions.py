"""Multi-camera sessions through the real stack: two cuts of vtest.avi as two "cameras", each
analysed by the whole pipeline, then aligned in time; each result carries biomechanics."""
from __future__ import annotations

import csv
import io
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SHIFT = 20   # camera B starts 20 source frames (2.0 s at 10 fps) after camera A


def _cut(src: Path, out: Path, first: int, last: int, crop: str) -> Path:
    vf = f"trim=start_frame={first}:end_frame={last + 1},setpts=PTS-STARTPTS,crop={crop}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory, vtest_video):
    d = tmp_path_factory.mktemp("session")
    a = _cut(vtest_video, d / "cam_a.mp4", 0, 119, "480:576:0:0")                 # 120 frames, left part
    b = _cut(vtest_video, d / "cam_b.mp4", SHIFT, SHIFT + 119, "480:576:288:0")   # 120 frames, right part
    return a, b


def _post(gateway, paths, **data):
    handles = [open(p, "rb") for p in paths]
    try:
        return gateway.post("/v1/sessions", files=[("videos", (p.name, h, "video/mp4")) for p, h in zip(paths, handles)],
                            data={"sport": "squat", **data})
    finally:
        for h in handles:
            h.close()


@pytest.fixture(scope="module")
def finished_session(gateway, two_cameras):
    r = _post(gateway, list(two_cameras), athlete_height_m="1.75")
    assert r.status_code == 202, r.text
    body = r.json()
    sid = body["id"]
    first = gateway.get(f"/v1/sessions/{sid}").json()
    seen = {first["status"]}
    deadline = time.monotonic() + 900
    st = first
    while time.monotonic() < deadline:
        st = gateway.get(f"/v1/sessions/{sid}").json()
        seen.add(st["status"])
        if st["status"] in ("done", "failed"):
            break
        time.sleep(0.5)
    return body, first, st, seen


def test_session_creates_one_analysis_per_camera_and_aligns_them(gateway, finished_session):
    body, first, st, seen = finished_session
    assert len(body["cameras"]) == 2 and body["cameras"][0]["analysis_id"] != body["cameras"][1]["analysis_id"]
    assert [c["analysis_id"] for c in first["cameras"]] == [c["analysis_id"] for c in body["cameras"]]
    assert first["status"] in ("queued", "running") and first["alignment"] is None
    assert st["status"] == "done", st
    assert "aligning" in seen, "alignment runs after every analysis is done"
    assert all(c["status"] == "done" for c in st["cameras"])
    for c in st["cameras"]:    # each camera is an ordinary analysis
        assert gateway.get(c["links"]["analysis"]).json()["status"] == "done"

    al = st["alignment"]
    assert al["method"] == "motion"
    cam_a, cam_b = al["cameras"]
    # common timeline: A starts first (0 s), B's frame 0 shows A's frame 20
    assert cam_a["offset_s"] == pytest.approx(0.0, abs=1e-9)
    assert cam_b["offset_s"] == pytest.approx(SHIFT / 10, abs=0.1)
    assert cam_b["offset_frames"] == pytest.approx(SHIFT, abs=1.0)
    assert cam_b["motion"]["vs_camera_0"]["offset_frames"] == pytest.approx(-SHIFT, abs=1.0)
    assert cam_b["confidence"] > 0.2
    assert set(cam_b) >= {"presence", "motion"}      # the presence estimate is reported beside it
    bv = al["best_view"]
    assert len(bv["per_step"]) == pytest.approx((SHIFT + 120), abs=1)
    assert bv["segments"][0]["start_s"] == 0.0 and bv["segments"][-1]["end_s"] == pytest.approx(len(bv["per_step"]) / 10)
    assert set(bv["per_step"][:SHIFT]) <= {0, None}   # only camera A exists before B starts


def test_each_camera_result_carries_3d_angles_biomechanics_and_artifacts(gateway, finished_session):
    import httpx

    _, _, st, _ = finished_session
    aid = st["cameras"][0]["analysis_id"]
    result = gateway.get(f"/v1/analyses/{aid}/result").json()
    frames = result["athletes"][0]["frames"]
    posed = [f for f in frames if f["keypoints_3d"]]
    assert posed and all(f["angles_3d_deg"] and set(f["angles_3d_deg"]) >= {"knee_l", "hip_r", "elbow_l", "trunk"} for f in posed)
    assert all(f["angles_3d_deg"] is None for f in frames if not f["keypoints_3d"])
    bio = result["biomechanics"]
    assert bio["scale"]["source"] == "athlete_height" and bio["scale"]["athlete_height_m"] == 1.75
    assert 10 < bio["scale"]["px_per_m"] < 200        # vtest's walkers are ~80-90 px tall
    assert len(bio["series"]["com_px"]) == len(frames)
    cvs = [v for v in bio["bone_length_cv"].values() if v is not None]
    assert cvs and max(cvs) < 0.5
    arts = result["artifacts"]
    assert {"biomech_angles_plot", "biomech_com_plot", "biomech_csv"} <= set(arts)
    assert arts["biomech_csv"]["key"] == f"analyses/{aid}/biomech/frames.csv"
    png = httpx.get(arts["biomech_angles_plot"]["url"], timeout=30)
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    rows = list(csv.DictReader(io.StringIO(httpx.get(arts["biomech_csv"]["url"], timeout=30).text)))
    assert len(rows) == len(frames) and rows[0]["frame"] == "0"


def test_session_uploads_are_checked_before_anything_is_queued(gateway, two_cameras, tmp_path):
    one = _post(gateway, [two_cameras[0]])
    assert one.status_code == 422 and "2 to 8 videos" in one.json()["detail"]
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    r = _post(gateway, [two_cameras[0], bad])
    assert r.status_code == 422 and "video 2 (notes.mp4)" in r.json()["detail"]
    assert _post(gateway, list(two_cameras), athlete_height_m="17").status_code == 422
    assert gateway.get("/v1/sessions/" + "0" * 32).status_code == 404
    assert gateway.get("/v1/sessions/nope").status_code == 404
