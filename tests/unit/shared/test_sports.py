"""The sport catalogue (shared/sports.py): what the gateway lists and accepts, read without a model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.sports import (PACK_SPECS, RegistryError, SportCatalog, describe_meta, shipped_descriptions, shipped_meta,
                           shipped_sports)
from shared.store import StoreUnavailable, keys
from shared.testing import MemoryStore

ROOT = Path(__file__).resolve().parents[3]


def test_the_catalogue_describes_each_shipped_pack_as_the_loaded_pack_does():
    from services.judge.packs import available_packs, load_pack

    assert shipped_sports() == available_packs()
    assert shipped_descriptions() == {s: load_pack(s).describe() for s in available_packs()}
    assert set(PACK_SPECS) <= set(shipped_sports())


def test_an_empty_registry_lists_the_shipped_packs_and_a_seeded_one_its_current_versions():
    from services.judge.registry import ModelRegistry

    store = MemoryStore()
    assert SportCatalog(store).sports() == [] and SportCatalog(store).describe_all() == shipped_descriptions()
    ModelRegistry(store).ensure_seeded()
    cat = SportCatalog(store)
    assert cat.sports() == shipped_sports() and cat.describe_all() == shipped_descriptions()
    # a published version with another threshold is what the catalogue describes from then on
    meta = {**shipped_meta("plank"), "model_version": "plank-test", "thresholds": {"sagging_hips": 0.9, "piked_hips": 0.9}}
    store.put_json(keys.model_file("plank", "plank-test", "pack.json"), meta)
    store.put_json(keys.model_current("plank"), {"sport": "plank", "version": "plank-test"})
    assert SportCatalog(store).describe_all()["plank"] == describe_meta(meta)
    assert [f["threshold"] for f in SportCatalog(store).describe_all()["plank"]["faults"]] == [0.9, 0.9]
    with pytest.raises(RegistryError, match="no version 'nope'"):
        cat.meta("plank", "nope")
    with pytest.raises(RegistryError, match="not a sport name"):
        cat.current("../x")


def test_the_gateway_falls_back_to_the_shipped_packs_while_the_store_is_away():
    from services.gateway.deps import Deps
    from shared.settings import Settings

    class Away(MemoryStore):
        def iter_prefixes(self, prefix):
            raise StoreUnavailable("down")

    deps = Deps(Settings(), Away())
    assert deps.sports() == shipped_descriptions()
    assert deps.checked_sport("squat") == "squat"


def test_the_gateway_lists_sports_without_loading_a_model():
    """No scikit-learn, joblib or torch in the gateway process: the catalogue is pack.json only."""
    code = ("import sys; from services.gateway.app import create_app; from services.gateway.deps import Deps; "
            "from shared.settings import Settings; from shared.sports import shipped_descriptions; "
            "create_app(Settings()); assert shipped_descriptions(); "
            "bad = sorted(m for m in ('sklearn', 'joblib', 'torch', 'services.judge') if m in sys.modules); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_judge_runtime_does_not_import_the_synthetic_data_generator():
    code = ("import sys; import services.judge.worker, services.judge.packs, services.judge.registry; "
            "from services.judge.packs import available_packs, load_pack; [load_pack(p) for p in available_packs()]; "
            "from services.suggest import worker, catalog, library, retrieval; "
            "bad = sorted(m for m in ('services.judge.synth', 'lab.exemplars') if m in sys.modules); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
