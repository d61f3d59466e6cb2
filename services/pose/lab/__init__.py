"""Pose evaluation lab: hand-labelled real frames (real_labels.json) and their evaluation (eval_real)."""
