"""An analysis's poses read back from the pose stage's clip documents (poses/clip-NNNNN.json).

The judge judges them and the suggest stage draws and reports them; both read them here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from shared.documents import ClipPosesDocument, PoseFrame
from shared.skeleton import NUM_LANDMARKS
from shared.store import ObjectNotFound, keys


class NotAllPosed(Exception):
    """A clip's poses are missing or belong to another athlete revision (a switch is under way)."""


def keypoints_array(frames: Sequence[PoseFrame]) -> np.ndarray:
    """Frames -> keypoints [N,33,3] (x_px, y_px, confidence), float64; NaN where no pose or no landmark."""
    kps = np.full((len(frames), NUM_LANDMARKS, 3), np.nan, dtype=np.float64)
    for t, f in enumerate(frames):
        if f.keypoints is not None:
            kps[t] = [r if r is not None else (np.nan,) * 3 for r in f.keypoints]
    return kps


def load_clip_documents(store, aid: str, clip_count: int, revision: int | None = None) -> list[ClipPosesDocument]:
    """The stored pose documents of clips 0..clip_count-1. With `revision`, every clip must have been
    posed for that athlete revision (else NotAllPosed); without it a missing clip raises ObjectNotFound."""
    docs = []
    for k in range(clip_count):
        try:
            doc = ClipPosesDocument.read(store, keys.clip_poses(aid, k))
        except ObjectNotFound:
            if revision is None:
                raise
            raise NotAllPosed(f"clip {k} has no poses yet") from None
        if revision is not None and doc.revision != revision:
            raise NotAllPosed(f"clip {k} was posed for athlete revision {doc.revision}, not {revision}")
        docs.append(doc)
    return docs


def load_clips(store, aid: str, clip_count: int, revision: int | None = None) -> list[list[PoseFrame]]:
    """The frames of clips 0..clip_count-1, clip by clip (load_sequence without the flattening)."""
    return [list(doc.frames) for doc in load_clip_documents(store, aid, clip_count, revision)]


def load_sequence(store, aid: str, clip_count: int,
                  revision: int | None = None) -> tuple[list[PoseFrame], np.ndarray]:
    """All frames of an analysis in order (clips 0..clip_count-1), and their keypoints [N,33,3].
    With `revision`, every clip must have been posed for that athlete revision (else NotAllPosed)."""
    frames = [f for doc in load_clip_documents(store, aid, clip_count, revision) for f in doc.frames]
    return frames, keypoints_array(frames)
