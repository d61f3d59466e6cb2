"""Watchdog: no analysis stays `queued` or `running` forever.

Every `watchdog_interval_s` it looks at recent analyses. One whose stages have written no
progress for `stall_timeout_s` is re-driven: its AnalysisRequested (kept in request.json) is
produced again and the whole analysis re-runs; every step is idempotent, so work already done
is overwritten with the same result. After `max_redrives` re-drives it is marked failed with
the stage it was stuck in. State lives in the store (analyses/<id>/watchdog.json), so the
watchdog can restart or run beside another copy.

Run: `python -m coach.watchdog` (the embedded stack starts one).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timezone

from prometheus_client import Counter

from shared import bus
from shared.documents import AnalysisRequest, AthleteSelection, MalformedDocument, StageStatus
from shared.messages import AnalysisCompleted, utc_now
from shared.observability import log_fields, serve_health, setup_logging
from shared.settings import Settings
from shared.status import is_done, stage_statuses
from shared.store import ObjectNotFound, ObjectStore, keys

log = logging.getLogger("watchdog")
STAGES = ("tracker", "pose", "judge", "suggest")
ACTIONS = Counter("coach_watchdog_actions_total", "Stalled analyses re-driven or failed", ["action", "stage"])


def _ts(text: str) -> float:
    t = datetime.fromisoformat(text)
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def inspect(store: ObjectStore, aid: str) -> dict | None:
    """State of one analysis: None when finished (done/failed), else its request, stuck stage and idle seconds."""
    request = AnalysisRequest.read(store, keys.request(aid))
    stages = stage_statuses(store, aid)
    if any(d.state == "failed" for d in stages.values()) or is_done(store, aid, stages):
        return None
    last = max([_ts(request.submitted_at)] + [_ts(d.updated_at) for d in stages.values()])
    # the first stage not done is where it is stuck
    stage = next((s for s in STAGES if s not in stages or stages[s].state != "done"), "suggest")
    return {"request": request, "stage": stage, "idle_s": time.time() - last}


class Watchdog:
    def __init__(self, settings: Settings, store: ObjectStore | None = None):
        self.settings = settings
        self.store = store or ObjectStore(settings)
        self._producer = None

    def producer(self):
        if self._producer is None:
            self._producer = bus.make_producer(self.settings, "watchdog")
        return self._producer

    def _selection(self, aid: str) -> AthleteSelection | None:
        try:
            return AthleteSelection.read(self.store, keys.selection(aid))
        except ObjectNotFound:
            return None

    def recent_ids(self, limit: int = 500) -> list[str]:
        return self.store.analysis_ids()[-limit:]   # ids are time-ordered: the newest analyses

    def check_once(self) -> list[tuple[str, str]]:
        """One pass; returns (analysis id, action) for each analysis acted on."""
        s = self.settings
        acted = []
        for aid in self.recent_ids():
            try:
                state = inspect(self.store, aid)
            except (ObjectNotFound, MalformedDocument, ValueError):
                continue   # half-written or foreign prefix
            if state is None or state["idle_s"] < s.stall_timeout_s:
                continue
            wd_key = keys.watchdog(aid)
            try:
                wd = self.store.get_json(wd_key)
            except ObjectNotFound:
                wd = {"redrives": []}
            stage, idle = state["stage"], round(state["idle_s"])
            request: AnalysisRequest = state["request"]
            if len(wd["redrives"]) < s.max_redrives and request.message is not None:
                # after an athlete switch the switch is re-driven (tracking is done; re-tracking
                # would bring back the policy's athlete), else the whole analysis
                selection = self._selection(aid)
                if selection is not None and selection.message is not None:
                    topic, msg = s.topics.athlete_selections, selection.message
                else:
                    topic, msg = s.topics.analyses, request.message
                wd["redrives"].append({"at": utc_now(), "stage": stage, "idle_s": idle})
                self.store.put_json(wd_key, wd)
                # a status touch restarts the idle clock: the re-drive gets a full timeout
                self.store.put_json(keys.status(aid, "tracker"), StageStatus(
                    stage="tracker", state="queued", fraction=0.0, updated_at=utc_now(),
                    note=f"re-driven by the watchdog after {idle} s without progress in {stage}",
                    revision=msg.revision if topic == s.topics.athlete_selections else None))
                bus.send(self.producer(), topic, msg, aid).get(timeout=30)
                ACTIONS.labels("redrive", stage).inc()
                log.warning("re-driving stalled analysis", extra=log_fields(
                    analysis_id=aid, stage=stage, idle_s=idle, redrive=len(wd["redrives"])))
                acted.append((aid, "redrive"))
            else:
                reason = (f"stalled in {stage}: no progress for {idle} s"
                          + (f" after {len(wd['redrives'])} re-drive(s)" if wd["redrives"] else ""))
                self.store.put_json(keys.status(aid, stage), StageStatus(
                    stage=stage, state="failed", fraction=0.0, updated_at=utc_now(), error=reason))
                bus.send(self.producer(), s.topics.results,
                         AnalysisCompleted(analysis_id=aid, status="failed", error=reason), aid).get(timeout=30)
                ACTIONS.labels("fail", stage).inc()
                log.error("failing stalled analysis", extra=log_fields(analysis_id=aid, stage=stage, reason=reason))
                acted.append((aid, "fail"))
        return acted


def main() -> None:
    settings = Settings.from_env()
    setup_logging("watchdog", settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    dog = Watchdog(settings)
    last_pass = [time.monotonic()]
    serve_health(settings.metrics_port, lambda: (time.monotonic() - last_pass[0] < 10 * settings.watchdog_interval_s + 60,
                                                 {"service": "watchdog"}), host=settings.metrics_host)
    log.info("started", extra=log_fields(stall_timeout_s=settings.stall_timeout_s, max_redrives=settings.max_redrives))
    while not stop.wait(settings.watchdog_interval_s):
        try:
            dog.check_once()
        except Exception:  # noqa: BLE001 — an unreachable store must not kill the watchdog
            log.exception("watchdog pass failed; will try again")
        last_pass[0] = time.monotonic()


if __name__ == "__main__":
    main()
