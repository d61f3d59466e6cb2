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
    ("services.gateway.alignment", "services.tracker.align"),  # alignment runs in the gateway
    ("services.pose.strn_cli", "services.tracker.tracking"),   # lab code: STRN data recipe
    ("services.pose.strn_data", "services.tracker.evalset"),
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


KEY_PREFIXES = ("analyses/", "sessions/", "models/", "exemplars/", "auth/")


def _source_files(exclude: str) -> list[Path]:
    return [p for p in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")])
            if p.relative_to(ROOT).as_posix() != exclude]


def test_object_keys_are_built_only_in_the_store_module():
    """Every object key comes from shared.store.keys: no string (or f-string) that starts like a
    key anywhere else."""
    found = []
    for path in _source_files("shared/store.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            first = node.values[0] if isinstance(node, ast.JoinedStr) and node.values else node
            text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
            if text.startswith(KEY_PREFIXES) and not any(c.isspace() for c in text):   # a key, not prose
                found.append(f"  {path.relative_to(ROOT)}:{node.lineno}: {text[:60]!r}")
    assert not found, "object keys built outside shared/store.py (use shared.store.keys):\n" + "\n".join(sorted(set(found)))


def test_the_storage_sdk_stays_inside_the_store_module():
    """minio (and its S3Error) is imported by shared/store.py only; callers see ObjectNotFound,
    StoreUnavailable and StoreError."""
    found = []
    for path in _source_files("shared/store.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            found += [f"  {path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] == "minio"]
    assert not found, "the storage SDK imported outside shared/store.py:\n" + "\n".join(found)
