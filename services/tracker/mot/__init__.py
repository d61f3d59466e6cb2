"""Tracking by detection of everyone, athlete chosen after the whole clip (docs/tracker.md).

kalman.py (motion), appearance.py (colour descriptors, galleries), association.py (IoU,
Hungarian), multi.py (MultiTracker: detection budget, 3-stage association, bridge, stitching),
choice.py (athlete policies), athlete.py (MotAthleteTracker: the AthleteTracker interface),
stream.py (StreamingAthleteTracker: a provisional athlete streamed meanwhile; the worker's default).
"""
from .athlete import MotAthleteTracker
from .choice import POLICIES
from .multi import MotConfig, MultiTracker
from .stream import StreamingAthleteTracker

__all__ = ["MotAthleteTracker", "MotConfig", "MultiTracker", "POLICIES", "StreamingAthleteTracker"]
