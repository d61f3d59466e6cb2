"""The STRN's CUDA path, checked on a CPU-only machine: which device it picks, and the dtypes at each
hand-over (float16 weights on disk, float32 in the network and back out, as the pose worker stores them)."""
from __future__ import annotations

import numpy as np
import torch

from services.pose.strn import STRN, StrnConfig, StrnRefiner, load_model, pick_device, save_model

torch.set_num_threads(1)


def test_the_device_is_cuda_exactly_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
    assert pick_device("cpu").type == "cpu"            # an explicit choice wins
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device().type == "cpu"


def test_half_precision_weights_load_as_float32_and_refine_in_float32(tmp_path):
    torch.manual_seed(0)
    model = STRN(StrnConfig(T=5, size=16, layers=1, heads=1))
    path = tmp_path / "tiny.pt"
    save_model(model, path, {"note": "test"})
    stored = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}   # half the file
    load_model.cache_clear()
    loaded, meta = load_model(str(path), "cpu")
    assert meta == {"note": "test"}
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert next(loaded.parameters()).device.type == "cpu"
    # the upcast weights are the saved ones rounded to float16, nothing else
    for name, p in loaded.state_dict().items():
        assert torch.equal(p, model.state_dict()[name].half().float()), name

    rng = np.random.default_rng(0)
    t = 12
    base = rng.uniform(100, 200, (33, 2))
    kps = np.concatenate([base + rng.normal(0, 1.5, (t, 33, 2)), np.full((t, 33, 1), 0.9)], axis=2)
    present = np.ones(t, bool)
    refiner = StrnRefiner(freq_hz=10.0, weights=path, device="cpu")
    for dtype in (np.float32, np.float64):
        out = refiner.refine(kps.astype(dtype), present, [None] * t)
        assert out.dtype == np.float32 and out.shape == kps.shape
        assert np.isfinite(out[..., :2]).all()
        # a small network with random weights moves points within the window frame, not off the image
        assert np.abs(out[..., :2] - kps[..., :2]).max() < 200
    load_model.cache_clear()
