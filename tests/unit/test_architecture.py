"""Dependency rules, checked on the import graph of the source tree (issue #19).

Services meet only in `shared/` and on topics: no module of one service imports another
service, and `shared/` imports no service. The edges that break the rule today are listed in
KNOWN_DEBT with the reason they still exist; the test fails on any new edge, and on a listed
edge that has gone (so the list only shrinks). docs/architecture.md explains the rules.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (importing module, imported module) pairs still to be moved into shared/ or behind a topic.
KNOWN_DEBT = {
    ("services.gateway.deps", "services.judge.registry"),      # sport list / model registry reads
    ("services.gateway.deps", "services.judge.packs"),
    ("services.gateway.alignment", "services.tracker.align"),  # alignment runs in the gateway
    ("services.pose.strn_cli", "services.tracker.tracking"),   # lab code: STRN data recipe
    ("services.pose.strn_data", "services.tracker.evalset"),
    ("services.suggest.library", "services.judge"),            # pose features and packs
    ("services.suggest.library", "services.judge.features"),
    ("services.suggest.retrieval", "services.judge.features"),
    ("services.suggest.retrieval", "services.judge.packs"),
    ("services.suggest.worker", "services.judge.features"),
    ("services.suggest.worker", "services.judge.worker"),
    ("services.suggest.worker", "services.pose.biomech_report"),
    ("services.tracker.posecheck", "services.pose.blazepose"),
}


def _owner(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    return parts[0]


def _edges() -> set[tuple[str, str]]:
    edges = set()
    for path in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            else:
                continue
            for target in targets:
                if target.split(".")[0] not in ("services", "shared"):
                    continue
                src, dst = _owner(module), _owner(target)
                if src != dst and dst != "shared" and dst != "services":
                    edges.add((module, target))
    return edges


def test_no_service_imports_another_and_shared_imports_no_service():
    new = sorted(_edges() - KNOWN_DEBT)
    assert not new, ("these imports cross a service boundary (move the common code into shared/ "
                     "or talk over a topic; docs/architecture.md):\n"
                     + "\n".join(f"  {a} -> {b}" for a, b in new))


def test_known_debt_list_only_shrinks():
    gone = sorted(KNOWN_DEBT - _edges())
    assert not gone, ("these cross-service imports are gone: delete them from KNOWN_DEBT:\n"
                      + "\n".join(f"  {a} -> {b}" for a, b in gone))
