"""BlazePose's 33 landmarks: names, indices and the bones drawn between them.

Every service names joints with these strings; arrays of keypoints are ordered by
LANDMARK_NAMES, so `kps[:, LANDMARK_INDEX["left_knee"]]` is the left knee over time.
"""
from __future__ import annotations

LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer",
    "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_pinky", "right_pinky",
    "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
LANDMARK_INDEX: dict[str, int] = {name: i for i, name in enumerate(LANDMARK_NAMES)}
NUM_LANDMARKS = len(LANDMARK_NAMES)

# Joint angles every service reports, in degrees. Flexion convention: 0 = straight limb, 90 = right angle.
#   trunk: angle of shoulder_mid -> hip_mid against gravity (0 = upright, 90 = horizontal)
#   body_line: signed bend at the hips off the shoulder-ankle line (+ = piked, - = sagging)
#   skis: angle between the two heel -> foot_index directions (0 = parallel)
ANGLE_NAMES: tuple[str, ...] = (
    "knee_l", "knee_r", "hip_l", "hip_r", "elbow_l", "elbow_r", "trunk", "body_line", "skis",
)
# The angles that are the angle between two vectors (P_b - P_a) and (P_d - P_c), as (a, b, c, d);
# trunk and body_line need gravity or a line and are computed where they are used.
ANGLE_VECTORS: dict[str, tuple[str, str, str, str]] = {
    "knee_l": ("left_hip", "left_knee", "left_knee", "left_ankle"),
    "knee_r": ("right_hip", "right_knee", "right_knee", "right_ankle"),
    "hip_l": ("left_shoulder", "left_hip", "left_hip", "left_knee"),
    "hip_r": ("right_shoulder", "right_hip", "right_hip", "right_knee"),
    "elbow_l": ("left_shoulder", "left_elbow", "left_elbow", "left_wrist"),
    "elbow_r": ("right_shoulder", "right_elbow", "right_elbow", "right_wrist"),
    "skis": ("left_heel", "left_foot_index", "right_heel", "right_foot_index"),
}

# Bones drawn on annotated video (pairs of landmark names).
BONES: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
    ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"), ("right_ankle", "right_foot_index"),
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
)
BONE_INDEX_PAIRS: tuple[tuple[int, int], ...] = tuple((LANDMARK_INDEX[a], LANDMARK_INDEX[b]) for a, b in BONES)
