"""Reading the per-stage status objects (analyses/<id>/status/<stage>.json) that every worker writes.

Shared by the gateway (the status a client sees) and the watchdog (what is stalled), so both
agree on when an analysis is finished.
"""
from __future__ import annotations

from shared.documents import AthleteSelection, StageStatus
from shared.store import ObjectNotFound, ObjectStore, keys


def stage_statuses(store: ObjectStore, aid: str) -> dict[str, StageStatus]:
    """stage -> its status document, for the stages that have written one."""
    stages = {}
    for key in store.list(keys.status_prefix(aid)):
        doc = StageStatus.read(store, key)
        stages[doc.stage] = doc
    return stages


def requested_revision(store: ObjectStore, aid: str) -> int:
    """The athlete revision the analysis must reach: 0, or that of the user's latest athlete switch."""
    try:
        return AthleteSelection.read(store, keys.selection(aid)).revision
    except ObjectNotFound:
        return 0


def is_done(store: ObjectStore, aid: str, stages: dict[str, StageStatus]) -> bool:
    """Finished with a result. Not only suggest's "done": a redelivered verdict (at-least-once)
    makes suggest run again and write "running" over it, while the result document, written only
    once complete, is already there. After an athlete switch (revision N) only a result of
    revision N counts: suggest's status says which revision its stored result has."""
    suggest = stages.get("suggest")
    if suggest is None:      # suggest never ran: no result can exist (and no store call while running)
        return False
    wanted = requested_revision(store, aid)
    if suggest.state == "done":
        return (suggest.revision or 0) >= wanted
    if wanted == 0:
        return store.exists(keys.result(aid))
    return (suggest.result_revision if suggest.result_revision is not None else -1) >= wanted
