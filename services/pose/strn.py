"""Spatial-temporal relation network (STRN, AI Coach paper sec. 3.2 / 5.1): refines BlazePose keypoints over a clip.

The paper refines a CNN's coarse heatmaps of T frames. We have no heatmaps from BlazePose (it
regresses coordinates), so coarse heatmaps are RENDERED from its keypoints: one Gaussian per
joint, amplitude = the joint's confidence, in a box-normalised frame around the athlete. Then,
as in the paper:

  Relation module (one "head"), input f [T, C, H, W] (C joints):
    spatial branch   per frame, relations among the joints: reduce f to a small vector (per-channel
                     moments + 4x4 pooled map), two FC layers -> offsets [T, C, 2];
    temporal branch  per joint, relations across the T frames: transpose to [C, T, H, W], a group
                     convolution (one group per joint, T input channels) reduces it, an FC network
                     -> offsets [C, T, 2];
    each branch moves every channel by its own (dx, dy) by bilinear sampling (grid_sample):
    out(u, v) = f(u - dx, v - dy), i.e. the peak moves by +(dx, dy); zero offsets = identity;
    residual connection: the branches' CHANGES (warp(f) - f) are concatenated and a 1x1
    convolution (grouped by joint) reduces them to C channels, added back to f.
  Heads: in a layer, the heads' changes are summed (one skip connection per layer).
  Layers: stacked; a loss after every layer (intermediate supervision, see strn_train.py).

Keypoints come back by sub-pixel decoding (soft-argmax: the centroid of the positive heatmap, exact
for a sampled Gaussian) and are mapped back to original pixels. 17 joints are
refined (the paper's 13 + heels and foot tips, which the ski judge uses); the 16 face/hand
landmarks move with their refined parent (nose, wrist).

Clips of any length: sliding windows of T frames (stride T/2, overlap blended with triangular
weights); shorter clips are padded with absent frames. At a frame rate well above the training
rate (10 fps), windows are dilated (every d-th frame, d = round(fps / 10)) so each window spans
the same time as in training. Absent frames (present=False) stay absent (all-NaN rows); they
enter the network as empty heatmaps, so their neighbours are refined from the frames that are
there. Confidence passes through unchanged.

The shipped refiner ("strn") is the STRN followed by a light Savitzky-Golay pass (window / order tuned
on the validation walkers, stored in the checkpoint; smooth=False = the STRN alone): see docs/pose.md
for why, and for what each part measures on held-out video.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.skeleton import LANDMARK_INDEX, NUM_LANDMARKS

WEIGHTS = Path(__file__).with_name("weights") / "strn.pt"

# The refined joints (heatmap channels) and, for every other landmark, the channel it moves with.
JOINTS: tuple[str, ...] = (
    "nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
JOINT_IDX = np.array([LANDMARK_INDEX[n] for n in JOINTS])


def _parent(name: str) -> str:
    for side in ("left", "right"):
        if name.startswith(f"{side}_") and any(k in name for k in ("pinky", "index", "thumb")) and "foot" not in name:
            return f"{side}_wrist"
    return "nose"  # eyes, ears, mouth


CARRY = np.array([JOINTS.index(n) if n in JOINTS else JOINTS.index(_parent(n))
                  for n in LANDMARK_INDEX])  # [33] -> channel whose correction a landmark takes


@dataclass
class StrnConfig:
    T: int = 10                # frames per window
    size: int = 16             # heatmap side (H = W)
    sigma: float = 1.0         # Gaussian std of the rendered heatmaps, heatmap px
    layers: int = 3
    heads: int = 2
    hidden: int = 128          # FC width of both branches
    group_ch: int = 4          # temporal group-conv output channels per joint
    spatial: bool = True
    temporal: bool = True
    side_factor: float = 1.6   # heatmap frame side = side_factor x the athlete's median extent
    fps: float = 10.0          # frame rate of the training data (windows are dilated above it)


# ---------------------------------------------------------------- heatmaps

def render(uv: torch.Tensor, amp: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """uv [..., C, 2] heatmap coords (pixel centres at integers), amp [..., C] -> heatmaps [..., C, size, size]."""
    g = torch.arange(size, dtype=uv.dtype, device=uv.device)
    gx = torch.exp(-(g - uv[..., 0:1]) ** 2 / (2 * sigma ** 2))  # [..., C, W]
    gy = torch.exp(-(g - uv[..., 1:2]) ** 2 / (2 * sigma ** 2))  # [..., C, H]
    return amp[..., None, None] * gy[..., :, None] * gx[..., None, :]  # [..., C, H, W]


def decode(hm: torch.Tensor, radius: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel peaks (soft-argmax): centroid of relu(hm), over the whole map or, with a radius, over a
    (2r+1)^2 window around the argmax. Differentiable in hm. hm [..., H, W] -> (uv [..., 2], mass [...]).
    For a sampled Gaussian (sigma >= 1) away from the border the centroid is its centre to ~1e-4 px.
    The whole-map centroid is what the network is trained through (every mode gets gradient)."""
    h, w = hm.shape[-2:]
    p = hm.clamp(min=0)
    gy = torch.arange(h, dtype=hm.dtype, device=hm.device)
    gx = torch.arange(w, dtype=hm.dtype, device=hm.device)
    if radius is not None:
        am = hm.flatten(-2).argmax(-1)  # [...]
        py, px = (am // w).to(hm.dtype), (am % w).to(hm.dtype)
        wy = ((gy - py[..., None]).abs() <= radius).to(hm.dtype)  # [..., H]
        wx = ((gx - px[..., None]).abs() <= radius).to(hm.dtype)  # [..., W]
        p = p * wy[..., :, None] * wx[..., None, :]  # [..., H, W]
    mx, my = p.sum(-2), p.sum(-1)  # marginals [..., W], [..., H]
    mass = mx.sum(-1)
    m = mass.clamp(min=1e-8)
    return torch.stack([(mx * gx).sum(-1) / m, (my * gy).sum(-1) / m], -1), mass


def warp(hm: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Bilinear per-channel translation: hm [N, C, H, W], offsets [N, C, 2] (dx, dy heatmap px) ->
    out(u, v) = hm(u - dx, v - dy): every channel's content moves by its own +(dx, dy)."""
    n, c, h, w = hm.shape
    base = _base_grid(h, w, hm.dtype, hm.device)  # [1, H, W, 2] output pixel centres in grid_sample units
    scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], dtype=hm.dtype, device=hm.device)
    grid = base - (offsets.reshape(n * c, 1, 1, 2) * scale)  # [N*C, H, W, 2] source of every output pixel
    out = F.grid_sample(hm.reshape(n * c, 1, h, w), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)  # [N*C, 1, H, W]
    return out.reshape(n, c, h, w)


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    gy, gx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=dtype, device=device),
                            torch.linspace(-1, 1, w, dtype=dtype, device=device), indexing="ij")
    return torch.stack([gx, gy], -1)[None]  # [1, H, W, 2] (x, y)


