"""Dependency rules, checked on the import graph of the source tree (issue #19).

Services meet only in `shared/` and on topics: no module of one service imports another
service, and `shared/` imports no service. The edges that break the rule today are listed in
KNOWN_DEBT with the reason they still exist; the test fails on any new edge, and on a listed
edge that has gone (so the list only shrinks). The operator tools (`coach/`: CLI, client,
embedded stack, dlq, watchdog) may use everything, but nothing in `shared/` or `services/`
imports them, with no exceptions. docs/architecture.md explains the rules.

Lab code (training, evaluation, benchmarks) stays out of the runtime: `shared/` imports no `lab`
package, and no runtime module of a service (anything outside its `services/<name>/lab/`)
imports one, neither its own `lab/` nor the top-level `lab/` (experiments across services). A
service's `lab/` may use the top-level `lab/`.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# (importing module, imported module) pairs still to be moved into shared/ or behind a topic.
# Empty: the last edges (the sport catalogue, pose features, clip-poses reader) moved into shared/.
KNOWN_DEBT: set[tuple[str, str]] = set()

# (runtime module, lab module) pairs still to go.
LAB_DEBT: set[tuple[str, str]] = set()


def _owner(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    return parts[0]


def _modules(root: Path = ROOT) -> list[tuple[str, Path]]:
    paths = [*root.glob("services/**/*.py"), *root.glob("shared/**/*.py"), *root.glob("lab/**/*.py"),
             *root.glob("coach/**/*.py")]
    return [(".".join(p.relative_to(root).with_suffix("").parts), p) for p in sorted(paths)]


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) of every import of a file, inside functions too;
    relative imports made absolute (`from .lab import x` in services/tracker/worker.py ->
    services.tracker.lab, ["x"])."""
    package = module.split(".")[:-1]          # services/tracker/__init__.py is services.tracker.__init__
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out.append((target, [a.name for a in node.names]))
    return out


def _edges(root: Path = ROOT) -> set[tuple[str, str]]:
    edges = set()
    for module, path in _modules(root):
        if module.split(".")[0] not in ("services", "shared"):
            continue
        for target, _ in _imports(module, path):
            if target.split(".")[0] not in ("services", "shared"):
                continue
            src, dst = _owner(module), _owner(target)
            if src != dst and dst != "shared" and dst != "services":
                edges.add((module, target))
    return edges


def _is_lab(module: str) -> bool:
    """The top-level lab package or a service's lab sub-package (or anything inside them)."""
    parts = module.split(".")
    return parts[0] == "lab" or (parts[0] == "services" and len(parts) > 2 and parts[2] == "lab")


def _lab_edges(root: Path = ROOT) -> set[tuple[str, str]]:
    """Imports of lab code by shared/ or by a service's runtime modules."""
    edges = set()
    for module, path in _modules(root):
        if _is_lab(module) or module.split(".")[0] not in ("services", "shared"):
            continue
        for target, names in _imports(module, path):
            for t in [target] + [f"{target}.{n}" for n in names]:
                if _is_lab(t):
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


def test_runtime_and_shared_import_no_lab_code():
    new = sorted(_lab_edges() - LAB_DEBT)
    assert not new, ("runtime code imports lab code (training, evaluation, benchmarks belong in "
                     "services/<name>/lab/ or lab/, which only lab code and tests import):\n"
                     + "\n".join(f"  {a} -> {b}" for a, b in new))


def test_lab_debt_list_only_shrinks():
    gone = sorted(LAB_DEBT - _lab_edges())
    assert not gone, ("these lab imports are gone: delete them from LAB_DEBT:\n"
                      + "\n".join(f"  {a} -> {b}" for a, b in gone))


def test_shared_and_the_services_never_import_the_operator_tools():
    bad = sorted((m, t) for m, path in _modules() if m.split(".")[0] in ("services", "shared")
                 for t, _ in _imports(m, path) if t.split(".")[0] == "coach")
    assert not bad, ("`coach/` holds the operator tools (CLI, client, embedded stack, dlq, watchdog); "
                     "what a service needs at run time belongs in shared/:\n"
                     + "\n".join(f"  {a} -> {b}" for a, b in bad))


def test_the_import_graph_sees_the_packages_it_checks():
    """The rules above pass vacuously if the walk finds nothing: it must see real imports of each kind."""
    found = {(m, t) for m, path in _modules() for t, _ in _imports(m, path)}
    assert ("services.tracker.align_worker", "shared.worker") in found
    assert ("coach.cli", "coach.stack") in found            # imports inside functions are seen
    assert any(m.startswith("shared.") and t == "shared.store" for m, t in found)


def test_the_rules_catch_a_broken_tree(tmp_path):
    """The checks themselves: a tree that breaks each rule once is caught, and what is allowed
    (a service's lab using the top-level lab and its own core) is not."""
    files = {
        "services/tracker/__init__.py": "",
        "services/tracker/worker.py": "from .lab import bench\n",                           # own lab, relative
        "services/tracker/core.py": "def f():\n    import lab.walkers\n",                  # top-level lab, in a function
        "services/tracker/lab/__init__.py": "",
        "services/tracker/lab/bench.py": "from lab.walkers import SPRITES\nfrom ..core import f\n",
        "services/pose/worker.py": "from services.tracker import lab\n",                  # another service's lab
        "services/pose/model.py": "from services.tracker.core import f\n",                # another service
        "shared/cli.py": "import lab.pose_run\n",
        "lab/__init__.py": "",
        "lab/walkers.py": "from services.pose.model import x\n",                          # lab may import services
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _lab_edges(tmp_path) == {("services.tracker.worker", "services.tracker.lab"),
                                    ("services.tracker.core", "lab.walkers"),
                                    ("services.pose.worker", "services.tracker"),
                                    ("shared.cli", "lab.pose_run")}
    assert _edges(tmp_path) == {("services.pose.worker", "services.tracker"),
                                ("services.pose.model", "services.tracker.core")}


KEY_PREFIXES = ("analyses/", "sessions/", "models/", "exemplars/", "auth/")


def _source_files(exclude: str) -> list[Path]:
    """Every module of the runtime, the operator tools and the lab code, but `exclude`."""
    return [p for _, p in _modules() if p.relative_to(ROOT).as_posix() != exclude]


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


def _cycles(root: Path = ROOT) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (imports inside
    functions included: a lazy import that only hides a cycle still counts)."""
    mods = {m.removesuffix(".__init__"): p for m, p in _modules(root)}
    graph = {m: set() for m in mods}
    for m, p in _modules(root):
        for target, names in _imports(m, p):
            # `from . import appearance` names a submodule, not the package's __init__
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
            for t in subs or [target]:
                if t in mods and t != m.removesuffix(".__init__"):
                    graph[m.removesuffix(".__init__")].add(t)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, ("these modules import each other (split out what both need):\n"
                        + "\n".join("  " + " <-> ".join(c) for c in cycles))


def test_the_cycle_check_finds_a_lazy_cycle(tmp_path):
    for name, text in {"shared/a.py": "import shared.b\n", "shared/b.py": "def f():\n    from shared.a import x\n",
                       "shared/c.py": "import shared.a\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cycles(tmp_path) == [["shared.a", "shared.b"]]
