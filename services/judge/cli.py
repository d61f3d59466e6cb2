"""`coach judge list`: the model versions per sport in the registry (the rest of `coach judge`, with
its parser: services/judge/lab/cli.py; `_registry` is shared with its `publish`).
"""
from __future__ import annotations

import json
import sys


def _registry(settings):
    from shared.store import ObjectStore

    from services.judge.registry import ModelRegistry

    return ModelRegistry(ObjectStore(settings, retries=2, backoff_s=0.5))


def cmd_list(args) -> int:
    from shared.settings import Settings
    from shared.store import StoreUnavailable

    from services.judge.packs import available_packs

    settings = Settings.from_env()
    reg = _registry(settings)
    try:
        reg.ensure_seeded()
        rows = []
        for sport in reg.sports():
            cur = reg.current_version(sport)
            for v in reg.versions(sport):
                rep = reg.report(sport, v) or {}
                ev = rep.get("evaluation", {})
                per = ev.get("per_class", {})
                rows.append({"sport": sport, "version": v, "current": v == cur, "created_at": rep.get("created_at"),
                             "labels": rep.get("labels"), "split": ev.get("split"),
                             "macro_f1": ev.get("macro_f1", round(sum(c.get("f1", 0) for c in per.values()) / len(per), 4)
                                                 if per else None),
                             "data_fingerprint": rep.get("data", {}).get("fingerprint")})
    except StoreUnavailable as exc:
        print(f"coach judge: {exc}; shipped packs: {', '.join(available_packs())}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        f1 = f"{100 * r['macro_f1']:.1f}" if r["macro_f1"] is not None else "-"
        print(f"{'*' if r['current'] else ' '} {r['sport']:<12} {r['version']:<44} macro F1 {f1:>5}  "
              f"{(r['labels'] or '')[:60]}")
    print("* = current")
    return 0
