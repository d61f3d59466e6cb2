"""Regenerate the example training files in this folder (deterministic).

    python -m services.judge.examples.make_example

plank_labels.csv: 10 short plank clips (2 s at 30 fps) in the multi-class CSV format, with only the
8 landmarks the plank pack needs. The keypoints and labels come from services/judge/synth.py (the
labels follow its documented criteria), standing in for a coach's own labelled clips: same
columns, same commands (docs/judge.md, "Your own labels").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from services.judge import synth
from services.judge.datasets import write_csv

HERE = Path(__file__).resolve().parent
LANDMARKS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee",
             "left_ankle", "right_ankle")


def main() -> None:
    clips = []
    for i in range(10):
        rng = np.random.default_rng([2024, i])
        faults = [{"sagging_hips": rng.uniform(22, 35)}, {"piked_hips": rng.uniform(25, 40)}, {}][i % 3]
        c = synth.generate("plank", rng, faults=faults, duration_s=2.0, fps=30.0)
        clips.append((f"athlete{i // 2 + 1}-take{i % 2 + 1}", c.keypoints, c.labels, c.fps))
    path = write_csv(HERE / "plank_labels.csv", clips, synth.FAULTS["plank"], landmarks=LANDMARKS, decimals=1)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
