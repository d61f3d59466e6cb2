"""STRN refiner: network shapes, heatmap warping and decoding, the Refiner contract (original pixels, absent
frames, batching several clips = one by one, the switches, bad weights), and the shipped weights on a held-out
walker of real video (BlazePose on blurred frames vs clean frames)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from services.pose.refine import Refiner, make_refiner
from services.pose.strn import (JOINTS, STRN, WEIGHTS, StrnConfig, StrnRefiner, decode, load_model, render,
                                savgol, warp)
from shared.testing import MemoryStore

torch.set_num_threads(1)
VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def test_shapes_through_the_network():
    cfg = StrnConfig(T=5, size=16, layers=2, heads=2)
    model = STRN(cfg)
    b, c = 3, len(JOINTS)
    hm = render(torch.rand(b, cfg.T, c, 2) * 10 + 3, torch.rand(b, cfg.T, c), cfg.size, cfg.sigma)
    assert hm.shape == (b, cfg.T, c, cfg.size, cfg.size)
    outs = model(hm)
    assert len(outs) == cfg.layers and all(o.shape == hm.shape for o in outs)
    head = model.layers[0][0]
    flat = hm.reshape(b * cfg.T, c, cfg.size, cfg.size)
    mo, half = torch.zeros(b * cfg.T, c, 4), torch.nn.functional.avg_pool2d(flat, 2)
    assert head.spatial(mo, half, b, cfg.T).shape == (b, cfg.T, c, 2)
    assert head.temporal(mo, half, b, cfg.T).shape == (b, cfg.T, c, 2)
    for only in (dict(spatial=False), dict(temporal=False)):
        assert STRN(StrnConfig(T=5, layers=1, heads=1, **only))(hm)[-1].shape == hm.shape


def test_bilinear_offsets_move_the_peak_by_the_offset():
    g = torch.Generator().manual_seed(0)
    uv = torch.rand(40, len(JOINTS), 2, generator=g) * 4 + 6  # peaks well inside a 16 x 16 map
    hm = render(uv, torch.ones(40, len(JOINTS)), 16, 1.0)
    off = (torch.rand(40, len(JOINTS), 2, generator=g) - 0.5) * 4  # up to +-2 px, fractional
    moved, _ = decode(warp(hm, off))
    err = (moved - (uv + off)).abs().max().item()
    print(f"\nwarp: max |decoded - (peak + offset)| = {err:.4f} heatmap px")
    assert err < 0.05
    still, _ = decode(warp(hm, torch.zeros_like(off)))
    assert (still - uv).abs().max().item() < 1e-3  # zero offsets: identity


def test_decode_render_round_trip_sub_pixel():
    g = torch.Generator().manual_seed(1)
    for size, sigma in ((16, 1.0), (32, 1.5)):
        lo = 4 * sigma + 1  # away from the border (the map is the athlete's box grown by 60 %)
        uv = torch.rand(500, 2, generator=g) * (size - 1 - 2 * lo) + lo
        back, mass = decode(render(uv[:, None], torch.ones(500, 1), size, sigma)[:, 0])
        err = (back - uv).abs().max().item()
        print(f"\nround trip {size}x{size} sigma {sigma}: max error {err:.6f} px")
        assert err < 1e-3 and (mass > 0).all()
        back_w, _ = decode(render(uv[:, None], torch.ones(500, 1), size, sigma)[:, 0], radius=4)  # windowed variant
        assert (back_w - uv).abs().max().item() < 0.05


def _track(t_len: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A walking skeleton-ish track in px: [T, 33, 3] with confidences, all frames present."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-30, 30, (33, 2)) + np.array([300.0, 200.0])
    t = np.arange(t_len)[:, None, None]
    xy = base[None] + np.array([4.0, 1.0]) * t + rng.normal(0, 2.0, (t_len, 33, 2))
    return np.concatenate([xy, rng.uniform(0.3, 1.0, (t_len, 33, 1))], -1).astype(np.float32), np.ones(t_len, bool)


@pytest.mark.parametrize("t_len,freq", [(23, None), (4, None), (40, 30.0), (1, None)])
def test_refiner_keeps_absent_frames_absent(t_len, freq):
    kps, present = _track(t_len)
    absent = np.arange(t_len) % 5 == 2  # every 5th frame: no pose
    kps[absent], present[absent] = np.nan, False
    ref = StrnRefiner(model=STRN(StrnConfig(layers=1, heads=1)), freq_hz=freq)
    assert isinstance(ref, Refiner) and ref.name == "strn"
    out = ref.refine(kps, present, [None] * t_len)
    assert out.shape == (t_len, 33, 3) and out.dtype == kps.dtype
    assert np.isnan(out[absent]).all()  # never invents a pose where the athlete is absent
    assert np.isfinite(out[present]).all()  # never invents NaN elsewhere
    np.testing.assert_array_equal(out[present, :, 2], kps[present, :, 2])  # confidence passes through


def _moved(model: STRN) -> STRN:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # not the identity: every clip is really moved
            p += 0.01 * torch.randn_like(p)
    return model


def test_refine_many_equals_one_by_one():
    """Clips of different analyses and lengths in shared forward passes give what each gives alone."""
    ref = StrnRefiner(model=_moved(STRN(StrnConfig(layers=1, heads=1))), freq_hz=30.0,
                      smoother={"window": 5, "poly": 1}, batch_windows=7)  # batches straddle clips
    clips = [(*_track(n, seed=n), None) for n in (12, 7, 31, 3, 64)]
    clips[2][0][5:8], clips[2][1][5:8] = np.nan, False  # a gap inside one clip
    together = ref.refine_many(clips)
    assert [t.shape for t in together] == [c[0].shape for c in clips]
    for c, t in zip(clips, together):
        alone = ref.refine(*c)
        assert not np.allclose(alone[c[1], :, :2], c[0][c[1], :, :2])  # refinement did something
        np.testing.assert_allclose(alone, t, atol=1e-3)


def test_refined_keypoints_are_in_original_pixels(heldout_walker):
    """Shipped weights on a held-out walker's blurred run: output near the input in image pixels (a few % of
    the athlete's height), at 10 and 30 fps; moving the input by (dx, dy) px moves the output by the same
    (no heatmap coordinates leak out); absent frames stay absent."""
    a = heldout_walker
    kps, present = a["blur/0"], a["blur/0/present"]
    n, height = len(kps), float(np.median(a["box"][:, 3]))
    for fps in (10.0, 30.0):
        ref = make_refiner("strn", freq_hz=fps)
        out = ref.refine(kps, present, [None] * n)
        assert out.shape == kps.shape and np.isnan(out[~present]).all() and np.isfinite(out[present]).all()
        assert np.abs(out[present, :, :2] - kps[present, :, :2]).mean() < 0.1 * height
        shift = np.array([1500.0, -120.0], np.float32)
        moved = kps.copy()
        moved[..., :2] += shift
        np.testing.assert_allclose(ref.refine(moved, present, [None] * n)[present, :, :2],
                                   out[present, :, :2] + shift, atol=0.05)


def test_switches():
    from shared.settings import Settings

    assert Settings.from_env({}).refiner == "one_euro"  # the default (docs/pose.md, "Default refiner")
    assert Settings.from_env({"COACH_REFINER": "none"}).refiner == "none"  # the switch the pose worker reads
    kps, present = _track(20)
    ident = make_refiner("none")  # COACH_REFINER=none: refinement off
    assert ident.refine(kps, present, [None] * 20) is kps
    model = _moved(STRN(StrnConfig(layers=1, heads=1)))
    with_pass = StrnRefiner(model=model, smoother={"window": 7, "poly": 1}).refine(kps, present, [None] * 20)
    strn_only = StrnRefiner(model=model, smoother={"window": 7, "poly": 1}, smooth=False).refine(kps, present, [None] * 20)
    np.testing.assert_allclose(savgol(strn_only, present, 7, 1), with_pass, atol=1e-4)  # the post-pass and only it
    r = make_refiner("strn", freq_hz=30.0)
    assert isinstance(r, StrnRefiner) and r.freq_hz == 30.0
    w = r.smoother["window"]
    assert r.smoother_window() == round(3 * w) // 2 * 2 + 1  # the same time span at 30 fps as at 10
    assert make_refiner("strn", smooth=False).smoother is None


def test_bad_weights_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no STRN weights at .*nowhere.pt.*train-refiner"):
        make_refiner("strn", weights=tmp_path / "nowhere.pt")
    from services.pose.worker import PoseStage
    from shared.settings import Settings

    s = Settings.from_env({"COACH_REFINER": "strn", "COACH_STRN_WEIGHTS": str(tmp_path / "missing.pt")})
    with pytest.raises(FileNotFoundError, match="missing.pt"):   # the worker fails at start-up, naming the file
        PoseStage(s.refiner, s.strn_weights)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not an STRN checkpoint"):
        StrnRefiner(weights=junk)


def test_savgol_matches_scipy_and_respects_gaps():
    from scipy.signal import savgol_filter

    rng = np.random.default_rng(0)
    k = rng.normal(size=(40, 33, 3)).astype(np.float32)
    p = np.ones(40, bool)
    k[17], p[17] = np.nan, False
    for w, po in ((9, 1), (5, 2), (27, 1)):
        out = savgol(k, p, w, po)
        for s, e in ((0, 17), (18, 40)):
            ww = min(w, (e - s) if (e - s) % 2 else e - s - 1)
            np.testing.assert_allclose(out[s:e, :, :2], savgol_filter(k[s:e, :, :2], ww, po, axis=0, mode="interp"),
                                       atol=1e-4)
        assert np.isnan(out[17]).all() and (out[:, :, 2][p] == k[:, :, 2][p]).all()


# ---------------------------------------------------------------- shipped weights on real held-out video


def test_shipped_refiner_weights_are_in_the_repository():
    """The default pose refiner loads these at start-up: without them the pose worker cannot run,
    so their absence fails the suite instead of skipping the refiner's tests."""
    assert WEIGHTS.exists(), f"{WEIGHTS} is missing: train it with `coach pose train-refiner` (docs/pose.md)"
    model, meta = load_model(str(WEIGHTS))
    assert sum(p.numel() for p in model.parameters()) > 0

