"""Multi-camera time alignment (services/tracker/align.py): real video cut into two "cameras" with
different crops and frame rates, plus the correlation, timeline and best-view logic on known signals."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from services.tracker import align as al


def _cut(src: Path, out: Path, first: int, last: int, crop: str, fps: float | None = None) -> Path:
    """Frames first..last of src, cropped (w:h:x:y), optionally re-timed to fps (ffmpeg's fps filter
    duplicates frames: same real-time speed, more frames)."""
    vf = f"trim=start_frame={first}:end_frame={last + 1},setpts=PTS-STARTPTS,crop={crop}" + (f",fps={fps}" if fps else "")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def cameras(tmp_path_factory, vtest_video):
    """vtest.avi (10 fps, 768x576, people walking): A = frames 0-400, left 480 px; B = frames 37-450,
    right 480 px (192 px shared with A), re-timed to 15 fps. A moment at A's time t is at B's t - 3.7 s."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg missing: scripts/setup.sh installs it")
    d = tmp_path_factory.mktemp("align")
    a = _cut(vtest_video, d / "a.mp4", 0, 400, "480:576:0:0")
    b = _cut(vtest_video, d / "b.mp4", 37, 450, "480:576:288:0", fps=15)
    ea, fa = al.motion_energy(a)
    eb, fb = al.motion_energy(b)
    return {"a": a, "b": b, "ea": ea, "fa": fa, "eb": eb, "fb": fb}


def test_motion_alignment_recovers_the_offset_on_real_video_across_frame_rates(cameras):
    c = cameras
    assert (c["fa"], c["fb"]) == (10.0, 15.0) and len(c["ea"]) == 401 and len(c["eb"]) == 621
    res = al.align_signals(c["ea"], c["fa"], c["eb"], c["fb"], "motion")
    # frame i of A = frame 1.5 i - 55.5 of B; within one frame of either camera
    assert res.offset_s == pytest.approx(-3.7, abs=1 / 15)
    assert res.offset_frames == pytest.approx(-55.5, abs=1.0)
    assert res.confidence > 0.3 and res.overlap_s > 30
    # the other way round: frame j of B = frame j / 1.5 + 37 of A
    rev = al.align_signals(c["eb"], c["fb"], c["ea"], c["fa"], "motion")
    assert rev.offset_s == pytest.approx(3.7, abs=1 / 15)
    assert rev.offset_frames == pytest.approx(37.0, abs=1.0)


def test_coach_align_cli_on_short_same_rate_clips(tmp_path, vtest_video, capsys):
    """150-frame clips, both 10 fps: frame i of A is frame i - 20 of B."""
    from coach.cli import main

    a = _cut(vtest_video, tmp_path / "a.mp4", 0, 149, "480:576:0:0")
    b = _cut(vtest_video, tmp_path / "b.mp4", 20, 169, "480:576:288:0")
    assert main(["align", str(a), str(b), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"offset_frames", "offset_s", "method", "confidence"}
    assert out["method"] == "motion"
    assert out["offset_frames"] == pytest.approx(-20, abs=1.0) and out["offset_s"] == pytest.approx(-2.0, abs=0.1)
    assert main(["align", str(a), str(tmp_path / "missing.mp4")]) == 2


# ---------------------------------------------------------------- known signals

def test_normalized_xcorr_equals_brute_force_pearson():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=45)
    lags, r = al.normalized_xcorr(a, b, min_overlap=5)
    for L in (-20, -3, 0, 7, 30, 39):
        i = np.arange(max(0, -L), min(len(a), len(b) - L))
        ref = np.corrcoef(a[i], b[i + L])[0, 1]
        assert r[lags == L][0] == pytest.approx(ref, abs=1e-9)
    assert np.isnan(r[lags == 41][0])        # 4 samples in common < 5


