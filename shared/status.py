"""Reading the per-stage status objects (analyses/<id>/status/<stage>.json) that every worker writes.

Shared by the gateway (the status a client sees) and the watchdog (what is stalled), so both
agree on when an analysis is finished.
"""
from __future__ import annotations

from shared.store import ObjectStore, keys


def is_done(store: ObjectStore, aid: str, stages: dict[str, dict]) -> bool:
    """Finished with a result. Not only suggest's "done": a redelivered verdict (at-least-once)
    makes suggest run again and write "running" over it, while the result document, written only
    once complete, is already there."""
    suggest = stages.get("suggest")
    if suggest is None:      # suggest never ran: no result can exist (and no store call while running)
        return False
    return suggest.get("state") == "done" or store.exists(keys.result(aid))