@pytest.fixture(scope="module")
def heldout_walker(tmp_path_factory):
    """BlazePose runs of one TEST walker (never trained or tuned on), built here from vtest.avi:
    pseudo ground truth from clean frames, inputs from blurred / occluded frames (~15 s)."""
    if not os.path.exists(VTEST):
        pytest.fail(f"{VTEST} is missing: scripts/setup.sh installs Debian's opencv-doc")
    from services.pose.lab import strn_data as D

    name = "w695"
    assert name in D.SPLITS["test"]
    cache = D.cache_dir()
    root = cache / f"walkers-{D._recipe_key()}"
    if not (root / f"{name}.npz").exists():  # not built on this machine: build this walker only, in tmp
        cache = tmp_path_factory.mktemp("strn")
        D.build_cache(cache, [name], log=lambda *_: None)
    return D.load_walkers_named([name], cache)[name]


def test_shipped_weights_improve_pck_and_smoothness_on_heldout_blurred_video(heldout_walker):
    from services.pose.lab.strn_train import Run, clipwise, pooled

    a = heldout_walker
    runs = [Run("w695", v, a[f"{v}/{s}"], a[f"{v}/{s}/present"], a["gt"], a["gt_present"], a["box"],
                int(a["first_frame"])) for v in ("blur", "mixed") for s in (0, 1)]
    model, meta = load_model(str(WEIGHTS))
    assert sum(p.numel() for p in model.parameters()) * 2 < 2_000_000 and WEIGHTS.stat().st_size < 2_000_000
    # scored as the pose worker runs it: clip by clip (a clip starts at video frame 704), frames without a pose wrong
    raw = pooled(runs, [r.kps for r in runs])
    out = pooled(runs, [clipwise(r, StrnRefiner(freq_hz=10.0)) for r in runs])  # the shipped pipeline
    alone = pooled(runs, [clipwise(r, StrnRefiner(freq_hz=10.0, smooth=False)) for r in runs])
    print(f"\nw695 blur+mixed: PCK@0.2 raw {raw['pck02']:.3f} -> strn {alone['pck02']:.3f} -> shipped {out['pck02']:.3f}; "
          f"accel {raw['accel']:.4f} -> {alone['accel']:.4f} -> {out['accel']:.4f}; left-right spread / gt {out['lr_ratio']:.3f}")
    # measured (clip-wise, missing poses wrong; coverage 0.815): PCK 0.696 -> 0.727 (STRN) -> 0.726 (shipped);
    # accel 0.137 -> 0.123 -> 0.086 (whole-run refinement with missing frames dropped read 0.854 -> 0.891 -> 0.895)
    assert alone["pck02"] > raw["pck02"] + 0.02 and out["pck02"] > raw["pck02"] + 0.02
    assert alone["accel"] < raw["accel"] and out["accel"] < 0.7 * raw["accel"]
    # the network does not hedge left/right pairs toward the midline (the v0 model: 0.835); the post-pass, which
    # averages over frames where BlazePose's left/right labels flicker, shrinks them somewhat (measured 0.874)
    assert alone["lr_ratio"] > 0.85 and out["lr_ratio"] > 0.75


