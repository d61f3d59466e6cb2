"""Fault-model registry in object storage: versions per sport, one of them current.

    models/<sport>/<version>/pack.json      the pack's metadata (faults, features, thresholds, ...)
    models/<sport>/<version>/model.joblib   the fitted SVMs
    models/<sport>/<version>/report.json    evaluation report + training-data fingerprint (sha256 of the data files)
    models/<sport>/current.json             {"sport", "version", "published_at", "previous"}

A version's name is the pack's model_version (what every verdict names), so a verdict leads
straight to its model and report. Versions are immutable: uploading a version that exists is a
no-op. pack.json is written last, so a version with a pack.json is complete. On first use
(`ensure_seeded`) every shipped pack (services/judge/packs/) is uploaded as a version and made
current for sports that have no current version yet; a later release's shipped packs are
uploaded too but become current only through `coach judge publish`.

`publish` points current.json at a version and emits ModelPublished on the control topic; judge
workers reload that sport's pack without a restart (services/judge/worker.py).

Reading the registry without loading a model (sports, versions, current, a version's pack.json,
the catalogue the gateway lists) is shared.sports.SportCatalog, which ModelRegistry extends; keys
come from shared.store.keys.

model.joblib is a pickle: whoever can write under models/ can run code in the judge. The bucket is
as trusted as the rest of the pipeline's objects; the registry checks the file's sha256 against
the one recorded in report.json before loading it (integrity, not authenticity).
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
from pathlib import Path

from shared.messages import ModelPublished, utc_now
from shared.observability import log_fields
from shared.sports import RegistryError, SportCatalog, check_names
from shared.store import ObjectNotFound, ObjectStore, keys

from services.judge.packs import PACKS_ROOT, SportPack, available_packs, load_pack_dir

log = logging.getLogger("judge.registry")
FILES = ("pack.json", "model.joblib", "report.json")


def version_key(sport: str, version: str, name: str) -> str:
    check_names(sport, version)
    return keys.model_file(sport, version, name)


def current_key(sport: str) -> str:
    check_names(sport)
    return keys.model_current(sport)


def shipped_report(folder: Path) -> dict:
    """report.json for a shipped pack: its bootstrap evaluation and where its labels came from."""
    meta = json.loads((folder / "pack.json").read_text())
    info = meta.get("info", {})
    return {
        "schema": "coach.judge-report/1",
        "sport": meta["name"],
        "model_version": meta["model_version"],
        "labels": info.get("labels", "shipped pack"),
        "data": {"files": [], "fingerprint": None,
                 "source": "synthetic clips generated with fixed seeds by python -m services.judge.lab.bootstrap "
                           "(services/judge/synth.py); no data files"},
        "split": {"kind": "by-sequence", "sequences": info.get("sequences")},
        "evaluation": {"split": "by-sequence", "per_class": info.get("test", {})},
        "model_sha256": hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest(),
        "shipped": True,
    }


class ModelRegistry(SportCatalog):
    """The registry's reading side (sports, versions, current, meta, describe_all) is the shared
    sport catalogue's; this adds loading a version's models, uploading and publishing."""

    def __init__(self, store: ObjectStore, shipped_root: Path | None = None):
        super().__init__(store, shipped_root or PACKS_ROOT)
        self._lock = threading.Lock()
        self._seeded = False

    # ------------------------------------------------------------------ reading
    def report(self, sport: str, version: str) -> dict | None:
        try:
            return self.store.get_json(version_key(sport, version, "report.json"))
        except ObjectNotFound:
            return None

    def load(self, sport: str, version: str | None = None) -> SportPack:
        """The pack of a version (default: the current one), downloaded and checked."""
        version = version or self.current_version(sport)
        if version is None:
            raise RegistryError(f"no current model for {sport!r} in the registry")
        meta = self.meta(sport, version)
        report = self.report(sport, version) or {}
        model = self.store.get_bytes(version_key(sport, version, "model.joblib"))
        want = report.get("model_sha256")
        if want and hashlib.sha256(model).hexdigest() != want:
            raise RegistryError(f"{version_key(sport, version, 'model.joblib')} does not match the sha256 in its "
                                "report.json: refusing to load it")
        with tempfile.TemporaryDirectory(prefix="coach-pack-") as tmp:
            (Path(tmp) / "pack.json").write_text(json.dumps(meta))
            (Path(tmp) / "model.joblib").write_bytes(model)
            if meta.get("phase"):  # a phase model (squat up/down) travels next to the fault model
                name = meta["phase"].get("file", "phase.joblib")
                phase = self.store.get_bytes(version_key(sport, version, name))
                if report.get("phase_sha256") and hashlib.sha256(phase).hexdigest() != report["phase_sha256"]:
                    raise RegistryError(f"{version_key(sport, version, name)} does not match the sha256 in its report.json")
                (Path(tmp) / name).write_bytes(phase)
            pack = load_pack_dir(tmp)
        if pack.model_version != version:
            raise RegistryError(f"{version_key(sport, version, 'pack.json')} names version {pack.model_version!r}")
        return pack

    # ------------------------------------------------------------------ writing
    def upload(self, folder: str | Path, sport: str | None = None) -> tuple[str, str, bool]:
        """Upload a pack folder (pack.json, model.joblib, report.json) -> (sport, version, uploaded_now)."""
        folder = Path(folder)
        pack = load_pack_dir(folder)  # refuses anything that is not a loadable pack
        sport = sport or pack.name
        if sport != pack.name:
            raise RegistryError(f"the pack in {folder} is for {pack.name!r}, not {sport!r}")
        version = pack.model_version
        check_names(sport, version)
        if self.store.exists(version_key(sport, version, "pack.json")):
            return sport, version, False
        report_path = folder / "report.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else shipped_report(folder) \
            if folder.parent == self.shipped_root else None
        if report is None:
            raise RegistryError(f"{folder} has no report.json: train it with `coach judge train` (the registry keeps "
                                "each version's evaluation and training-data fingerprint)")
        model = (folder / "model.joblib").read_bytes()
        report.setdefault("model_sha256", hashlib.sha256(model).hexdigest())
        if report["model_sha256"] != hashlib.sha256(model).hexdigest():
            raise RegistryError(f"{folder}/model.joblib does not match the sha256 in its report.json")
        self.store.put_bytes(version_key(sport, version, "model.joblib"), model)
        phase_meta = json.loads((folder / "pack.json").read_text()).get("phase")
        if phase_meta:
            name = phase_meta.get("file", "phase.joblib")
            phase = (folder / name).read_bytes()
            report["phase_sha256"] = hashlib.sha256(phase).hexdigest()
            self.store.put_bytes(version_key(sport, version, name), phase)
        self.store.put_json(version_key(sport, version, "report.json"), report)
        self.store.put_bytes(version_key(sport, version, "pack.json"), (folder / "pack.json").read_bytes(),
                             "application/json")  # last: marks the version complete
        log.info("uploaded model version", extra=log_fields(sport=sport, version=version))
        return sport, version, True

    def set_current(self, sport: str, version: str) -> dict:
        self.meta(sport, version)  # exists?
        previous = self.current_version(sport)
        doc = {"sport": sport, "version": version, "published_at": utc_now(), "previous": previous}
        self.store.put_json(current_key(sport), doc)
        return doc

    def publish(self, sport: str, version: str, settings=None, producer=None) -> ModelPublished:
        """Make a version current and tell every judge worker (control topic) when settings are given."""
        doc = self.set_current(sport, version)
        msg = ModelPublished(sport=sport, version=version, published_at=doc["published_at"])
        if settings is not None:
            from shared import bus

            own = producer is None
            producer = producer or bus.make_producer(settings, client_id="coach-judge-publish")
            try:
                bus.send(producer, settings.topics.control, msg, sport).get(timeout=30)
            finally:
                if own:
                    producer.close(timeout=10)
        return msg

    def ensure_seeded(self) -> list[str]:
        """Upload the shipped packs (once per process); make them current where a sport has none."""
        with self._lock:
            if self._seeded:
                return []
            self.store.ensure_bucket()
            made_current = []
            for sport in available_packs(self.shipped_root):
                _, version, _ = self.upload(self.shipped_root / sport)
                if self.current(sport) is None:
                    self.set_current(sport, version)
                    made_current.append(f"{sport}={version}")
            self._seeded = True
            if made_current:
                log.info("seeded the model registry with the shipped packs", extra=log_fields(versions=made_current))
            return made_current
