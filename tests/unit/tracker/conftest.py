"""Fixtures the tracker's unit tests share."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")   # module: the cache variable stays set only while one module runs
def sprites(tmp_path_factory):
    """The evaluation set's sprite library, built from vtest.avi into a fresh cache (~7 s), for the
    evaluation's and the athlete-choice evaluation's tests."""
    from services.tracker.lab import evalset

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COACH_TRACKER_EVAL_CACHE", str(tmp_path_factory.mktemp("tracker-eval")))
        yield evalset.load_sprites()