# ---------------------------------------------------------------- the evaluation protocol (docs/pose.md)

def _run(n: int = 10, first_frame: int = 0):
    from services.pose.lab.strn_train import Run

    rng = np.random.default_rng(3)
    gt = np.zeros((n, 33, 3), np.float32)
    gt[..., :2] = 100 + rng.normal(0, 10, (n, 33, 2))
    gt[..., 2] = 1.0
    box = np.tile(np.array([50.0, 50.0, 50.0, 100.0], np.float32), (n, 1))
    return Run("wX", "clean", gt.copy(), np.ones(n, bool), gt, np.ones(n, bool), box, first_frame)


def test_a_frame_with_ground_truth_and_no_predicted_pose_is_wrong_on_every_joint():
    from services.pose.lab.strn_train import pooled

    run = _run(10)
    pred = run.kps.copy()
    pred[3] = np.nan  # the degraded model found nobody in frame 3
    run.present[3] = False
    m = pooled([run], [pred])
    assert m["frames"] == 10 and m["pck02"] == 0.9 and m["coverage"] == 0.9
    assert all(v == 0.9 for v in m["groups"].values())
    pred[5] += 40.0  # a pose far from the truth (40 px > 0.2 x 100 px) is wrong too, but covered
    m = pooled([run], [pred])
    assert m["pck02"] == 0.8 and m["coverage"] == 0.9