def moments(hm: torch.Tensor) -> torch.Tensor:
    """Per-channel summary of relu(hm) [N, C, H, W] -> [N, C, 4]: centroid x, y in [-1, 1], log mass, spread."""
    n, c, h, w = hm.shape
    p = hm.clamp(min=0)
    px, py = p.sum(-2), p.sum(-1)  # marginals [N, C, W], [N, C, H]
    m = px.sum(-1) + 1e-4  # [N, C]
    gx = torch.linspace(-1, 1, w, dtype=hm.dtype, device=hm.device)
    gy = torch.linspace(-1, 1, h, dtype=hm.dtype, device=hm.device)
    mx, my = (px * gx).sum(-1) / m, (py * gy).sum(-1) / m
    var = ((px * gx ** 2).sum(-1) + (py * gy ** 2).sum(-1)) / m - mx ** 2 - my ** 2
    return torch.stack([mx, my, torch.log(m), (var.clamp(min=0) + 1e-6).sqrt()], -1)


# ---------------------------------------------------------------- network

def _near_zero(layer: nn.Linear) -> None:
    """Offsets start near zero (identity module) but not at exactly zero, so the layers before get gradient."""
    nn.init.normal_(layer.weight, std=1e-3)
    nn.init.zeros_(layer.bias)


