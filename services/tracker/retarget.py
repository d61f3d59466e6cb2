"""Athlete switch: another tracked person becomes the athlete of a finished analysis.

consume `athlete-selections` (AthleteSelected, from POST /v1/analyses/{id}/athlete) -> rewrite
tracking.json's target from that person's stored boxes (`athletes`), clear the previous target's
clip poses -> produce `clips` (TrackedClip with the selection's revision) for pose, judge and
suggest. Detection and tracking are not run again: every person's frames and boxes are stored.

At least once: tracking.json (with the revision) is written before anything else, so a redelivery
finds it applied and only clears and publishes again (same keys, same messages). A selection older
than the latest one the gateway accepted (selection.json) or than tracking.json is dropped.
"""
from __future__ import annotations

import logging

from shared.documents import AnalysisRequest, AthleteSelection, ChosenAthlete, TrackerChoice, TrackingDocument
from shared.messages import AthleteSelected, FrameRef, TrackedClip, VideoInfo
from shared.observability import log_fields
from shared.store import ObjectNotFound, keys
from shared.worker import AnalysisFailed, Context

log = logging.getLogger("tracker")
USER_REASON = "chosen by the user"


class UnknownTrack(ValueError):
    pass


def retarget(tracking: TrackingDocument, track_id: int, revision: int,
             requested_at: str | None = None) -> TrackingDocument:
    """tracking.json with `track_id` as the athlete (first in `athletes`), the previous choice kept
    under `choice.previous`. Raises UnknownTrack naming the valid ids."""
    people = tracking.athletes
    person = next((a for a in people if a.track_id == track_id), None)
    if person is None:
        ids = ", ".join(str(a.track_id) for a in people) or "none"
        raise UnknownTrack(f"track {track_id} is not among the people tracked in this analysis (track ids: {ids})")
    old = tracking.athlete
    previous = tracking.choice.model_dump() if tracking.choice else {"track_id": old.track_id, "reason": old.reason}
    return tracking.model_copy(update={
        "athlete": ChosenAthlete(track_id=track_id, reason=USER_REASON, candidates=old.candidates),
        "choice": TrackerChoice(track_id=track_id, reason=USER_REASON, policy="user", alternatives=[],
                                requested_at=requested_at, previous=previous),
        "athletes": [person] + [a for a in people if a.track_id != track_id],
        "revision": revision,
    })


def clips_of(tracking: TrackingDocument, sport: str) -> list[TrackedClip]:
    """The TrackedClip messages of tracking.json's athlete: every frame once, in the analysis's clip
    layout (tracking.json's clip_frames and first_clip_frames, shared/clips.py), so the clip count,
    which the judge waits for, and each clip's frames are those the tracker published."""
    aid, fps, n = tracking.analysis_id, float(tracking.fps), int(tracking.frames)
    person = tracking.athletes[0]
    boxes = dict(zip(person.frames, person.boxes_px))
    info = VideoInfo(fps=fps, width=tracking.width, height=tracking.height, frames=n)
    refs = [FrameRef(index=i, t_s=round(i / fps, 4), frame_key=keys.frame(aid, i),
                     bbox_px=None if boxes.get(i) is None else [round(float(v), 2) for v in boxes[i]],
                     track_score=1.0 if boxes.get(i) is not None else 0.0,
                     track_state="tracked" if boxes.get(i) is not None else "lost")
            for i in range(n)]
    spans = tracking.clip_spans()
    return [TrackedClip(analysis_id=aid, sport=sport, clip_index=k, track_id=person.track_id, video=info,
                        frames=refs[a:b], is_last=k == len(spans) - 1, revision=tracking.revision)
            for k, (a, b) in enumerate(spans)]


def latest_selection(store, aid: str) -> AthleteSelection | None:
    try:
        return AthleteSelection.read(store, keys.selection(aid))
    except ObjectNotFound:
        return None


def handle_selection(msg: AthleteSelected, ctx: Context) -> None:
    aid = msg.analysis_id
    try:
        tracking = TrackingDocument.read(ctx.store, keys.tracking(aid))
        sport = AnalysisRequest.read(ctx.store, keys.request(aid)).sport
    except ObjectNotFound:
        raise AnalysisFailed("an athlete switch came for an analysis that was never tracked") from None
    current = tracking.revision
    selection = latest_selection(ctx.store, aid)
    latest = (selection.revision, selection.track_id) if selection else (msg.revision, msg.track_id)
    # only the gateway's latest accepted switch counts (two requests racing for one revision: the stored one wins)
    if msg.revision < current or (msg.revision, msg.track_id) != latest:
        log.info("stale athlete selection dropped", extra=log_fields(
            revision=msg.revision, track_id=msg.track_id, current=current, latest=latest[0]))
        return
    ctx.status(aid, "running", 0.0, revision=msg.revision, track_id=msg.track_id)
    if current < msg.revision or tracking.athlete.track_id != msg.track_id:
        try:
            tracking = retarget(tracking, msg.track_id, msg.revision, msg.requested_at)
        except UnknownTrack as exc:
            raise AnalysisFailed(str(exc)) from None
        ctx.store.put_json(keys.tracking(aid), tracking)   # first: a redelivery finds the switch applied
    # the previous target's poses must not be counted or read with the new ones (the judge also
    # checks each clip's revision, for a stale pose write that lands after this)
    ctx.store.delete_prefix(keys.poses_prefix(aid))
    clips = clips_of(tracking, sport)
    for clip in clips:
        ctx.emit(ctx.settings.topics.clips, clip, key=f"{aid}:{clip.clip_index}")
    ctx.status(aid, "done", 1.0, revision=msg.revision, track_id=msg.track_id, clip_count=len(clips),
               frames=tracking.frames)