def test_clips_are_cut_where_the_worker_cuts_the_video():
    from services.pose.lab.strn_train import CLIP_FRAMES, run_pieces
    from shared.settings import Settings

    assert CLIP_FRAMES == Settings().clip_frames == 32
    assert run_pieces(0, 64) == [(0, 32), (32, 64)]
    assert run_pieces(695, 27) == [(0, 9), (9, 27)]  # w695: video frames 695-721, a clip starts at 704
    assert run_pieces(704, 5) == [(0, 5)]


def test_w635_and_w675_are_one_person_and_never_split():
    from services.pose.lab import strn_data as D

    assert ["w635", "w675"] in D.persons(D.SPLITS["test"])
    where = {n: k for k, v in D.SPLITS.items() for n in v}
    for group in D.SPLIT_TOGETHER:
        assert len({where[n] for n in group}) == 1, group
    leaks = D.identity_leaks()
    assert not any(set(g) <= {n for by in leaks for ns in by.values() for n in ns} for g in D.SPLIT_TOGETHER)
    # the judged cross-split identities are reported, not hidden (docs/pose.md, "Identity")
    assert {"test": ["w174"], "train": ["w247"]} in leaks


class _StubEstimator:
    """BlazePose stand-in returning recorded keypoints: the box's x carries the video frame index."""

    def __init__(self, kps: np.ndarray, present: np.ndarray, first_frame: int):
        self.kps, self.present, self.first = kps, present, first_frame

    def new_session(self):   # no state: the recorded run does not depend on what came before
        return object()

    def end_session(self, session):
        pass

    def estimate_sequence(self, frames, boxes, session=None):
        from services.pose.blazepose import PoseSequence

        seq = PoseSequence.empty(len(boxes))
        for t, b in enumerate(boxes):
            i = int(b[0]) - self.first if b is not None else -1
            if 0 <= i < len(self.kps) and self.present[i]:
                seq.keypoints_px[t], seq.world_m[t], seq.present[t] = self.kps[i], 0.0, True
        return seq


