"""Action score of an exercise clip, after CoRe (Yu et al., "Group-aware contrastive regression
for action quality assessment", ICCV 2021): instead of regressing a score directly, a pairwise
model predicts the score DIFFERENCE between the query clip and an exemplar clip of known score;
the query's score is the mean over K exemplars of (exemplar score + predicted difference).

    phi(clip)            pooled joint features of the clip's repetitions, [F] (clip_features)
    z = (phi - mu) / sd  standardised with the training statistics
    g(a, b)              MLP([a, b, a - b]) -> 1           3F -> 64 -> 64 -> 1, ReLU, dropout 0.1
    f(q, e)              (g(q, e) - g(e, q)) / 2           antisymmetric: f(q, e) = -f(e, q), f(q, q) = 0
    delta(q, e)          sigma * f(q, e)                   sigma = std of the training scores
    score(q)             mean over the K = 10 pool exemplars nearest to q in z of (s_e + delta(q, e)), clipped 0..100

phi (clip_features): per repetition found by services/judge/reps.py (full ones; all if none is
full; the whole clip if none), for each of the pack's per-frame inputs (PackSpec.design) the
mean, 10th and 90th percentile over the repetition's frames, plus its range of motion, turnaround
angle and down / hold / up seconds; then across repetitions the mean, min and max of each; plus
the numbers of full and partial repetitions.

The synthetic score (what the model learns; `synthetic_score`): 100 minus the mean over the
clip's full repetitions of these penalties, measured on the clean 3D joints of a synthetic
clip (services/judge/synth.py) and its known repetition timing, clipped to 0..100:

    squat    depth   0.5 x max(0, 100 - deepest thigh angle below vertical, deg)   (90 = thighs parallel)
             knees   40 x max(0, 0.95 - smallest knee / ankle separation with knees bent > 30 deg)
             tempo   15 x max(0, 0.9 - seconds from the top to the bottom)          (dropping too fast)
    pushup   depth   0.5 x max(0, 100 - deepest elbow flexion, deg)
             hips    1.2 x max(0, largest |bend at the hips off the shoulder-ankle line| - 5 deg)
             tempo   15 x max(0, 0.9 - seconds from the top to the bottom)

so a deep, controlled repetition with knees over the toes (a straight body) scores ~95-100, a
quarter squat with caving knees ~40. These weights are our documented choice, not a
federation's rules; a coach's scores replace them by retraining on (clip, score) pairs.

Why this converges where the source (Spearman 0.05) did not: the inputs are a few dozen
standardised, pose-derived measures that carry the criteria, not 133 raw keypoints or image
features; targets are differences in units of the score's std; training pairs mix the query's
nearest exemplars with exemplars drawn across the whole score range, so the model sees small
and large differences; the model is small (~20k weights) with weight decay and dropout; the
head is antisymmetric by construction; one exemplar pool per sport; early stopping on the
validation clips' error of the final (exemplar-averaged) score.

Metrics (held-out clips): Spearman's rank correlation rho between predicted and true scores;
R-l2 as in CoRe / the AQA literature, mean over clips of ((pred - true) / (s_max - s_min))^2
with s_max - s_min the score range (100), reported x100; and the relative squared error
RSE = sum (pred - true)^2 / sum (true - mean(true))^2 (1 - R^2: 0 is perfect, 1 is no better
than predicting the mean score).

File: `score.pt` per exercise pack (torch.save of plain data, loaded with weights_only=True),
holding the network, the feature statistics and the exemplar pool (features, scores, ids).
"""
from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from services.judge.reps import EXERCISES, Repetition, segment
from shared.sports import PACK_SPECS

FORMAT = "coach.score/1"
VERSION = "1.0.0"
SCORE_MIN, SCORE_MAX = 0.0, 100.0
K_EXEMPLARS = 10
REP_STATS = ("rom_deg", "peak_deg", "down_s", "hold_s", "up_s")

SCORE_CRITERIA: dict[str, dict[str, str]] = {
    "squat": {
        "depth": "0.5 x max(0, 100 - deepest thigh angle below vertical in the repetition, deg)",
        "knees": "40 x max(0, 0.95 - smallest knee / ankle separation (frontal axis) while the knees are bent > 30 deg)",
        "tempo": "15 x max(0, 0.9 - seconds from the top to the bottom)",
    },
    "pushup": {
        "depth": "0.5 x max(0, 100 - deepest elbow flexion in the repetition, deg)",
        "hips": "1.2 x max(0, largest |bend at the hips off the shoulder-ankle line| in the repetition - 5 deg)",
        "tempo": "15 x max(0, 0.9 - seconds from the top to the bottom)",
    },
}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- the synthetic score