class SpatialBranch(nn.Module):
    """Relations among the C joints of one frame: reduced maps -> FC -> FC -> per-channel offsets [B, T, C, 2]."""

    def __init__(self, cfg: StrnConfig, c: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c * (4 + 16), cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, c * 2))
        _near_zero(self.fc[-1])  # ~zero offsets at init: the module starts as (almost) the identity

    def forward(self, mo: torch.Tensor, half: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """mo [B*T, C, 4] moments, half [B*T, C, H/2, W/2] pooled maps."""
        bt, c = mo.shape[:2]
        z = torch.cat([mo, F.adaptive_avg_pool2d(half, 4).flatten(2)], -1)  # [B*T, C, 4 + 16]: reduced dims
        return self.fc(z.flatten(1)).reshape(b, t, c, 2)


class TemporalBranch(nn.Module):
    """Relations of one joint across the T frames: [C, T, H, W] -> group conv (a group per joint) -> FC -> offsets."""

    def __init__(self, cfg: StrnConfig, c: int):
        super().__init__()
        k = cfg.group_ch
        self.conv = nn.Conv2d(c * cfg.T, c * k, 3, stride=2, padding=1, groups=c)  # T channels in per joint
        self.fc = nn.Sequential(nn.Linear(k * 16 + cfg.T * 4, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.T * 2))
        _near_zero(self.fc[-1])

    def forward(self, mo: torch.Tensor, half: torch.Tensor, b: int, t: int) -> torch.Tensor:
        bt, c, h2, w2 = half.shape
        ct = half.reshape(b, t, c, h2, w2).transpose(1, 2).reshape(b, c * t, h2, w2)  # [B, C*T, H/2, W/2]
        g = F.adaptive_avg_pool2d(F.relu(self.conv(ct)), 4).reshape(b, c, -1)  # [B, C, k*16]
        mo_t = mo.reshape(b, t, c, 4).transpose(1, 2).reshape(b, c, t * 4)  # [B, C, T*4]
        off = self.fc(torch.cat([g, mo_t], -1)).reshape(b, c, t, 2)  # [B, C, T, 2]
        return off.transpose(1, 2)  # [B, T, C, 2]


class RelationModule(nn.Module):
    """One head: spatial and/or temporal branch, each moving every channel of f by its offsets; returns
    the CHANGE to f (residual form): a 1x1 convolution over the concatenated (warp(f) - f), grouped by
    joint (joint j's output mixes only the branches' joint-j channels) -> [B, T, C, H, W]."""

    def __init__(self, cfg: StrnConfig, c: int, share: float):
        super().__init__()
        self.spatial = SpatialBranch(cfg, c) if cfg.spatial else None
        self.temporal = TemporalBranch(cfg, c) if cfg.temporal else None
        nb = int(cfg.spatial) + int(cfg.temporal)
        # The grouped 1x1 conv's weights [branches, C] (no bias: empty = absent frames stay empty); init: the
        # mean of the branches' changes, split among the heads. (A full 1x1 conv mixing joints cost a quarter
        # of the training time on the 2-core CPU; cross-joint relations are the spatial branch's job.)
        self.fuse = nn.Parameter(torch.full((nb, c), share / nb))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = f.shape
        flat = f.reshape(b * t, c, h, w)
        mo, half = moments(flat), F.avg_pool2d(flat, 2)  # shared by both branches: [B*T, C, 4], [B*T, C, H/2, W/2]
        out = 0
        for i, br in enumerate(x for x in (self.spatial, self.temporal) if x is not None):
            off = br(mo, half, b, t).reshape(b * t, c, 2)  # [B*T, C, 2]
            out = out + self.fuse[i, :, None, None] * (warp(flat, off) - flat)  # [B*T, C, H, W]
        return out.reshape(b, t, c, h, w)


class STRN(nn.Module):
    """layers x heads relation modules on heatmaps [B, T, C, H, W]; returns every layer's output."""

    def __init__(self, cfg: StrnConfig, c: int = len(JOINTS)):
        super().__init__()
        if not (cfg.spatial or cfg.temporal):
            raise ValueError("STRN needs the spatial or the temporal branch")
        self.cfg = cfg
        self.layers = nn.ModuleList(
            nn.ModuleList(RelationModule(cfg, c, 1.0 / cfg.heads) for _ in range(cfg.heads)) for _ in range(cfg.layers))

    def forward(self, f: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for heads in self.layers:
            f = f + sum(head(f) for head in heads)  # heads summed, one residual connection per layer
            outs.append(f)
        return outs


# ---------------------------------------------------------------- keypoints <-> heatmap frame

def window_frame(kps: np.ndarray, present: np.ndarray, side_factor: float) -> tuple[np.ndarray, float] | None:
    """Normalisation frame of one window: kps [T, 33, 3] px -> (centre [T, 2] px, side px) or None.

    The athlete's box, robustly: per present frame the median of the refined joints (centre) and
    their larger extent; centre follows a straight line fitted over the window's present frames
    (a smooth frame: jitter of the box must not become jitter of the heatmaps), side = side_factor
    x the median extent."""
    xy = kps[:, JOINT_IDX, :2]  # [T, C, 2]
    ok = present & np.isfinite(xy).all(axis=(1, 2))
    if not ok.any():
        return None
    t = np.nonzero(ok)[0].astype(np.float64)
    c = np.median(xy[ok], axis=1)  # [n, 2]
    ext = (xy[ok].max(axis=1) - xy[ok].min(axis=1)).max(axis=1)  # [n]
    side = side_factor * max(float(np.median(ext)), 4.0)
    tt = np.arange(len(kps), dtype=np.float64)
    if len(t) >= 2:
        a = np.polyfit(t, c, 1)  # [2, 2]: slope, intercept per coordinate
        centre = tt[:, None] * a[0] + a[1]
    else:
        centre = np.repeat(c, len(kps), axis=0)
    return centre, side


def to_heatmap(xy: np.ndarray, centre: np.ndarray, side: float, size: int) -> np.ndarray:
    """px [T, C, 2] -> heatmap coords (pixel centres at integers 0..size-1)."""
    return (xy - centre[:, None, :]) / side * size + (size - 1) / 2


def from_heatmap(uv: np.ndarray, centre: np.ndarray, side: float, size: int) -> np.ndarray:
    return (uv - (size - 1) / 2) * side / size + centre[:, None, :]


def window_inputs(kps: np.ndarray, present: np.ndarray, cfg: StrnConfig,
                  side_factor: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """One window's network input: (uv [T, C, 2], amp [T, C], centre [T, 2], side) or None if nobody is there.
    amp = confidence where the frame is present and the joint finite and inside the frame, else 0."""
    fr = window_frame(kps, present, side_factor or cfg.side_factor)
    if fr is None:
        return None
    centre, side = fr
    uv = to_heatmap(kps[:, JOINT_IDX, :2], centre, side, cfg.size)
    conf = np.clip(np.nan_to_num(kps[:, JOINT_IDX, 2], nan=0.0), 0.0, 1.0)
    inside = np.isfinite(uv).all(-1) & (uv > -1).all(-1) & (uv < cfg.size).all(-1)
    amp = np.where(present[:, None] & inside, conf, 0.0)
    return np.nan_to_num(uv, nan=0.0).astype(np.float32), amp.astype(np.float32), centre, side


def triangular(t: int) -> np.ndarray:
    """Blending weights of a window's frames: highest in the middle (more context on both sides)."""
    i = np.arange(t)
    return 1.0 + np.minimum(i, t - 1 - i)


# ---------------------------------------------------------------- loading and the refiner

def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def save_model(model: STRN, path: Path, meta: dict) -> None:
    """Weights stored as float16 (halves the file; upcast on load), config and provenance beside them."""
    sd = {k: v.detach().cpu().half() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(model.cfg), "state_dict": sd, "meta": meta}, path)


@functools.lru_cache(maxsize=4)
def load_model(path: str = str(WEIGHTS), device: str | None = None) -> tuple[STRN, dict]:
    """(model in eval mode on the device, meta); cached per (path, device), so make_refiner per clip is cheap."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = STRN(StrnConfig(**ck["config"]))
    model.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
    return model.to(pick_device(device)).eval(), ck.get("meta", {})


def segments(present: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of consecutive present frames."""
    out, s = [], None
    for t, p in enumerate(list(np.asarray(present, bool)) + [False]):
        if p and s is None:
            s = t
        elif not p and s is not None:
            out.append((s, t))
            s = None
    return out


@functools.lru_cache(maxsize=64)
def _savgol_matrix(window: int, poly: int) -> np.ndarray:
    """[window, window] hat matrix of a least-squares polynomial fit: row k = the weights giving the fit's
    value at position k of the window from the window's samples."""
    x = np.arange(window, dtype=np.float64) - window // 2
    v = np.vander(x, poly + 1, increasing=True)  # [w, p+1]
    return v @ np.linalg.pinv(v)  # [w, w]


def savgol(kps: np.ndarray, present: np.ndarray, window: int, poly: int) -> np.ndarray:
    """Savitzky-Golay smoothing of the x, y tracks, per run of present frames (nothing is averaged across a
    gap); the window shrinks (odd) to fit short runs, runs shorter than poly + 2 frames are left as they are.
    Edges as scipy.signal.savgol_filter(mode="interp"): the polynomial fitted to the first / last window.
    (numpy only: the CPU pose image needs no scipy.) A joint with a NaN anywhere in a run keeps its raw
    values over that run (NaN stays NaN and never spreads to its neighbours)."""
    out = np.array(kps, copy=True)
    window = int(window) // 2 * 2 + 1  # odd (an even window is taken as the next odd one)
    for s, e in segments(present):
        n = e - s
        w = min(window, n if n % 2 else n - 1)
        if w < poly + 2 or w < 3:
            continue
        h = _savgol_matrix(w, poly)
        x = out[s:e, :, :2].astype(np.float64)  # [n, J, 2]
        bad = ~np.isfinite(x)
        x0 = np.where(bad, 0.0, x)
        c = w // 2
        y = np.empty_like(x0)
        # interior: centred windows (row c of the hat matrix as a correlation kernel)
        win = np.lib.stride_tricks.sliding_window_view(x0, w, axis=0)  # [n-w+1, J, 2, w]
        y[c:n - c] = win @ h[c]
        y[:c] = np.einsum("kj,jab->kab", h[:c], x0[:w])  # first window's fit at its first c positions
        y[n - c:] = np.einsum("kj,jab->kab", h[c + 1:], x0[n - w:])
        # joints missing anywhere in the run: keep their raw values (NaN stays NaN)
        miss = bad.any(axis=0)  # [J, 2]
        y[:, miss] = x[:, miss]
        out[s:e, :, :2] = y.astype(out.dtype)
    return out


class StrnRefiner:
    """services.pose.refine.Refiner backed by the STRN (COACH_REFINER=strn).

    The shipped pipeline is the STRN followed by a light Savitzky-Golay pass (window and polynomial order
    tuned on the VALIDATION walkers, stored in the checkpoint's meta["smoother"]; see docs/pose.md):
    smooth=False gives the STRN alone.
    freq_hz: the video's frame rate (as for one_euro); above the training rate the windows are
    dilated and the smoother's window is scaled to the same time span. weights: a checkpoint (default
    services/pose/weights/strn.pt; the pose worker passes COACH_STRN_WEIGHTS). device: "cuda" / "cpu" (default: CUDA when
    present). model: an STRN instead of a checkpoint (then smoother= gives the post-pass, default none).
    smoother: {"window": frames at the training rate, "poly": order} overriding the checkpoint's.
    batch_windows: windows per forward pass (clips of several analyses share batches: refine_many)."""

    name = "strn"

    def __init__(self, freq_hz: float | None = None, weights: str | os.PathLike | None = None,
                 device: str | None = None, model: STRN | None = None, batch_windows: int = 64,
                 smooth: bool = True, smoother: dict | None = None) -> None:
        if model is None:
            path = str(weights or WEIGHTS)
            if not Path(path).is_file():
                raise FileNotFoundError(f"no STRN weights at {path}: `coach pose train-refiner` makes them "
                                        "(or set COACH_STRN_WEIGHTS, or COACH_REFINER=none)")
            try:
                model, self.meta = load_model(path, device)
            except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which and why
                raise ValueError(f"{path}: not an STRN checkpoint ({type(exc).__name__}: {exc})") from exc
        else:
            self.meta = {}
        self.model, self.cfg = model, model.cfg
        self.device = next(model.parameters()).device
        self.freq_hz = freq_hz
        self.batch_windows = batch_windows
        spec = smoother if smoother is not None else self.meta.get("smoother")
        self.smoother = dict(spec) if (smooth and spec and spec.get("window", 0) >= 3) else None

    def smoother_window(self) -> int | None:
        """The post-pass window in frames at this refiner's frame rate (odd), or None without one."""
        if self.smoother is None:
            return None
        w = self.smoother["window"] * (self.freq_hz / self.cfg.fps if self.freq_hz else 1.0)
        return max(3, int(round(w)) // 2 * 2 + 1)

    def refine(self, keypoints_px: np.ndarray, present: np.ndarray, boxes_px: Sequence[np.ndarray | None]) -> np.ndarray:
        return self.refine_many([(keypoints_px, present, boxes_px)])[0]

    def _windows(self, n: int) -> list[np.ndarray]:
        """Frame indices of the windows over n frames (-1 = padding), dilated at high frame rates."""
        t = self.cfg.T
        d = max(1, round(self.freq_hz / self.cfg.fps)) if self.freq_hz else 1
        out = []
        for phase in range(min(d, n)):
            idx = np.arange(phase, n, d)
            if len(idx) <= t:
                out.append(np.concatenate([idx, -np.ones(t - len(idx), int)]))
                continue
            starts = list(range(0, len(idx) - t + 1, max(1, t // 2)))
            if starts[-1] != len(idx) - t:
                starts.append(len(idx) - t)
            out.extend(idx[s:s + t] for s in starts)
        return out

    def refine_many(self, items: Sequence[tuple[np.ndarray, np.ndarray, Sequence[np.ndarray | None] | None]]) -> list[np.ndarray]:
        """Clips of one or many analyses (any lengths) refined together: [(kps [T_i, 33, 3] px, present [T_i],
        boxes or None), ...] -> [[T_i, 33, 3], ...] px. The windows of all the clips go through the network in
        shared batches of batch_windows (one forward pass per batch); the result for each clip is the same as
        refining it alone."""
        return self.refine_batch(items)

    @torch.inference_mode()
    def refine_batch(self, items: Sequence[tuple[np.ndarray, np.ndarray, Sequence[np.ndarray | None] | None]]) -> list[np.ndarray]:
        """refine_many (the name the training code uses).
        Boxes are accepted for the Refiner protocol but not needed: each window's frame is the athlete's
        own robust keypoint box (window_frame), which exists exactly where there is something to refine."""
        cfg = self.cfg
        jobs = []  # (clip number, frame indices [T] (-1 = padding), centre [T, 2], side, amp [T, C])
        uvs, amps = [], []
        clips = []
        for i, (kps, present, _boxes) in enumerate(items):
            kps = np.asarray(kps, dtype=np.float32)
            present = np.asarray(present, dtype=bool) & np.isfinite(kps[..., :2]).any(axis=(1, 2))
            clips.append((kps, present))
            for idx in self._windows(len(kps)):
                real = idx >= 0
                wk = np.full((cfg.T, NUM_LANDMARKS, 3), np.nan, np.float32)
                wk[real] = kps[idx[real]]
                wp = np.zeros(cfg.T, bool)
                wp[real] = present[idx[real]]
                win = window_inputs(wk, wp, cfg)
                if win is None:
                    continue
                uv, amp, centre, side = win
                jobs.append((i, idx, centre, side, amp))
                uvs.append(uv)
                amps.append(amp)
        acc = [np.zeros((len(k), len(JOINTS), 2)) for k, _ in clips]  # weighted sums of refined px
        wsum = [np.zeros((len(k), len(JOINTS))) for k, _ in clips]
        tri = triangular(cfg.T)
        for s in range(0, len(jobs), self.batch_windows):
            uv = torch.from_numpy(np.stack(uvs[s:s + self.batch_windows])).to(self.device)  # [B, T, C, 2]
            amp = torch.from_numpy(np.stack(amps[s:s + self.batch_windows])).to(self.device)  # [B, T, C]
            hm = self.model(render(uv, amp, cfg.size, cfg.sigma))[-1]  # [B, T, C, H, W]
            out_uv = decode(hm)[0].cpu().numpy()  # [B, T, C, 2]
            for (i, idx, centre, side, a), o in zip(jobs[s:s + self.batch_windows], out_uv):
                xy = from_heatmap(o, centre, side, cfg.size)  # [T, C, 2] px
                use = (idx >= 0)[:, None] & (a > 0)  # refined where the input was usable
                w = tri[:, None] * use
                np.add.at(acc[i], idx[idx >= 0], (w[..., None] * np.nan_to_num(xy))[idx >= 0])
                np.add.at(wsum[i], idx[idx >= 0], w[idx >= 0])
        results = []
        for (kps, present), a, w in zip(clips, acc, wsum):
            out = kps.copy()
            raw = kps[:, JOINT_IDX, :2]
            ok = w > 0  # [T, C]
            delta = np.where(ok[..., None], a / np.maximum(w, 1e-9)[..., None] - raw, 0.0)  # [T, C, 2]
            out[..., :2] = kps[..., :2] + delta[:, CARRY]  # face/hand landmarks take their parent's correction
            out[~present] = kps[~present]  # absent frames untouched (NaN rows stay NaN)
            if self.smoother is not None:
                out = savgol(out, present, self.smoother_window(), int(self.smoother.get("poly", 1)))
            results.append(out.astype(kps.dtype))
        return results