def test_motion_signal_shift_at_different_rates_and_duplicated_frames():
    """A random motion 'event train' seen at 30 fps and at 12.5 fps (B starts 4.2 s later, every other
    frame duplicated as a re-timed camera would): recovered within a frame."""
    rng = np.random.default_rng(2)
    t = np.arange(0, 60, 1 / 300)                          # the world, finely sampled
    world = np.convolve(rng.exponential(size=len(t)) ** 3, np.ones(30) / 30, mode="same")

    def camera(start_s, fps, dur_s, dup=False):
        edges = start_s + np.arange(int(dur_s * fps) + 1) / fps
        c = np.interp(edges, t, np.cumsum(world) / 300)
        e = np.diff(c, prepend=c[0])                       # motion during each frame interval
        if dup:                                            # odd frames repeat the previous one: no motion
            odd = np.arange(1, len(e) - 1, 2)              # ... which then shows up in the next frame
            e[odd + 1] += e[odd]
            e[odd] = 0.0
        return e * rng.uniform(0.5, 2.0) + rng.normal(scale=0.002, size=len(e))

    ea = camera(5.0, 30.0, 40.0)
    res = al.align_signals(ea, 30.0, camera(9.2, 12.5, 45.0), 12.5, "motion")
    assert res.offset_s == pytest.approx(-4.2, abs=1 / 30)
    # duplicated frames really show half the motion one frame late: still within a frame of B
    res = al.align_signals(ea, 30.0, camera(9.2, 12.5, 45.0, dup=True), 12.5, "motion")
    assert res.offset_frames == pytest.approx(-4.2 * 12.5, abs=1.0)


def test_presence_alignment_from_thresholded_scores():
    """The athlete enters view A at 2.0 s and leaves at 9.0 s; view B (25 fps) sees the same at
    3.5 s and 10.5 s. Scores hover around the threshold only as noise below it."""
    rng = np.random.default_rng(4)

    def scores(fps, enter, leave, dur):
        t = np.arange(int(dur * fps)) / fps
        s = rng.uniform(0.0, 0.6, len(t))
        s[(t >= enter) & (t < leave)] = rng.uniform(0.8, 0.99, ((t >= enter) & (t < leave)).sum())
        return s

    res = al.align_signals(scores(10.0, 2.0, 9.0, 12.0), 10.0, scores(25.0, 3.5, 10.5, 14.0), 25.0, "presence")
    assert res.offset_s == pytest.approx(1.5, abs=0.1)
    assert res.offset_frames == pytest.approx(1.5 * 25, abs=2.5)   # one frame of A (10 fps) = 2.5 frames of B
    assert [e["event"] for e in res.details["events_a"]] == ["enter", "leave"]
    # always present: nothing to align on
    flat = al.align_signals(np.ones(100), 10.0, np.ones(100), 10.0, "presence")
    assert flat.offset_s is None and flat.confidence == 0.0


def test_common_timeline_and_best_view():
    # camera 1's moments are 2 s later in its own clock (t_1 = t_0 + 2): it started 2 s earlier
    starts = al.common_timeline([2.0, -1.0])
    assert starts == [2.0, 0.0, 3.0]
    conf = [np.array([0.9, 0.9, 0.2, 0.2]), np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]), np.array([np.nan, 0.95])]
    per, seg = al.best_view(conf, [1.0, 1.0, 1.0], starts, rate=1.0, smooth_s=0)
    # t=0,1: only camera 1; t=2,3: camera 0 (0.9) beats 1 (0.5), camera 2's first frame has no pose;
    # t=4: camera 2 (0.95); t=5: camera 1 (0.5) beats 0 (0.2)
    assert per == [1, 1, 0, 0, 2, 1]
    assert seg == [{"camera": 1, "start_s": 0.0, "end_s": 2.0}, {"camera": 0, "start_s": 2.0, "end_s": 4.0},
                   {"camera": 2, "start_s": 4.0, "end_s": 5.0}, {"camera": 1, "start_s": 5.0, "end_s": 6.0}]
    # smoothing over 3 frames: a one-frame dip does not switch cameras
    flick = [np.array([0.9, 0.9, 0.4, 0.9, 0.9]), np.array([0.6, 0.6, 0.6, 0.6, 0.6])]
    assert al.best_view(flick, [1.0, 1.0], [0.0, 0.0], rate=1.0, smooth_s=0)[0] == [0, 0, 1, 0, 0]
    assert al.best_view(flick, [1.0, 1.0], [0.0, 0.0], rate=1.0, smooth_s=3)[0] == [0, 0, 0, 0, 0]
