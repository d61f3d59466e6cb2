"""`coach judge ...`: train fault models on labelled data, evaluate them, publish them to the registry.

    coach judge train   --sport NAME --data FILE [FILE...] --out DIR [--labels FILE] [--grid] [--kind frame|sequence]
                        [--select fixed|cv] [--label-map C=correct,L=knee_over_toe] [--phase-of PACKDIR]
    coach judge eval    --model DIR --data FILE [FILE...] [--labels FILE] [--json] [--kind frame|sequence]
    coach judge publish --model DIR|VERSION [--sport NAME]
    coach judge list    [--json]

Data formats: services/judge/datasets.py and docs/judge.md ("Training data"). `train` writes
pack.json + model.joblib + report.json into DIR; `publish` uploads DIR to the registry in object
storage (COACH_S3_* settings) as a version, makes it current and tells running judge workers,
which switch to it without a restart. `publish --model VERSION --sport NAME` makes an existing
version current again (roll back).

`--kind frame` (default) is the per-frame SVM pack; `--kind sequence` trains / evaluates the
per-repetition LSTM + attention model (services/judge/sequence.py) on the same data formats:
repetitions are found by services/judge/reps.py and one is non-standard if any of its frames
carries a fault label; DIR receives sequence.pt + sequence_report.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.judge.cli import _registry, cmd_list


def _err(msg: str) -> int:
    print(f"coach judge: {msg}", file=sys.stderr)
    return 2


def table9(evaluation: dict) -> str:
    """Per-class precision / recall / F1 in the paper's Table 9 form (markdown)."""
    per = evaluation["per_class"]
    names = list(per)
    lines = ["| Metrics (%) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1")):
        lines.append(f"| {label} | " + " | ".join(f"{100 * per[n][key]:.1f}" for n in names) + " |")
    lines.append("| support (frames) | " + " | ".join(str(per[n]["support"]) for n in names) + " |")
    thr = evaluation.get("thresholds", {})
    if thr:
        lines.append("| threshold | " + " | ".join(f"{thr[n]:.2f}" if n in thr else "-" for n in names) + " |")
    return "\n".join(lines)


def cmd_train(args) -> int:
    if getattr(args, "kind", "frame") == "sequence":
        return cmd_train_sequence(args)
    from services.judge.datasets import DatasetError, load_training_data, parse_label_map
    from services.judge.lab.training import train, write_pack
    from shared.sports import PACK_SPECS, SPORT_RE, spec_from_meta

    if not SPORT_RE.match(args.sport):
        return _err(f"--sport {args.sport!r}: use lower case letters, digits and _")
    spec = None
    if args.spec:
        meta = json.loads(Path(args.spec).read_text())
        spec = spec_from_meta({"name": args.sport, "thresholds": {}, **meta})
    faults = spec.fault_ids if spec else (PACK_SPECS[args.sport].fault_ids if args.sport in PACK_SPECS else None)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        label_map = parse_label_map(args.label_map)
        if args.select == "cv" and label_map:
            faults = None  # the map names the classes; known faults keep their descriptions via the spec
        ds = load_training_data(args.data, args.labels, faults, args.fps, label_map)
        for note in ds.notes:
            log(f"note: {note}")
        if args.select == "cv" or args.phase_of:
            from services.judge.lab.selection import train_cv
            pack, report = train_cv(args.sport, ds, spec, label_source=args.label_source or "", seed=args.seed, log=log,
                                    quick=args.quick_select)
        else:
            pack, report = train(args.sport, ds, spec, grid=args.grid, seed=args.seed, label_source=args.label_source or "",
                                 log=log)
    except (DatasetError, FileNotFoundError) as exc:
        return _err(str(exc))
    if args.phase_of:
        return _attach_phase(args, pack, report, ds)
    if args.select == "cv":
        from services.judge.lab.train_real_packs import FAMILY
        version = write_pack(pack, report, args.out, family=FAMILY[report["model"]["name"]])
    else:
        version = write_pack(pack, report, args.out)
    ev = report["evaluation"]
    if args.json:
        print(json.dumps({"model_version": version, "out": str(args.out), "evaluation": ev,
                          "dropped_faults": report["dropped_faults"]}, indent=1))
        return 0
    print(f"trained {version} -> {args.out}")
    print(f"data: {ds.frames} frames, {len(ds.sequences)} sequence(s), {ds.mode}, fingerprint {ds.fingerprint()[:16]}...")
    print(f"split: {ev['split']} ({report['split']['description']})")
    for fid, why in report["dropped_faults"].items():
        print(f"not trained: {fid}: {why}")
    print(f"test macro F1 {100 * ev['macro_f1']:.1f} over {', '.join(ev['macro_over'])}")
    print(table9(ev))
    print(f"publish with: coach judge publish --model {args.out}")
    return 0


