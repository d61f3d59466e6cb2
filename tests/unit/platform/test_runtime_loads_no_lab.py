"""What a worker process loads holds no lab code (issue #19): the import-graph rules
(test_architecture.py) read `import` statements; this imports, in a fresh interpreter per service,
every runtime module of the service (its worker first; anything outside `services/<name>/lab/`,
`__main__` left out since it starts the service) and looks at `sys.modules`, so an import the AST
check cannot see (importlib, `__import__`, a third module that pulls lab code in) is caught too."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
def is_lab(m):
    parts = m.split(".")
    return parts[0] == "lab" or (parts[0] == "services" and len(parts) > 2 and parts[2] == "lab")
print(json.dumps(sorted(m for m in sys.modules if is_lab(m))))
"""


def runtime_modules(service: str) -> list[str]:
    """The service's runtime modules, its worker(s) first."""
    pkg = ROOT / "services" / service
    names = []
    for p in sorted(pkg.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("").parts
        if "lab" in rel[2:] or rel[-1] == "__main__":
            continue
        names.append(".".join(rel[:-1] if rel[-1] == "__init__" else rel))
    return sorted(names, key=lambda n: (not n.endswith("worker"), n))


def lab_modules_loaded(modules: list[str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_service_has_a_worker_or_entry_point():
    assert {"gateway", "judge", "pose", "suggest", "tracker"} <= set(SERVICES)
    for service in SERVICES:
        mods = runtime_modules(service)
        assert any(m.endswith("worker") for m in mods) or service == "gateway", (service, mods)


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_modules_load_no_lab_code(service):
    mods = runtime_modules(service)
    loaded = lab_modules_loaded(mods)
    assert not loaded, (f"importing services.{service}'s runtime modules loads lab code (training, evaluation, "
                        f"benchmarks; docs/architecture.md):\n  " + "\n  ".join(loaded))


def test_the_probe_sees_lab_code():
    """The check can fail: importing a lab module is reported."""
    assert "services.tracker.lab" in lab_modules_loaded(["services.tracker.lab"])
