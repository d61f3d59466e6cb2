"""Repetition quality over time: stacked LSTM + temporal attention (Zhang et al., "Sports pose
estimation based on LSTM and attention mechanism"), one model per exercise pack.

    window of joint features x_1..x_L  ->  2-layer LSTM  ->  h_1..h_L
    beta_i  = v^T tanh(W h_bar + U h_i + b)        h_bar = mean_i h_i          (paper eq. 10)
    alpha   = softmax_i(beta)                      sums to 1 over time
    c       = sum_i alpha_i h_i                                                (eq. 11)
    y       = softmax(W_c c + b_c) over {standard, non-standard}               (eq. 12)
    loss    = cross-entropy                                                    (eq. 13)

A window is one repetition (services/judge/reps.py finds them): the pack's per-frame inputs
(PackSpec.design: the median-filtered joint cosines / ratios the SVMs see, plus their motion
deltas) over the repetition's frames, linearly resampled to WINDOW = 32 steps, so repetitions
of any length and frame rate fit (the paper's windows are >= 10 frames; a repetition at 30 fps
is 40-100 frames). Missing inputs are imputed with the training medians, then standardised.

Label of a repetition: non-standard if ANY of its frames carries a fault label (any fault of
the pack), standard otherwise. A repetition's quality = the model's probability of "standard";
its attention = alpha interpolated from the 32 steps back to the repetition's frames and
renormalised (sums to 1), which shows which part of the movement decided the verdict.

Files: `sequence.pt` = torch.save of plain data (tensors, lists, numbers, strings) loaded with
weights_only=True, so unlike model.joblib it cannot run code when loaded. Shipped per exercise
pack in services/judge/packs/<sport>/sequence.pt, trained by `python -m services.judge.lab.bootstrap_temporal`
on synthetic clips; `coach judge train --kind sequence` trains one on your labelled data.
Runs on CUDA when present, else CPU.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from services.judge.reps import EXERCISES, Repetition, segment
from shared.sports import PACK_SPECS, PackSpec

WINDOW = 32                       # steps per repetition window
CLASSES = ("standard", "non_standard")
FORMAT = "coach.sequence/1"
VERSION = "1.0.0"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- model

class LSTMAttention(nn.Module):
    def __init__(self, d_in: int, hidden: int = 32, layers: int = 2, n_classes: int = 2, dropout: float = 0.1):
        super().__init__()
        self.lstm = nn.LSTM(d_in, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.W = nn.Linear(hidden, hidden, bias=False)   # applied to h_bar
        self.U = nn.Linear(hidden, hidden, bias=True)    # applied to each h_i (its bias is b)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,L,D] -> logits [B,2], alpha [B,L] (softmax over time)."""
        h, _ = self.lstm(x)                                   # [B,L,H]
        h_bar = h.mean(dim=1, keepdim=True)                   # [B,1,H]
        beta = self.v(torch.tanh(self.W(h_bar) + self.U(h)))  # [B,L,1]
        alpha = torch.softmax(beta.squeeze(-1), dim=1)        # [B,L], sums to 1 over time
        c = torch.sum(alpha.unsqueeze(-1) * h, dim=1)         # [B,H]
        return self.out(c), alpha                             # [B,2], [B,L]


# ----------------------------------------------------------------------------- windows

def frame_inputs(spec: PackSpec, kps: np.ndarray, fps: float) -> np.ndarray:
    """Keypoints [T,33,3] -> the pack's per-frame inputs [T,D] (NaN where unmeasured)."""
    X, _ = spec.design(kps, fps)
    return X


def resample(X: np.ndarray, start: int, end: int, L: int = WINDOW) -> np.ndarray:
    """Frames start..end (inclusive) of X [T,D] -> [L,D] by linear interpolation (NaN-aware per column)."""
    seg = X[start:end + 1]                                    # [n,D]
    n = len(seg)
    pos = np.linspace(0, n - 1, L)                            # [L]
    out = np.full((L, X.shape[1]), np.nan)
    t = np.arange(n)
    for j in range(X.shape[1]):
        ok = np.isfinite(seg[:, j])
        if ok.sum() >= 2:
            out[:, j] = np.interp(pos, t[ok], seg[ok, j])
        elif ok.any():
            out[:, j] = seg[ok, j][0]
    return out


