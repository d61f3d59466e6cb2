"""BlazePose sessions kept across consecutive clips of one analysis in one pose worker (COACH_POSE_SESSIONS).

Pure: no Kafka, no store. The pose worker cuts nothing itself: an analysis's frames come as clips
(shared/clips.py: 8, 24, then 32 frames), and posing each clip from scratch restarts BlazePose's
video graph (~100-250 ms on the clip's first frame) and forgets the last pose's tilt (a clip that
starts mid-flip starts without the upright turn). A clip that directly continues the last clip
this worker posed for the same (analysis, revision, track) continues that clip's PoseSession;
anything else starts a fresh one, exactly as a whole new sequence:

* the first clip, a redelivered or reordered clip (its first frame is not the expected next one),
  an athlete switch (another revision or track: another key), a session evicted from the LRU.

A small LRU bounds memory (one video graph per live session, ~110 MB each): taking a fresh
session when the cache is full first ends the least recently used one, whose graph the new session
then reuses (reset). size 0: no session outlives its clip (every clip fresh: the behaviour before).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from services.pose.blazepose import BlazePoseEstimator, PoseSession


class PoseSessions:
    """LRU of (key -> session, the frame index its next clip must start at); not thread-safe."""

    def __init__(self, estimator: BlazePoseEstimator, size: int) -> None:
        if size < 0:
            raise ValueError(f"COACH_POSE_SESSIONS must be >= 0, got {size}")
        self.estimator = estimator
        self.size = size
        self._lru: OrderedDict[Hashable, tuple[PoseSession, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lru)

    def take(self, key: Hashable, first_index: int) -> tuple[PoseSession, bool]:
        """The session to pose a clip starting at frame first_index with, and whether it continues the
        key's previous clip. The key's entry leaves the cache until keep() puts it back."""
        entry = self._lru.pop(key, None)
        if entry is not None:
            session, expected = entry
            if expected == first_index:
                return session, True
            self.estimator.end_session(session)   # not the next clip: its state does not apply
        while self._lru and len(self._lru) >= self.size:
            _, (old, _) = self._lru.popitem(last=False)   # its graph becomes the spare this session takes
            self.estimator.end_session(old)
        return self.estimator.new_session(), False

    def keep(self, key: Hashable, session: PoseSession, next_index: int) -> None:
        """The clip was posed: its successor (starting at next_index) may continue the session."""
        if self.size == 0:
            self.estimator.end_session(session)
            return
        self._lru[key] = (session, next_index)
        self._lru.move_to_end(key)
        while len(self._lru) > self.size:
            _, (old, _) = self._lru.popitem(last=False)
            self.estimator.end_session(old)

    def discard(self, session: PoseSession) -> None:
        """A session whose clip failed or was dropped (its state is unknown or of no use)."""
        self.estimator.end_session(session)

    def close(self) -> None:
        while self._lru:
            _, (old, _) = self._lru.popitem(last=False)
            self.estimator.end_session(old)