def _worker_keypoints(run, clip_order: str = "in order"):
    """The real PoseStage.handle over the clips of a 10 fps video holding the run (BlazePose replaced by
    the recorded run) -> (stored keypoints [n, 33, 2] of the run's frames, the stored documents)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import cv2

    from services.pose.sessions import PoseSessions
    from services.pose.worker import PoseStage
    from shared.messages import FrameRef, TrackedClip, VideoInfo
    from shared.settings import Settings
    from shared.store import keys

    s = Settings.from_env({"COACH_REFINER": "strn"})
    first, n = run.first_frame, len(run.kps)
    stage = PoseStage.__new__(PoseStage)  # the real handle(), BlazePose replaced by the recorded run
    stage.estimator, stage.pose_model = _StubEstimator(run.kps, run.present, first), "stub"
    stage.sessions = PoseSessions(stage.estimator, 2)
    stage.refiner_name, stage.refiner_params = "strn", {"weights": None}
    stage.refiner = make_refiner("strn", weights=None)
    stage.fetch, stage.lock = ThreadPoolExecutor(2), threading.Lock()
    store = MemoryStore()
    store.put_bytes("f", cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    ctx = SimpleNamespace(store=store, settings=s, status=lambda *x, **k: None, emit=lambda *x, **k: None)
    aid, n_video = "b" * 32, -(-(first + n) // s.clip_frames) * s.clip_frames  # whole clips
    clips = []
    for c0 in range(first // s.clip_frames * s.clip_frames, n_video, s.clip_frames):  # the clips holding the run
        frames = [FrameRef(index=i, t_s=i / 10, frame_key="f",
                           bbox_px=[float(i), 0.0, 10.0, 10.0] if first <= i < first + n else None)
                  for i in range(c0, c0 + s.clip_frames)]
        clips.append(TrackedClip(analysis_id=aid, sport="run", clip_index=c0 // s.clip_frames,
                                 video=VideoInfo(fps=10.0, width=768, height=576, frames=n_video), frames=frames))
    for c in {"in order": clips, "reversed": clips[::-1], "twice": clips + clips[::-1]}[clip_order]:
        stage.handle(c, ctx)
    docs = {k: store.get_json(k) for k in store.list(keys.poses_prefix(aid))}
    stored = {f["index"]: f["keypoints"] for d in docs.values() for f in d["frames"]}
    kps = np.array([[[np.nan] * 2 if p is None else p[:2] for p in stored[first + t]] if stored[first + t] else
                    np.full((33, 2), np.nan) for t in range(n)], np.float64)
    return kps, docs


@pytest.mark.parametrize("clip_order", ["in order", "reversed", "twice"])
def test_clipwise_evaluation_equals_what_the_pose_worker_stores(heldout_walker, clip_order):
    """The evaluation scores the refiner exactly as the worker runs it: the worker's stored keypoints for
    the clips of a video holding a held-out walker equal clipwise() on that walker's run. In order, each
    clip takes the previous clip's stored raw tail as context; a clip that arrives before its predecessor
    is refined without (at-least-once delivery: out of order or twice), and a redelivered clip gets the
    same result as the first time."""
    from services.pose.lab.strn_train import Run, clipwise

    a = heldout_walker
    run = Run("w695", "blur", a["blur/0"], a["blur/0/present"], a["gt"], a["gt_present"], a["box"], int(a["first_frame"]))
    worker, docs = _worker_keypoints(run, clip_order)
    ours = clipwise(run, make_refiner("strn", freq_hz=10.0), context=clip_order != "reversed")[..., :2]
    assert np.array_equal(np.isnan(worker), np.isnan(ours))
    assert np.nanmax(np.abs(worker - ours)) < 0.02  # the stored document rounds to 0.01 px
    used = sorted(d["context_frames"] for d in docs.values())
    assert used == ([0, 0] if clip_order == "reversed" else [0, 10])  # w695 spans video clips 21 and 22
    other = clipwise(run, make_refiner("strn", freq_hz=10.0), context=clip_order == "reversed")[..., :2]
    assert np.nanmax(np.abs(other - ours)) > 0.05  # context changes the result: the check above can fail
    whole = StrnRefiner(freq_hz=10.0).refine(run.kps, run.present, None)[..., :2]
    assert np.nanmax(np.abs(whole - ours)) > 0.1  # and neither is whole-run refinement (clip at video frame 704)
