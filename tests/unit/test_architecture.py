"""Dependency rules, checked on the import graph of the source tree (issue #19).

Services meet only in `shared/` and on topics: no module of one service imports another
service, and `shared/` imports no service. The edges that break the rule today are listed in
KNOWN_DEBT with the reason they still exist; the test fails on any new edge, and on a listed
edge that has gone (so the list only shrinks). The operator tools (`coach/`: CLI, client,
embedded stack, dlq, watchdog) may use everything, but nothing in `shared/` or `services/`
imports them, with no exceptions. docs/architecture.md explains the rules.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (importing module, imported module) pairs still to be moved into shared/ or behind a topic.
KNOWN_DEBT = {
    ("services.gateway.deps", "services.judge.registry"),      # sport list / model registry reads
    ("services.gateway.deps", "services.judge.packs"),
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


def _imports(*packages: str) -> set[tuple[str, str]]:
    """(module, imported module) for every module under the packages, imports inside functions included."""
    out = set()
    for path in sorted(p for pkg in packages for p in ROOT.glob(f"{pkg}/**/*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out.update((module, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add((module, node.module))
    return out


def _edges() -> set[tuple[str, str]]:
    edges = set()
    for module, target in _imports("services", "shared"):
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


def test_shared_and_the_services_never_import_the_operator_tools():
    bad = sorted((m, t) for m, t in _imports("services", "shared") if t.split(".")[0] == "coach")
    assert not bad, ("`coach/` holds the operator tools (CLI, client, embedded stack, dlq, watchdog); "
                     "what a service needs at run time belongs in shared/:\n"
                     + "\n".join(f"  {a} -> {b}" for a, b in bad))


def test_the_import_graph_sees_the_packages_it_checks():
    """The rules above pass vacuously if the walk finds nothing: it must see real imports of each kind."""
    found = _imports("services", "shared", "coach")
    assert ("services.tracker.align_worker", "shared.worker") in found
    assert ("coach.cli", "coach.stack") in found            # imports inside functions are seen
    assert any(m.startswith("shared.") and t == "shared.store" for m, t in found)