def attention_to_frames(alpha: np.ndarray, n: int) -> np.ndarray:
    """Attention over L model steps [L] -> over the repetition's n frames [n], summing to 1."""
    L = len(alpha)
    w = np.interp(np.linspace(0, L - 1, n), np.arange(L), alpha) if n > 1 else np.ones(1)
    return w / w.sum()


def rep_label(labels: np.ndarray, rep: Repetition) -> int:
    """labels [T,K] bool (any fault of the pack) -> 1 (non-standard) if any frame of the repetition has one."""
    return int(np.asarray(labels)[rep.start:rep.end + 1].any()) if labels.size else 0


@dataclass
class RepExamples:
    W: np.ndarray                 # [N,L,D] windows (NaN = unmeasured, imputed at fit time)
    y: np.ndarray                 # [N] 1 = non-standard
    seq: np.ndarray               # [N] index of the sequence the repetition came from
    reps: list = field(default_factory=list)  # [N] Repetition


def examples(sport: str, clips: Iterable[tuple[np.ndarray, float, np.ndarray]], spec: PackSpec | None = None,
             include_partial: bool = True) -> RepExamples:
    """clips: (keypoints [T,33,3], fps, fault labels [T,K] bool) -> one window per repetition found."""
    spec = spec or PACK_SPECS[sport]
    W, y, seq, reps = [], [], [], []
    for i, (kps, fps, labels) in enumerate(clips):
        X = frame_inputs(spec, kps, fps)
        for r in segment(kps, sport, fps):
            if r.partial and not include_partial:
                continue
            W.append(resample(X, r.start, r.end)), y.append(rep_label(labels, r)), seq.append(i), reps.append(r)
    D = len(spec.input_names)
    return RepExamples(np.array(W).reshape(-1, WINDOW, D), np.array(y, dtype=np.int64), np.array(seq, dtype=np.int64), reps)


# ----------------------------------------------------------------------------- the trained model