def synthetic_score(sport: str, world: np.ndarray, segments: list, depth: np.ndarray, fps: float) -> tuple[float, dict]:
    """Score 0..100 of a synthetic clip from its clean 3D joints [T,33,3], its generated movements
    (start, end, rep, fraction, "full" | "partial") and depth profile [T] (0 top .. 1 bottom)."""
    from services.judge import synth
    from shared.skeleton import LANDMARK_INDEX as LI

    per_rep = []
    for a, b, _, _, kind in segments:
        if kind != "full":
            continue
        sl = slice(a, b + 1)
        bottom = a + int(np.nonzero(depth[sl] >= 0.98 * depth[sl].max())[0][0])
        pen = {"tempo": 15.0 * max(0.0, 0.9 - (bottom - a) / fps)}
        if sport == "squat":
            thigh = []
            for s in ("left", "right"):
                v = world[sl, LI[f"{s}_knee"]] - world[sl, LI[f"{s}_hip"]]
                thigh.append(np.degrees(np.arccos(np.clip(-v[:, 1] / np.linalg.norm(v, axis=-1), -1, 1))))
            pen["depth"] = 0.5 * max(0.0, 100.0 - float(np.max(np.mean(thigh, axis=0))))
            bent = synth.knee_flexion_3d(world[sl]).mean(axis=-1) > 30
            ratio = ((world[sl, LI["left_knee"], 0] - world[sl, LI["right_knee"], 0])
                     / (world[sl, LI["left_ankle"], 0] - world[sl, LI["right_ankle"], 0]))
            pen["knees"] = 40.0 * max(0.0, 0.95 - float(ratio[bent].min())) if bent.any() else 0.0
        elif sport == "pushup":
            pen["depth"] = 0.5 * max(0.0, 100.0 - float(synth.elbow_flexion_3d(world[sl]).mean(axis=-1).max()))
            pen["hips"] = 1.2 * max(0.0, float(np.abs(synth.body_line_3d(world[sl])).max()) - 5.0)
        else:
            raise KeyError(sport)
        per_rep.append(pen)
    if not per_rep:
        return SCORE_MAX, {}
    comp = {k: float(np.mean([p[k] for p in per_rep])) for k in per_rep[0]}
    return float(np.clip(SCORE_MAX - sum(comp.values()), SCORE_MIN, SCORE_MAX)), comp


# ----------------------------------------------------------------------------- features

def feature_names(sport: str) -> list[str]:
    per_rep = [f"{n}:{s}" for n in PACK_SPECS[sport].input_names for s in ("mean", "p10", "p90")] + list(REP_STATS)
    return [f"{agg}({n})" for agg in ("mean", "min", "max") for n in per_rep] + ["full_reps", "partial_reps"]


def clip_features(sport: str, kps: np.ndarray, fps: float, reps: list[Repetition] | None = None) -> np.ndarray:
    """Keypoints [T,33,3] -> phi [F] (NaN where nothing could be measured; imputed by the model)."""
    X, _ = PACK_SPECS[sport].design(kps, fps)                  # [T,D]
    reps = segment(kps, sport, fps) if reps is None else reps
    use = [r for r in reps if not r.partial] or list(reps)
    spans = [(r.start, r.end, [getattr(r, s) for s in REP_STATS]) for r in use] or [(0, len(X) - 1, [np.nan] * len(REP_STATS))]
    V = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns stay NaN (imputed later)
        for a, b, stats in spans:
            seg = X[a:b + 1]
            V.append(np.concatenate([np.stack([np.nanmean(seg, 0), np.nanpercentile(seg, 10, 0), np.nanpercentile(seg, 90, 0)],
                                              axis=1).ravel(), stats]))
        V = np.asarray(V, dtype=np.float64)                    # [R, 3D + 5]
        phi = np.concatenate([np.nanmean(V, 0), np.nanmin(V, 0), np.nanmax(V, 0),
                              [sum(not r.partial for r in reps), sum(r.partial for r in reps)]])
    return phi


# ----------------------------------------------------------------------------- model