def _attach_phase(args, pack, report, ds) -> int:
    """Store a two-class model (e.g. squat up/down) as the phase model of the pack in --phase-of."""
    from services.judge.packs import load_pack_dir
    from services.judge.lab.selection import as_phase, attach_phase

    if len(ds.classes) != 1:
        return _err(f"--phase-of needs two classes (one mapped to correct), got correct + {', '.join(ds.classes)}")
    target = load_pack_dir(args.phase_of)
    inverse = {v: k for k, v in __import__("services.judge.datasets", fromlist=["x"]).parse_label_map(args.label_map).items()}
    out = Path(args.out)
    phase = as_phase(pack, report, (inverse.get("correct", "correct"), ds.classes[0]), ds.classes[0])
    report["model_version"] = attach_phase(target, phase, out, keep_models=out.resolve() == Path(args.phase_of).resolve())
    (out / "phase_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"phase model ({report['model']['name']}, CV macro F1 {report['selection']['chosen']['cv_macro_f1']:.3f}, "
          f"{report['evaluation']['split']} {report['evaluation']['macro_f1_all_classes']:.3f}) added to {target.name} -> {out}: "
          f"{target.model_version}")
    return 0


def _eval_selection(report: dict | None, ds):
    """Frames to score: for sequences from a file the model was trained on, only the training
    run's test split; data the model never saw is scored whole. -> (select, split, detail)."""
    from services.judge.lab.training import _in_ranges

    trained = {f["sha256"] for f in (report or {}).get("data", {}).get("files", [])}
    seen = [s.sha256 in trained for s in ds.sequences]
    if not any(seen):
        return None, "held-out-data", ("every frame: none of these files was used to train the model "
                                       "(their sha256 differ from the training data's)")
    ranges = report.get("split", {}).get("groups", {}).get("test", [])
    kind = report.get("split", {}).get("kind", "by-sequence")
    if kind == "positional-blocks":  # --select cv: the shipped model was refit on every row of its files
        return None, "training-data", ("every frame, in-sample: the model was refit on all rows of these files "
                                       "(its out-of-fold figures are in report.json)")

    def select(i, s):
        return _in_ranges(s.name, len(s), ranges) if seen[i] else __import__("numpy").ones(len(s), bool)

    if all(seen):
        return select, kind, ("the training run's held-out test split of the same files "
                              f"({report['split'].get('description', '')})")
    return select, "mixed", (f"{kind} test split for the {sum(seen)} sequence(s) from training files, every frame of "
                             f"the {len(seen) - sum(seen)} from other files")


def cmd_eval(args) -> int:
    if getattr(args, "kind", "frame") == "sequence":
        return cmd_eval_sequence(args)
    from services.judge.datasets import DatasetError, load_training_data
    from services.judge.packs import load_pack_dir
    from services.judge.lab.training import evaluate

    try:
        pack = load_pack_dir(args.model)
    except FileNotFoundError as exc:
        return _err(str(exc))
    rp = Path(args.model) / "report.json"
    report = json.loads(rp.read_text()) if rp.is_file() else None
    try:
        from services.judge.datasets import parse_label_map
        ds = load_training_data(args.data, args.labels, None, args.fps, parse_label_map(args.label_map))
        select, split, detail = _eval_selection(report, ds)
        ev = evaluate(pack, ds, select)
    except DatasetError as exc:
        return _err(str(exc))
    out = {"macro_f1": ev["macro_f1"], "per_class": ev["per_class"], "confusion": ev["confusion"], "split": split,
           "split_detail": detail, "mode": ev["mode"], "model_version": pack.model_version,
           "frames": ev["frames"], "frames_scored": ev["frames_scored"],
           "frames_without_verdict": ev["frames_without_verdict"], "macro_over": ev["macro_over"],
           "thresholds": ev["thresholds"], "data_fingerprint": ds.fingerprint(), "notes": ds.notes}
    if "not_evaluated" in ev:
        out["not_evaluated"] = ev["not_evaluated"]
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{pack.model_version} on {', '.join(f['name'] for f in ds.files)}: split {split} ({detail})")
        print(f"macro F1 {100 * ev['macro_f1']:.1f} over {', '.join(ev['macro_over'])}; "
              f"{ev['frames_scored']} frames scored, {ev['frames_without_verdict']} without a verdict")
        print(table9(ev))
    return 0


def cmd_train_sequence(args) -> int:
    from services.judge import sequence as Q
    from services.judge.datasets import DatasetError, load_training_data
    from shared.sports import PACK_SPECS

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        faults = PACK_SPECS[args.sport].fault_ids if args.sport in PACK_SPECS else None
        ds = load_training_data(args.data, args.labels, faults, args.fps)
        for note in ds.notes:
            log(f"note: {note}")
        model, report = Q.train_dataset(args.sport, ds, seed=args.seed, label_source=args.label_source or "", log=log)
    except (DatasetError, FileNotFoundError) as exc:
        return _err(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = model.save(out / "sequence.pt")
    (out / "sequence_report.json").write_text(json.dumps(report, indent=1) + "\n")
    ev = report["evaluation"]
    if args.json:
        print(json.dumps({"model_version": model.model_version, "out": str(out), "kind": "sequence", "evaluation": ev}, indent=1))
        return 0
    print(f"trained {model.model_version} -> {out}/sequence.pt ({size / 1024:.0f} KB)")
    print(f"data: {ds.frames} frames, {len(ds.sequences)} sequence(s); split by sequence: "
          f"{len(report['split']['train'])} train, {len(report['split']['val'])} val, {len(report['split']['test'])} test")
    print(f"test repetitions: {ev['reps']} ({ev['non_standard']} non-standard): accuracy {100 * ev['accuracy']:.1f}, "
          f"F1 (non-standard) {100 * ev['f1']:.1f}, precision {100 * ev['precision']:.1f}, recall {100 * ev['recall']:.1f}")
    return 0


def cmd_eval_sequence(args) -> int:
    import numpy as np

    from services.judge import sequence as Q
    from services.judge.datasets import DatasetError, load_training_data

    path = Path(args.model)
    pt = path / "sequence.pt" if path.is_dir() else path
    if not pt.is_file():
        return _err(f"{args.model}: no sequence.pt (train one with `coach judge train --kind sequence`)")
    model = Q.load(pt)
    rp = pt.parent / "sequence_report.json"
    report = json.loads(rp.read_text()) if rp.is_file() else {}
    trained = {f["sha256"] for f in report.get("data", {}).get("files", [])}
    test = set(report.get("split", {}).get("test", []))
    try:
        ds = load_training_data(args.data, args.labels, None, args.fps)
        seen = [s.sha256 in trained for s in ds.sequences]
        ev = Q.evaluate_dataset(model, ds, lambda i, s: np.full(len(s), (not seen[i]) or s.name in test))
    except DatasetError as exc:
        return _err(str(exc))
    split = "held-out-data" if not any(seen) else ("by-sequence" if all(seen) else "mixed")
    detail = {"held-out-data": "every sequence: none of these files was used to train the model",
              "by-sequence": "the training run's held-out test sequences of the same files",
              "mixed": "test sequences of the training files, every sequence of the other files"}[split]
    out = {"kind": "sequence", **ev, "split": split, "split_detail": detail, "model_version": model.model_version,
           "label_rule": "a repetition is non-standard if any of its frames has a fault label",
           "data_fingerprint": ds.fingerprint()}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{model.model_version}: split {split} ({detail})")
        print(f"{ev['reps']} repetitions ({ev['non_standard']} non-standard): accuracy {100 * ev['accuracy']:.1f}, "
              f"F1 (non-standard) {100 * ev['f1']:.1f}, precision {100 * ev['precision']:.1f}, recall {100 * ev['recall']:.1f}")
    return 0


def cmd_publish(args) -> int:
    from shared.settings import Settings
    from shared.store import StoreUnavailable

    from services.judge.registry import RegistryError

    settings = Settings.from_env()
    reg = _registry(settings)
    try:
        reg.ensure_seeded()
        if Path(args.model).is_dir():
            sport, version, new = reg.upload(args.model, args.sport)
            print(f"{'uploaded' if new else 'already in the registry'}: models/{sport}/{version}/")
        else:
            if not args.sport:
                return _err(f"{args.model} is not a directory; to make an existing version current give --sport too")
            sport, version = args.sport, args.model
        previous = reg.current_version(sport)
        try:
            msg = reg.publish(sport, version, settings)
            sent = f"ModelPublished sent on {settings.topics.control!r}"
        except Exception as exc:  # noqa: BLE001 — current.json is written; workers recheck it
            msg = None
            sent = (f"the control message could not be sent ({type(exc).__name__}: {exc}); running judge workers "
                    "switch at their next registry check (within 60 s)")
    except StoreUnavailable as exc:
        return _err(f"{exc}; start the stack (`coach up`) or set COACH_S3_ENDPOINT")
    except (RegistryError, FileNotFoundError) as exc:
        return _err(str(exc))
    print(f"current {sport}: {version} (was {previous or 'none'}); {sent}")
    if args.json and msg is not None:
        print(msg.model_dump_json(by_alias=True))
    return 0


def register(subparsers) -> None:
    judge = subparsers.add_parser("judge", help="train, evaluate and publish fault models (sport packs)",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = judge.add_subparsers(dest="judge_cmd", required=True)

    tr = sub.add_parser("train", help="train a sport pack on labelled frames")
    tr.add_argument("--sport", required=True, help="sport name: a shipped pack's (its faults and features) or a new one")
    tr.add_argument("--data", required=True, nargs="+", help="landmark CSV file(s) and/or result documents (.json)")
    tr.add_argument("--labels", help="frame ranges -> faults for the result documents (JSON or CSV)")
    tr.add_argument("--out", required=True, type=Path, help="folder for pack.json, model.joblib, report.json")
    tr.add_argument("--grid", action="store_true", help="search C and gamma on the validation split")
    tr.add_argument("--select", choices=("fixed", "cv"), default="fixed",
                    help="fixed: one RBF SVM per fault (default); cv: features from the data's landmarks and the best of "
                         "SVM grid / logistic regression / gradient boosting by positional cross-validation (real data)")
    tr.add_argument("--quick-select", action="store_true", help="with --select cv: one candidate per model family")
    tr.add_argument("--label-map", help="the file's label values -> fault ids or correct, e.g. C=correct,L=knee_over_toe")
    tr.add_argument("--phase-of", help="a pack folder: store this two-class model as its phase model (e.g. squat "
                                       "up/down) and write the pack to --out")
    tr.add_argument("--fps", type=float, default=30.0, help="frame rate of CSV rows without an fps column (default 30)")
    tr.add_argument("--spec", help="JSON with title, faults, features (pack.json's shape) for a new sport")
    tr.add_argument("--label-source", help="who/what labelled the data (recorded in the report and docs)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--json", action="store_true", help="print the result as JSON")
    tr.add_argument("--quiet", action="store_true", help="no progress on stderr")
    tr.add_argument("--kind", choices=("frame", "sequence"), default="frame",
                    help="frame: per-frame SVMs (default); sequence: per-repetition LSTM + attention (exercise sports)")
    tr.set_defaults(fn=cmd_train)

    ev = sub.add_parser("eval", help="precision / recall / F1 of a trained pack on labelled data")
    ev.add_argument("--model", required=True, help="a folder written by `coach judge train`")
    ev.add_argument("--data", required=True, nargs="+")
    ev.add_argument("--labels")
    ev.add_argument("--label-map", help="the file's label values -> fault ids or correct, e.g. C=correct,L=knee_over_toe")
    ev.add_argument("--fps", type=float, default=30.0)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--kind", choices=("frame", "sequence"), default="frame",
                    help="sequence: evaluate a sequence.pt per repetition")
    ev.set_defaults(fn=cmd_eval)

    pu = sub.add_parser("publish", help="upload a pack to the registry, make it current, reload judge workers")
    pu.add_argument("--model", required=True, help="a folder written by `coach judge train`, or a version in the registry")
    pu.add_argument("--sport", help="the sport (checked against the pack; required with a version)")
    pu.add_argument("--json", action="store_true", help="also print the control message")
    pu.set_defaults(fn=cmd_publish)

    ls = sub.add_parser("list", help="model versions per sport in the registry")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_list)