@dataclass
class SequenceModel:
    sport: str
    inputs: tuple[str, ...]
    net: LSTMAttention
    impute: np.ndarray            # [D] training medians
    mean: np.ndarray              # [D] after imputation
    std: np.ndarray               # [D]
    hparams: dict
    model_version: str = ""
    info: dict = field(default_factory=dict)

    def _prep(self, W: np.ndarray) -> torch.Tensor:
        W = np.where(np.isfinite(W), W, self.impute)          # [N,L,D]
        return torch.as_tensor((W - self.mean) / self.std, dtype=torch.float32)

    @torch.no_grad()
    def predict_windows(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """W [N,L,D] -> P(standard) [N], alpha [N,L]."""
        if len(W) == 0:
            return np.zeros(0), np.zeros((0, WINDOW))
        dev = next(self.net.parameters()).device
        self.net.eval()
        logits, alpha = self.net(self._prep(W).to(dev))
        return torch.softmax(logits, dim=1)[:, 0].cpu().numpy().astype(np.float64), alpha.cpu().numpy().astype(np.float64)

    def judge(self, kps: np.ndarray, fps: float, reps: list[Repetition]) -> list[dict]:
        """Per repetition: {"quality": P(standard), "attention": [n frames] summing to 1}."""
        if not reps:
            return []
        X = frame_inputs(PACK_SPECS[self.sport], kps, fps)
        W = np.stack([resample(X, r.start, r.end) for r in reps])
        p, alpha = self.predict_windows(W)
        return [{"quality": float(p[k]), "attention": attention_to_frames(alpha[k], r.frames)} for k, r in enumerate(reps)]

    def save(self, path: str | Path) -> int:
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        torch.save({"format": FORMAT, "sport": self.sport, "inputs": list(self.inputs), "window": WINDOW,
                    "classes": list(CLASSES), "hparams": self.hparams, "impute": [float(v) for v in self.impute],
                    "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                    "model_version": self.model_version, "info": self.info, "state_dict": state}, path)
        return Path(path).stat().st_size


def weights_digest(net: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode()), h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:10]


def load(path: str | Path, map_location: str | torch.device | None = None) -> SequenceModel:
    d = torch.load(path, map_location=map_location or device(), weights_only=True)
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: not a sequence model ({d.get('format')!r})")
    hp = d["hparams"]
    net = LSTMAttention(len(d["inputs"]), hp["hidden"], hp["layers"], len(d["classes"]), hp.get("dropout", 0.1))
    net.load_state_dict(d["state_dict"])
    net.to(map_location or device()).eval()
    return SequenceModel(d["sport"], tuple(d["inputs"]), net, np.asarray(d["impute"]), np.asarray(d["mean"]),
                         np.asarray(d["std"]), hp, d.get("model_version", ""), d.get("info", {}))


# ----------------------------------------------------------------------------- training

def fit(sport: str, tr: RepExamples, va: RepExamples, seed: int = 0, hidden: int = 32, layers: int = 2,
        epochs: int = 150, patience: int = 20, lr: float = 3e-3, batch: int = 64, log: Callable = print,
        spec: PackSpec | None = None) -> SequenceModel:
    """Adam on class-balanced cross-entropy; the weights with the lowest validation loss are kept
    (early stopping after `patience` epochs without improvement)."""
    spec = spec or PACK_SPECS[sport]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    D = tr.W.shape[2]
    flat = tr.W.reshape(-1, D)
    impute = np.nanmedian(np.where(np.isfinite(flat), flat, np.nan), axis=0)
    impute = np.where(np.isfinite(impute), impute, 0.0)
    filled = np.where(np.isfinite(flat), flat, impute)
    mean, std = filled.mean(axis=0), np.maximum(filled.std(axis=0), 1e-6)
    hp = {"hidden": hidden, "layers": layers, "dropout": 0.1, "lr": lr, "batch": batch, "weight_decay": 1e-4,
          "epochs_max": epochs, "patience": patience, "seed": seed}
    model = SequenceModel(sport, tuple(spec.input_names), LSTMAttention(D, hidden, layers), impute, mean, std, hp)
    dev = device()
    net = model.net.to(dev)
    Xtr, ytr = model._prep(tr.W).to(dev), torch.as_tensor(tr.y).to(dev)
    Xva, yva = model._prep(va.W).to(dev), torch.as_tensor(va.y).to(dev)
    counts = np.bincount(tr.y, minlength=2).astype(np.float64)
    wts = torch.as_tensor(counts.sum() / (2 * np.maximum(counts, 1)), dtype=torch.float32).to(dev)
    loss_fn = nn.CrossEntropyLoss(weight=wts)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    best, best_state, since, t0 = np.inf, None, 0, time.time()
    for ep in range(epochs):
        net.train()
        order = rng.permutation(len(ytr))
        for k in range(0, len(order), batch):
            idx = torch.as_tensor(order[k:k + batch]).to(dev)
            logits, _ = net(Xtr[idx])
            loss = loss_fn(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        net.eval()
        with torch.no_grad():
            vl = float(loss_fn(net(Xva)[0], yva)) if len(yva) else float(loss)
        if vl < best - 1e-4:
            best, since = vl, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            since += 1
        if since >= patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    model.info = {"epochs": ep + 1, "best_val_loss": round(best, 4), "train_reps": int(len(tr.y)),
                  "val_reps": int(len(va.y)), "train_non_standard": int(tr.y.sum()), "seconds": round(time.time() - t0, 1),
                  "device": str(dev)}
    log(f"[{sport}] sequence model: {ep + 1} epochs, best val loss {best:.3f}, {time.time() - t0:.1f}s on {dev}")
    return model


def metrics(y: np.ndarray, flagged: np.ndarray) -> dict:
    """Per-repetition accuracy and precision / recall / F1 of "non-standard" (the positive class)."""
    y, flagged = np.asarray(y).astype(bool), np.asarray(flagged).astype(bool)
    tp, fp = int(np.sum(y & flagged)), int(np.sum(~y & flagged))
    fn, tn = int(np.sum(y & ~flagged)), int(np.sum(~y & ~flagged))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"accuracy": round((tp + tn) / max(len(y), 1), 4), "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4), "reps": int(len(y)), "non_standard": int(y.sum()),
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}


def finish(model: SequenceModel, tag: str) -> str:
    model.model_version = f"{model.sport}-lstm-attn-{VERSION}+{tag}.{weights_digest(model.net)}"
    return model.model_version


# ----------------------------------------------------------------------------- `coach judge train/eval --kind sequence`

def _clips_of(ds, select: Callable | None = None):
    """Dataset sequences -> (kps, fps, labels [T,K]) with frames outside select(i, seq) masked as unobserved."""
    for i, s in enumerate(ds.sequences):
        kps = s.keypoints
        if select is not None:
            keep = select(i, s)
            kps = np.where(keep[:, None, None], kps, np.nan)
        yield kps, s.fps, ds.label_matrix(s)


def split_sequences(n: int, seed: int = 0) -> np.ndarray:
    """part [n] in {0 train, 1 val, 2 test}: whole sequences 60 / 20 / 20 (at least one each)."""
    order = np.random.default_rng(seed).permutation(n)
    n_te = max(1, int(round(0.2 * n)))
    n_va = max(1, int(round(0.2 * n)))
    part = np.zeros(n, int)
    part[order[:n_te]] = 2
    part[order[n_te:n_te + n_va]] = 1
    return part


def train_dataset(sport: str, ds, seed: int = 0, label_source: str = "", log: Callable = print) -> tuple[SequenceModel, dict]:
    """A labelled Dataset (services/judge/datasets.py) -> (model, report). Split by whole sequences
    (>= 5 needed) 60 / 20 / 20; figures on the test sequences."""
    from services.judge.datasets import DatasetError

    if sport not in EXERCISES or sport not in PACK_SPECS:
        raise DatasetError(f"--kind sequence needs an exercise with repetitions and a pack: "
                           f"{', '.join(sorted(set(EXERCISES) & set(PACK_SPECS)))}")
    if len(ds.sequences) < 5:
        raise DatasetError(f"--kind sequence needs at least 5 sequences (clips) to split by clip; got {len(ds.sequences)}")
    part = split_sequences(len(ds.sequences), seed)
    ex = examples(sport, list(_clips_of(ds)))
    if len(ex.y) < 10:
        raise DatasetError(f"only {len(ex.y)} repetitions found in {len(ds.sequences)} sequences (need 10)")
    pick = lambda k: RepExamples(ex.W[part[ex.seq] == k], ex.y[part[ex.seq] == k], ex.seq[part[ex.seq] == k])  # noqa: E731
    tr, va, te = pick(0), pick(1), pick(2)
    if len(np.unique(tr.y)) < 2:
        raise DatasetError("the training sequences have repetitions of one class only (all standard or all "
                           "non-standard): the classifier needs both")
    model = fit(sport, tr, va, seed=seed, log=log)
    p, _ = model.predict_windows(te.W)
    ev = metrics(te.y, p < 0.5)
    names = [s.name for s in ds.sequences]
    split = {"kind": "by-sequence", "train": [n for n, k in zip(names, part) if k == 0],
             "val": [n for n, k in zip(names, part) if k == 1], "test": [n for n, k in zip(names, part) if k == 2]}
    finish(model, "data")
    label_source = label_source or f"user-supplied labels ({', '.join(f['name'] for f in ds.files)})"
    model.info.update({"labels": label_source, "data_fingerprint": ds.fingerprint(), "test": ev})
    report = {"schema": "coach.sequence-report/1", "sport": sport, "kind": "sequence",
              "model_version": model.model_version, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "labels": label_source, "label_rule": "a repetition is non-standard if any of its frames has a fault label",
              "data": ds.summary(), "split": split, "hparams": model.hparams, "inputs": list(model.inputs),
              "training": {k: v for k, v in model.info.items() if k not in ("test",)},
              "evaluation": {**ev, "split": "by-sequence",
                             "split_detail": f"{len(split['test'])} test sequences of {len(names)}"}}
    return model, report


def evaluate_dataset(model: SequenceModel, ds, select: Callable | None = None) -> dict:
    ex = examples(model.sport, list(_clips_of(ds, select)))
    p, _ = model.predict_windows(ex.W)
    return metrics(ex.y, p < 0.5)

