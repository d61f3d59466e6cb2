"""The benchmark helpers run end to end on a few real frames."""
from __future__ import annotations

import os

import numpy as np
import pytest

from services.pose.blazepose import PoseSequence
from services.pose.lab.bench import bare_model_fps, boxes_from_pose, crop_fps

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


@pytest.mark.skipif(not os.path.exists(VTEST), reason="apt-get install opencv-doc")
def test_bare_and_crop_fps_report():
    bare = bare_model_fps(VTEST, max_frames=10)
    assert bare["frames"] == 10 and bare["fps"] > 0 and bare["seconds"] > 0
    crops = crop_fps(VTEST, max_frames=10, fixed_box=np.array([640, 240, 45, 80]))
    assert crops["frames"] == 10 and crops["frames_with_box"] == 10 and crops["fps"] > 0


def test_boxes_from_pose():
    seq = PoseSequence.empty(2)
    seq.keypoints_px[0] = np.array([10, 20, 0.9], np.float32)
    seq.keypoints_px[0, 5] = (30, 70, 0.9)
    seq.keypoints_px[0, 6] = (500, 500, 0.1)  # not confident: ignored
    seq.present[0] = True
    boxes = boxes_from_pose(seq)
    np.testing.assert_allclose(boxes[0], [10, 20, 20, 50])
    assert boxes[1] is None


@pytest.mark.skipif(not os.path.exists(VTEST), reason="apt-get install opencv-doc")
def test_bench_models_reports_each_model_on_whole_frames_and_crops():
    from services.pose.lab.bench import bench_models

    box = np.array([640, 240, 45, 80], np.float32)
    rep = bench_models(VTEST, models=("lite", "heavy"), max_frames=4, boxes_fn=lambda frames: [box] * len(frames))
    assert rep["frames"] == 4 and rep["frames_with_box"] == 4 and rep["boxes"] == "tracker"
    for model in ("lite", "heavy"):
        for path in ("whole", "crops"):
            row = rep["models"][model][path]
            assert row["ms_per_frame"] > 0 and row["cpu_ms_per_frame"] > 0 and 0 <= row["frames_with_pose"] <= 4
