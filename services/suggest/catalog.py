"""The exemplar library as kept in object storage (exemplars/manifest.json + <sport>/<id>.{mp4,npz}).

The starter library ships in services/suggest/exemplars/ (built by the lab command `python -m
lab.exemplars build`) and is uploaded once to the store; workers read it from
the store, so a library replaced there (same layout) is what every worker serves. Keys:
shared.store.keys (exemplars_manifest, exemplar).
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from services.suggest.library import load_library
from services.suggest.retrieval import Exemplar, match_for, suggest
from shared.store import ObjectNotFound, ObjectStore, keys

log = logging.getLogger("suggest")
PACKAGED = Path(__file__).parent / "exemplars"


class ExemplarCatalog:
    def __init__(self, store: ObjectStore, packaged: Path = PACKAGED):
        self.store = store
        self.packaged = packaged
        self._exemplars: list[Exemplar] | None = None
        self._manifest: dict | None = None

    def ensure_uploaded(self) -> None:
        """Upload the packaged library unless the store holds this version (or a replacement)."""
        local = json.loads((self.packaged / "manifest.json").read_text())
        try:
            remote = self.store.get_json(keys.exemplars_manifest())
            if remote.get("version") == local["version"] or remote.get("replaced_by_operator"):
                return
        except ObjectNotFound:
            pass
        for e in local["exemplars"]:
            self.store.put_file(keys.exemplar(e["video"]), self.packaged / e["video"], "video/mp4")
            self.store.put_file(keys.exemplar(e["data"]), self.packaged / e["data"])
        self.store.put_json(keys.exemplars_manifest(), local)   # last: readers see a complete library
        log.info("exemplar library %s uploaded (%d clips)", local["version"], len(local["exemplars"]))

    def _load(self) -> list[Exemplar]:
        if self._exemplars is None:
            self.ensure_uploaded()
            self._manifest = self.store.get_json(keys.exemplars_manifest())
            with tempfile.TemporaryDirectory(prefix="coach-exemplars-") as tmp:
                root = Path(tmp)
                (root / "manifest.json").write_text(json.dumps(self._manifest))
                for e in self._manifest["exemplars"]:
                    (root / e["data"]).parent.mkdir(parents=True, exist_ok=True)
                    self.store.get_file(keys.exemplar(e["data"]), root / e["data"])
                self._exemplars = load_library(root)
        return self._exemplars

    def for_sport(self, sport: str) -> list[Exemplar]:
        return [e for e in self._load() if e.sport == sport]

    def version(self, sport: str) -> str:
        self._load()
        return str(self._manifest.get("version", ""))

    def suggest(self, segment_features, exemplars: list[Exemplar], fault: str, fps: float, k: int = 2) -> list[dict]:
        """Top-k exemplar windows for one fault segment, as result-document suggestions."""
        if not exemplars or len(segment_features) == 0:
            return []
        titles = {e.id: e.title for e in exemplars}
        video_keys = {e.id: keys.exemplar(e.video_key) for e in exemplars}
        out = []
        for s in suggest(segment_features, exemplars, k=k, sport=exemplars[0].sport, fps=fps, match=match_for(fault)):
            out.append({"exemplar_id": s["exemplar_id"], "title": titles[s["exemplar_id"]],
                        "video_key": video_keys[s["exemplar_id"]], "start_s": float(s["start_s"]),
                        "end_s": float(s["end_s"]), "similarity": float(s["similarity"]), "url": None})
        return out