class PairNet(nn.Module):
    def __init__(self, F: int, hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(3 * F, hidden), nn.ReLU(), nn.Dropout(dropout),
                               nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """q, e [B,F] standardised features -> predicted (s_q - s_e) / sigma, [B]; antisymmetric."""
        a = self.g(torch.cat([q, e, q - e], dim=1))            # [B,1]
        b = self.g(torch.cat([e, q, e - q], dim=1))            # [B,1]
        return 0.5 * (a - b).squeeze(1)                        # [B]


@dataclass
class ScoreModel:
    sport: str
    net: PairNet
    impute: np.ndarray            # [F] training medians
    mean: np.ndarray              # [F]
    std: np.ndarray               # [F]
    sigma: float                  # std of the training scores: the unit of the predicted differences
    pool_z: np.ndarray            # [M,F] standardised features of the exemplar pool
    pool_scores: np.ndarray       # [M]
    pool_ids: list[str]
    hparams: dict
    k: int = K_EXEMPLARS
    model_version: str = ""
    info: dict = field(default_factory=dict)

    def standardise(self, phi: np.ndarray) -> np.ndarray:
        phi = np.where(np.isfinite(phi), phi, self.impute)
        return (phi - self.mean) / self.std

    @torch.no_grad()
    def predict(self, phi: np.ndarray) -> tuple[np.ndarray, list[list[dict]]]:
        """phi [N,F] -> scores [N] and, per clip, its exemplars [{id, score, predicted_difference}]."""
        z = self.standardise(np.atleast_2d(phi))               # [N,F]
        dev = next(self.net.parameters()).device
        self.net.eval()
        d2 = ((z[:, None, :] - self.pool_z[None]) ** 2).sum(-1)  # [N,M]
        near = np.argsort(d2, axis=1)[:, :self.k]              # [N,K] nearest exemplars
        q = torch.as_tensor(np.repeat(z, self.k, axis=0), dtype=torch.float32, device=dev)          # [N*K,F]
        e = torch.as_tensor(self.pool_z[near.ravel()], dtype=torch.float32, device=dev)            # [N*K,F]
        delta = (self.sigma * self.net(q, e)).cpu().numpy().reshape(len(z), self.k)               # [N,K]
        s_e = self.pool_scores[near]                           # [N,K]
        scores = np.clip((s_e + delta).mean(axis=1), SCORE_MIN, SCORE_MAX)
        ex = [[{"id": self.pool_ids[j], "score": round(float(self.pool_scores[j]), 2),
                "predicted_difference": round(float(delta[i, m]), 2)} for m, j in enumerate(near[i])] for i in range(len(z))]
        return scores, ex

    def save(self, path: str | Path) -> int:
        torch.save({"format": FORMAT, "sport": self.sport, "features": feature_names(self.sport),
                    "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                    "impute": self.impute.tolist(), "mean": self.mean.tolist(), "std": self.std.tolist(),
                    "sigma": self.sigma, "pool_z": torch.as_tensor(self.pool_z, dtype=torch.float32),
                    "pool_scores": self.pool_scores.tolist(), "pool_ids": list(self.pool_ids), "k": self.k,
                    "hparams": self.hparams, "model_version": self.model_version, "info": self.info}, path)
        return Path(path).stat().st_size


def load(path: str | Path, map_location: str | torch.device | None = None) -> ScoreModel:
    d = torch.load(path, map_location=map_location or device(), weights_only=True)
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: not a score model ({d.get('format')!r})")
    net = PairNet(len(d["mean"]), d["hparams"]["hidden"], d["hparams"].get("dropout", 0.1))
    net.load_state_dict(d["state_dict"])
    net.to(map_location or device()).eval()
    return ScoreModel(d["sport"], net, np.asarray(d["impute"]), np.asarray(d["mean"]), np.asarray(d["std"]),
                      float(d["sigma"]), d["pool_z"].cpu().numpy().astype(np.float64), np.asarray(d["pool_scores"]),
                      list(d["pool_ids"]), d["hparams"], int(d["k"]), d.get("model_version", ""), d.get("info", {}))


# ----------------------------------------------------------------------------- metrics

def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(pred, true).statistic)


def rel_l2(pred: np.ndarray, true: np.ndarray) -> float:
    """CoRe's R-l2 x 100: mean(((pred - true) / (s_max - s_min))^2) * 100."""
    return float(100 * np.mean(((np.asarray(pred) - np.asarray(true)) / (SCORE_MAX - SCORE_MIN)) ** 2))


def rse(pred: np.ndarray, true: np.ndarray) -> float:
    """sum (pred - true)^2 / sum (true - mean)^2 (= 1 - R^2)."""
    true = np.asarray(true)
    return float(np.sum((np.asarray(pred) - true) ** 2) / max(np.sum((true - true.mean()) ** 2), 1e-12))


def score_metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    return {"spearman": round(spearman(pred, true), 4), "rel_l2_x100": round(rel_l2(pred, true), 4),
            "rse": round(rse(pred, true), 4), "mae": round(float(np.mean(np.abs(np.asarray(pred) - true))), 2),
            "clips": int(len(true))}


