"""Synthetic exercise clips with known repetitions, and the script that trains and evaluates the
temporal models (repetition counting, LSTM-attention repetition quality, pairwise action score).

    python -m services.judge.lab.bootstrap_temporal [--sport squat pushup] [--out services/judge/packs] [--doc docs/judge.md]

writes services/judge/packs/<sport>/sequence.pt and score.pt and rewrites the block between
<!-- temporal:start --> and <!-- temporal:end --> in docs/judge.md. Deterministic (fixed seeds);
a few minutes on one CPU core. Everything here is synthetic: the clips come from
services/judge/synth.py (3D stick figure, random camera, detector-like noise), the fault labels
from its documented criteria (FAULT_CRITERIA), the score from the criteria in
services/judge/score.py. Seeds are disjoint from those the shipped SVM packs were trained on
(services/judge/lab/bootstrap.py uses [sport index, i]; we use [SEED_BASE + sport index, split, i]),
so every clip evaluated here is new to the SVMs too.

Clips with pauses and partial repetitions (`exercise_clip(pauses=True, partials=True)`): synth.py
draws each repetition as "rest at the top, down, hold at the bottom, up". We substitute that
profile (synth._reps, swapped for the duration of one generate() call) by one with
  * pauses half-way down or up (held 0.4-1.2 s at 35-70% of the depth, p = 0.3 / 0.2 per rep),
  * long holds at the bottom (0.8-2 s, p = 0.3) and long rests at the top (1.5-3 s, p = 0.3),
  * partial repetitions before a full one (15-40% of its depth, p = 0.35 per rep),
and record which frames belong to which movement, so the true count is known.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import time
from pathlib import Path

import numpy as np

from services.judge import synth
from services.judge.reps import EXERCISES
from shared.skeleton import LANDMARK_INDEX as LI

SPORTS = ("squat", "pushup")
SEED_BASE = 1000
DOC = Path(__file__).resolve().parents[3] / "docs" / "judge.md"


# ----------------------------------------------------------------------------- repetition profiles

def _ease(n: int, a: float, b: float) -> np.ndarray:
    """n frames easing from a to b (half cosine), excluding a, including b."""
    n = max(int(n), 1)
    return a + (b - a) * (0.5 - 0.5 * np.cos(np.pi * np.arange(1, n + 1) / n))


def _paused_reps(rng: np.random.Generator, fps: float, n_reps: int, rep_s: tuple[float, float],
                 top_s: tuple[float, float], bottom_s: tuple[float, float], partials: bool,
                 segments: list) -> tuple[np.ndarray, np.ndarray]:
    """Drop-in for synth._reps with pauses (and partial repetitions): depth [T] 0..1, rep index [T].

    A partial carries the index of the full repetition after it (synth scales that repetition's
    depth), so synth's per-repetition labels group the two; `segments` receives
    (start, end, rep index, fraction of depth, "full" | "partial") per movement."""
    n0 = int(rng.uniform(*top_s) * fps)
    depth, rep, t = [np.zeros(n0)], [np.full(n0, -1)], n0

    def add(seg: np.ndarray, r: int) -> None:
        nonlocal t
        depth.append(seg), rep.append(np.full(len(seg), r))
        t += len(seg)

    for i in range(n_reps):
        move = rng.uniform(*rep_s) * fps / 2
        if partials and rng.random() < 0.35:
            frac = rng.uniform(0.15, 0.4)
            seg = np.concatenate([_ease(max(move * frac ** 0.5, 4), 0, frac), np.full(int(rng.uniform(0, 0.2) * fps), frac),
                                  _ease(max(move * frac ** 0.5, 4), frac, 0)])
            segments.append((t, t + len(seg) - 1, i, frac, "partial"))
            add(seg, i)
            rest = np.zeros(int(rng.uniform(*top_s) * fps))
            add(rest, -1)
        n_down, n_up = max(int(move * rng.uniform(0.8, 1.2)), 4), max(int(move * rng.uniform(0.8, 1.2)), 4)
        parts = []
        if rng.random() < 0.3:   # pause half-way down
            lv = rng.uniform(0.35, 0.7)
            parts += [_ease(n_down * lv, 0, lv), np.full(int(rng.uniform(0.4, 1.2) * fps), lv), _ease(n_down * (1 - lv), lv, 1)]
        else:
            parts.append(_ease(n_down, 0, 1))
        hold = rng.uniform(0.8, 2.0) if rng.random() < 0.3 else rng.uniform(*bottom_s)
        parts.append(np.ones(int(hold * fps)))
        if rng.random() < 0.2:   # pause half-way up
            lv = rng.uniform(0.35, 0.7)
            parts += [_ease(n_up * (1 - lv), 1, lv), np.full(int(rng.uniform(0.4, 1.2) * fps), lv), _ease(n_up * lv, lv, 0)]
        else:
            parts.append(_ease(n_up, 1, 0))
        seg = np.concatenate(parts)
        segments.append((t, t + len(seg) - 1, i, 1.0, "full"))
        add(seg, i)
        rest = rng.uniform(1.5, 3.0) if rng.random() < 0.3 else rng.uniform(*top_s)
        add(np.zeros(int(rest * fps)), -1)
    return np.concatenate(depth), np.concatenate(rep)


@contextlib.contextmanager
def _profile(pauses: bool, partials: bool):
    """Swap synth._reps for one generate() call; yields a dict that receives depth, rep, segments."""
    rec: dict = {"segments": []}
    original = synth._reps

    def standard(rng, fps, n_reps, rep_s, top_s, bottom_s):
        depth, rep = original(rng, fps, n_reps, rep_s, top_s, bottom_s)
        for r in range(n_reps):
            idx = np.nonzero(rep == r)[0]
            rec["segments"].append((int(idx[0]), int(idx[-1]), r, 1.0, "full"))
        return depth, rep

    def paused(rng, fps, n_reps, rep_s, top_s, bottom_s):
        return _paused_reps(rng, fps, n_reps, rep_s, top_s, bottom_s, partials, rec["segments"])

    def recording(*args):
        depth, rep = (paused if (pauses or partials) else standard)(*args)
        rec["depth"], rec["rep"] = depth, rep
        return depth, rep

    synth._reps = recording
    try:
        yield rec
    finally:
        synth._reps = original


def exercise_clip(sport: str, rng, pauses: bool = False, partials: bool = False, **kw) -> tuple[synth.SynthClip, dict]:
    """synth.generate(sport, rng, **kw) plus its repetition profile {depth, rep, segments}."""
    with _profile(pauses, partials) as rec:
        clip = synth.generate(sport, rng, **kw)
    return clip, rec


# ----------------------------------------------------------------------------- ground truth

def true_signal(sport: str, world: np.ndarray) -> np.ndarray:
    """The primary angle of reps.py measured on the clean 3D joints [T,33,3] -> [T] degrees."""
    if sport == "squat":   # thigh angle below vertical, mean of both legs
        out = []
        for s in ("left", "right"):
            thigh = world[:, LI[f"{s}_knee"]] - world[:, LI[f"{s}_hip"]]
            c = -thigh[:, 1] / np.linalg.norm(thigh, axis=-1)
            out.append(np.degrees(np.arccos(np.clip(c, -1, 1))))
        return np.mean(out, axis=0)
    if sport == "pushup":
        return synth.elbow_flexion_3d(world).mean(axis=-1)
    raise KeyError(sport)


def true_repetitions(sport: str, clip: synth.SynthClip, rec: dict) -> list[dict]:
    """Generated movements with their true range of motion (clean 3D) and full / partial by the
    same rule as reps.py (>= full_frac of the clip's largest range and >= min_full_rom_deg)."""
    spec = EXERCISES[sport]
    sig = true_signal(sport, clip.world)
    out = []
    for a, b, r, _frac, kind in rec["segments"]:
        rom = float(sig[a:b + 1].max() - max(sig[a], sig[b]))
        out.append({"start": a, "end": b, "rep": r, "rom_deg": rom, "generated": kind})
    largest = max((o["rom_deg"] for o in out), default=0.0)
    for o in out:
        o["partial"] = o["rom_deg"] < max(spec.min_full_rom_deg, spec.full_frac * largest)
    return out


def true_count(sport: str, clip: synth.SynthClip, rec: dict) -> int:
    return sum(not o["partial"] for o in true_repetitions(sport, clip, rec))


# ----------------------------------------------------------------------------- data sets

SPLITS = {"train": 0, "val": 1, "test": 2, "count_test": 3, "clean": 4}
N_CLIPS = {"train": 500, "val": 150, "test": 150, "count_test": 150, "clean": 50}
PAUSE_FRAC = 0.3   # share of training / validation / test clips drawn with pauses (no partials)


def make_clips(sport: str, split: str, n: int, pause_frac: float = PAUSE_FRAC, partials: bool = False,
               clean: bool = False, keep_world: bool = False) -> list[dict]:
    """n synthetic clips of one split: {id, kps, fps, labels [T,K], score, components, true_count, true_reps}."""
    from services.judge.score import synthetic_score

    out = []
    for i in range(n):
        rng = np.random.default_rng([SEED_BASE + synth.SPORTS.index(sport), SPLITS[split], i])
        paused = bool(rng.random() < pause_frac)
        kw = {"clean": True, "faults": {}} if clean else {}
        clip, rec = exercise_clip(sport, rng, pauses=paused, partials=partials and paused, **kw)
        score, comp = synthetic_score(sport, clip.world, rec["segments"], rec["depth"], clip.fps)
        truth = true_repetitions(sport, clip, rec)
        d = {"id": f"synth-{sport}-{split}-{i:04d}", "kps": clip.keypoints, "fps": clip.fps,
             "labels": np.stack([clip.labels[f] for f in synth.FAULTS[sport]], axis=1), "score": score,
             "components": comp, "true_count": sum(not o["partial"] for o in truth), "true_reps": truth,
             "paused": paused}
        if keep_world:
            d["world"], d["rec"] = clip.world, rec
        out.append(d)
    return out


def rep_examples(sport: str, clips: list[dict]):
    from services.judge.sequence import examples

    return examples(sport, [(c["kps"], c["fps"], c["labels"]) for c in clips])


def svm_rep_fractions(sport: str, clips: list[dict], ex) -> np.ndarray:
    """Share of each repetition's judged frames that the shipped per-frame SVMs flag (any fault)."""
    from services.judge.packs import load_pack

    pack = load_pack(sport)
    flagged = [None] * len(clips)
    out = np.zeros(len(ex.y))
    for k, (s, r) in enumerate(zip(ex.seq, ex.reps)):
        if flagged[s] is None:
            probs = pack.judge(clips[s]["kps"], clips[s]["fps"])
            flagged[s] = (np.isfinite(probs).all(axis=1), pack.flags(probs).any(axis=1))
        ok, fl = flagged[s]
        m = ok[r.start:r.end + 1]
        out[k] = fl[r.start:r.end + 1][m].mean() if m.any() else 0.0
    return out


K_GRID = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def counting_eval(sport: str, clips: list[dict]) -> dict:
    from services.judge.reps import count, segment

    err = np.array([count(segment(c["kps"], sport, c["fps"])) - c["true_count"] for c in clips])
    return {"clips": int(len(err)), "mae": round(float(np.abs(err).mean()), 3), "exact": round(float(np.mean(err == 0)), 3),
            "within_1": round(float(np.mean(np.abs(err) <= 1)), 3),
            "mean_true_reps": round(float(np.mean([c["true_count"] for c in clips])), 2),
            "partials": int(sum(o["partial"] for c in clips for o in c["true_reps"])),
            "signed_mean": round(float(err.mean()), 3)}


def direct_regression(phi_tr, s_tr, phi_va, s_va, phi_te, seed=0) -> dict[str, np.ndarray]:
    """Ablations ("w/o exemplar" in the source): regress the score directly from the same phi, with
    the same imputation, standardised inputs and standardised targets: an MLP (64, 64; sklearn,
    early stopping on 10% of train + val) and ridge regression (alpha by leave-one-out)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor

    imp = np.nanmedian(phi_tr, axis=0)
    imp = np.where(np.isfinite(imp), imp, 0.0)
    f = lambda P: np.where(np.isfinite(P), P, imp)  # noqa: E731
    mu, sd = f(phi_tr).mean(0), np.maximum(f(phi_tr).std(0), 1e-6)
    z = lambda P: (f(P) - mu) / sd  # noqa: E731
    m, v = float(np.mean(s_tr)), float(np.std(s_tr))
    mlp = MLPRegressor(hidden_layer_sizes=(64, 64), alpha=1e-1, learning_rate_init=1e-3, max_iter=3000, early_stopping=True,
                       random_state=seed).fit(np.vstack([z(phi_tr), z(phi_va)]), (np.concatenate([s_tr, s_va]) - m) / v)
    ridge = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(np.vstack([z(phi_tr), z(phi_va)]), np.concatenate([s_tr, s_va]))
    return {"mlp": np.clip(mlp.predict(z(phi_te)) * v + m, 0, 100), "ridge": np.clip(ridge.predict(z(phi_te)), 0, 100)}


def run_sport(sport: str, out_root: Path, seed: int = 0, log=print) -> dict:
    import torch

    from services.judge import score as S
    from services.judge import sequence as Q

    torch.set_num_threads(1)
    t0 = time.time()
    data = {k: make_clips(sport, k, N_CLIPS[k]) for k in ("train", "val", "test")}
    data["count_test"] = make_clips(sport, "count_test", N_CLIPS["count_test"], pause_frac=1.0, partials=True)
    data["clean"] = make_clips(sport, "clean", N_CLIPS["clean"], pause_frac=0.0, clean=True)
    log(f"[{sport}] clips generated ({time.time() - t0:.1f}s)")

    # --- repetition quality: LSTM + attention vs per-frame SVM aggregated per repetition
    ex = {k: rep_examples(sport, data[k]) for k in ("train", "val", "test")}
    model = Q.fit(sport, ex["train"], ex["val"], seed=seed, log=log)
    Q.finish(model, "synth")
    p_te, alpha_te = model.predict_windows(ex["test"].W)
    seq_eval = Q.metrics(ex["test"].y, p_te < 0.5)
    frac_va = svm_rep_fractions(sport, data["val"], ex["val"])
    f1s = [Q.metrics(ex["val"].y, frac_va >= k)["f1"] for k in K_GRID]
    k_best = K_GRID[int(np.argmax(f1s))]
    frac_te = svm_rep_fractions(sport, data["test"], ex["test"])
    svm_eval = Q.metrics(ex["test"].y, frac_te >= k_best)
    model.info.update({"labels": "bootstrapped: synthetic clips (services/judge/synth.py), a repetition is non-standard "
                                 "if any frame meets a fault criterion (FAULT_CRITERIA)", "test": seq_eval})
    out = out_root / sport
    out.mkdir(parents=True, exist_ok=True)
    seq_bytes = model.save(out / "sequence.pt")

    # --- repetition counting
    counting = {"pauses_partials": counting_eval(sport, data["count_test"]), "clean": counting_eval(sport, data["clean"]),
                "standard_test": counting_eval(sport, data["test"])}

    # --- action score
    phi = {k: np.stack([S.clip_features(sport, c["kps"], c["fps"]) for c in data[k]]) for k in ("train", "val", "test")}
    s = {k: np.array([c["score"] for c in data[k]]) for k in ("train", "val", "test")}
    smodel = S.fit(sport, phi["train"], s["train"], [c["id"] for c in data["train"]], phi["val"], s["val"], seed=seed, log=log)
    S.finish(smodel, "synth")
    pred_te, _ = smodel.predict(phi["test"])
    score_eval = S.score_metrics(pred_te, s["test"])
    direct = {k: S.score_metrics(v, s["test"])
              for k, v in direct_regression(phi["train"], s["train"], phi["val"], s["val"], phi["test"], seed).items()}
    smodel.info.update({"labels": "synthetic score from criteria (services/judge/score.py SCORE_CRITERIA) on clean 3D joints",
                        "test": score_eval})
    score_bytes = smodel.save(out / "score.pt")
    res = {
        "sport": sport, "seconds": round(time.time() - t0, 1),
        "clips": {k: len(v) for k, v in data.items()},
        "reps": {k: {"reps": int(len(e.y)), "non_standard": int(e.y.sum())} for k, e in ex.items()},
        "sequence": {"model_version": model.model_version, "test": seq_eval, "epochs": model.info["epochs"],
                     "bytes": seq_bytes, "params": int(sum(p.numel() for p in model.net.parameters())),
                     "attention_sum_max_err": float(np.abs(alpha_te.sum(1) - 1).max()) if len(alpha_te) else 0.0},
        "svm_per_rep": {"k": k_best, "val_f1_by_k": dict(zip([str(k) for k in K_GRID], f1s)), "test": svm_eval},
        "counting": counting,
        "score": {"model_version": smodel.model_version, "test": score_eval, "direct_regression_test": direct,
                  "val": smodel.info["val"], "epochs": smodel.info["epochs"], "bytes": score_bytes,
                  "params": int(sum(p.numel() for p in smodel.net.parameters())), "features": int(phi["train"].shape[1]),
                  "score_train_mean_sd": [round(float(s["train"].mean()), 1), round(float(s["train"].std()), 1)],
                  "score_test_range": [round(float(s["test"].min()), 1), round(float(s["test"].max()), 1)]},
    }
    log(json.dumps({k: res[k] for k in ("sequence", "svm_per_rep", "counting", "score")}, indent=1))
    return res


# ----------------------------------------------------------------------------- docs

def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def doc_block(results: list[dict]) -> str:
    from services.judge.reps import EXERCISES

    L = ["Every figure below is on synthetic clips (services/judge/synth.py: 3D stick figure, random camera, "
         "detector-like noise) with labels from the documented criteria (FAULT_CRITERIA, SCORE_CRITERIA); "
         "none comes from real video or coaches. Test clips use seeds that neither these models nor the "
         "shipped SVMs were trained on. Regenerate with `python -m services.judge.lab.bootstrap_temporal`.", ""]
    L += ["**Repetition quality** (held-out test clips; a repetition is non-standard if any of its frames meets a fault "
          "criterion; positive class = non-standard):", "",
          "| sport | model | accuracy | precision | recall | F1 | test reps (non-standard) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        q, v = r["sequence"]["test"], r["svm_per_rep"]["test"]
        L.append(f"| {r['sport']} | LSTM + attention (P(non-standard) >= 0.5) | {_pct(q['accuracy'])} | {_pct(q['precision'])} | "
                 f"{_pct(q['recall'])} | **{_pct(q['f1'])}** | {q['reps']} ({q['non_standard']}) |")
        L.append(f"| {r['sport']} | per-frame SVMs, rep flagged if >= {100 * r['svm_per_rep']['k']:g}% of its frames are flagged "
                 f"(k chosen on validation) | {_pct(v['accuracy'])} | {_pct(v['precision'])} | {_pct(v['recall'])} | "
                 f"{_pct(v['f1'])} | {v['reps']} ({v['non_standard']}) |")
    L += ["", "| sport | train / val / test clips | train reps (non-standard) | epochs | weights | sequence.pt | model version |",
          "|---|---|---|---|---|---|---|"]
    for r in results:
        c, q = r["clips"], r["sequence"]
        L.append(f"| {r['sport']} | {c['train']} / {c['val']} / {c['test']} | {r['reps']['train']['reps']} "
                 f"({r['reps']['train']['non_standard']}) | {q['epochs']} | {q['params']} | {q['bytes'] / 1024:.0f} KB | "
                 f"{q['model_version']} |")
    L += ["", "**Repetition counting** (count = full repetitions; mean absolute error in repetitions per clip):", "",
          "| sport | primary signal | clips with pauses + partial reps: MAE | exact | within +-1 | true reps / clip | "
          "partial movements | clean clips: MAE (exact) | standard test clips: MAE (exact) |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        p, c, s = r["counting"]["pauses_partials"], r["counting"]["clean"], r["counting"]["standard_test"]
        L.append(f"| {r['sport']} | {EXERCISES[r['sport']].signal_name} | **{p['mae']:.3f}** | {_pct(p['exact'])}% | "
                 f"{_pct(p['within_1'])}% | {p['mean_true_reps']} | {p['partials']} | {c['mae']:.3f} ({_pct(c['exact'])}%) | "
                 f"{s['mae']:.3f} ({_pct(s['exact'])}%) |")
    L += ["", "**Action score** (0-100; held-out test clips; R-l2 x 100 as in CoRe; RSE = sum (pred - true)^2 / "
          "sum (true - mean)^2):", "",
          "| sport | model | Spearman rho | R-l2 x100 | RSE | MAE (points) | test clips | score mean +- sd (train) |",
          "|---|---|---|---|---|---|---|---|"]
    for r in results:
        s, direct = r["score"]["test"], r["score"]["direct_regression_test"]
        L.append(f"| {r['sport']} | pairwise (CoRe-style, K = 10 exemplars) | **{s['spearman']:.3f}** | {s['rel_l2_x100']:.3f} | "
                 f"{s['rse']:.3f} | {s['mae']:.1f} | {s['clips']} | {r['score']['score_train_mean_sd'][0]} +- "
                 f"{r['score']['score_train_mean_sd'][1]} |")
        for name, d in (("ablation: direct regression, MLP 64-64 (w/o exemplar)", direct["mlp"]),
                        ("ablation: direct regression, ridge", direct["ridge"])):
            L.append(f"| {r['sport']} | {name} | {d['spearman']:.3f} | {d['rel_l2_x100']:.3f} | "
                     f"{d['rse']:.3f} | {d['mae']:.1f} | {d['clips']} | |")
    L += ["", "Score models: " + "; ".join(f"{r['sport']} {r['score']['model_version']} ({r['score']['params']} weights, "
                                          f"{r['score']['features']} features, {r['score']['epochs']} epochs, "
                                          f"{r['score']['bytes'] / 1024:.0f} KB)" for r in results) + "."]
    return "\n".join(L)


def write_doc(results: list[dict], doc: Path = DOC) -> None:
    text = doc.read_text()
    block = "<!-- temporal:start -->\n" + doc_block(results) + "\n<!-- temporal:end -->"
    if "<!-- temporal:start -->" in text:
        text = re.sub(r"<!-- temporal:start -->.*?<!-- temporal:end -->", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sport", nargs="+", default=list(SPORTS), choices=SPORTS)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "packs")
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    results = [run_sport(s, args.out, args.seed) for s in args.sport]
    for r in results:   # full figures next to the models (the registry copies only pack.json, model.joblib, report.json)
        (args.out / r["sport"] / "temporal_report.json").write_text(json.dumps(r, indent=1) + "\n")
    if not args.no_doc:
        write_doc(results, args.doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