# ----------------------------------------------------------------------------- training

def _pool(scores: np.ndarray, size: int) -> np.ndarray:
    """Indices of `size` training clips spread evenly over the score range (by rank)."""
    order = np.argsort(scores, kind="stable")
    return order[np.unique(np.round(np.linspace(0, len(order) - 1, min(size, len(order)))).astype(int))]


def fit(sport: str, phi_tr: np.ndarray, s_tr: np.ndarray, ids_tr: list[str], phi_va: np.ndarray, s_va: np.ndarray,
        seed: int = 0, hidden: int = 64, epochs: int = 200, patience: int = 25, lr: float = 1e-3,
        pairs_per_query: int = 8, pool_size: int = 80, log: Callable = print) -> ScoreModel:
    """Train the pairwise model; early stopping on the validation MSE of the exemplar-averaged score."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    impute = np.nanmedian(np.where(np.isfinite(phi_tr), phi_tr, np.nan), axis=0)
    impute = np.where(np.isfinite(impute), impute, 0.0)
    filled = np.where(np.isfinite(phi_tr), phi_tr, impute)
    mean, std = filled.mean(0), np.maximum(filled.std(0), 1e-6)
    sigma = float(max(np.std(s_tr), 1e-6))
    hp = {"hidden": hidden, "dropout": 0.1, "lr": lr, "weight_decay": 1e-3, "epochs_max": epochs, "patience": patience,
          "pairs_per_query": pairs_per_query, "pool_size": pool_size, "k": K_EXEMPLARS, "seed": seed}
    dev = device()
    net = PairNet(phi_tr.shape[1], hidden).to(dev)
    pool = _pool(s_tr, pool_size)
    model = ScoreModel(sport, net, impute, mean, std, sigma, np.zeros((0, 0)), np.zeros(0), [], hp)
    Z = model.standardise(phi_tr)                                        # [N,F]
    model.pool_z, model.pool_scores, model.pool_ids = Z[pool], np.asarray(s_tr)[pool], [ids_tr[i] for i in pool]
    Zt = torch.as_tensor(Z, dtype=torch.float32, device=dev)
    st = torch.as_tensor(np.asarray(s_tr) / sigma, dtype=torch.float32, device=dev)
    d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nearest = np.argsort(d2, axis=1)[:, :K_EXEMPLARS]                    # [N,K]
    rank_bins = np.array_split(np.argsort(s_tr), pairs_per_query // 2)   # score-range strata
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-3)
    best, best_state, since, t0 = np.inf, None, 0, time.time()
    N = len(Z)
    for ep in range(epochs):
        net.train()
        # pairs: half among each query's nearest exemplars, half one per score stratum
        q = np.repeat(np.arange(N), pairs_per_query)
        e_near = nearest[np.arange(N)[:, None], rng.integers(0, K_EXEMPLARS, (N, pairs_per_query // 2))]
        e_wide = np.stack([b[rng.integers(0, len(b), N)] for b in rank_bins], axis=1)
        e = np.concatenate([e_near, e_wide], axis=1).ravel()
        keep = q != e
        q, e = q[keep], e[keep]
        order = rng.permutation(len(q))
        for k in range(0, len(order), 256):
            i = torch.as_tensor(q[order[k:k + 256]], device=dev)
            j = torch.as_tensor(e[order[k:k + 256]], device=dev)
            loss = nn.functional.smooth_l1_loss(net(Zt[i], Zt[j]), st[i] - st[j])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        pred, _ = model.predict(phi_va)
        vl = float(np.mean((pred - s_va) ** 2))
        if vl < best - 1e-3:
            best, since = vl, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            since += 1
        if since >= patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    pred, _ = model.predict(phi_va)
    model.info = {"epochs": ep + 1, "train_clips": int(N), "pool": int(len(pool)), "seconds": round(time.time() - t0, 1),
                  "val": score_metrics(pred, s_va), "device": str(dev)}
    log(f"[{sport}] score model: {ep + 1} epochs, val rho {model.info['val']['spearman']:.3f}, "
        f"R-l2 {model.info['val']['rel_l2_x100']:.3f}, {time.time() - t0:.1f}s on {dev}")
    return model


def finish(model: ScoreModel, tag: str) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode()), h.update(v.detach().cpu().numpy().tobytes())
    h.update(model.pool_scores.tobytes())
    model.model_version = f"{model.sport}-core-pairwise-{VERSION}+{tag}.{h.hexdigest()[:10]}"
    return model.model_version


def exercise_sports() -> list[str]:
    return sorted(set(EXERCISES) & set(PACK_SPECS))
