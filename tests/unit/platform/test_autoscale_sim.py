"""scripts/autoscale_sim.py: the autoscaling model an operator reads docs/scaling.md's figures from."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _sim():
    spec = importlib.util.spec_from_file_location("autoscale_sim", ROOT / "scripts" / "autoscale_sim.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod           # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _run(mod, *argv):
    return mod.simulate(mod.parse_args(list(argv)))


def test_reads_the_shipped_keda_objects():
    mod = _sim()
    scaling = mod.read_keda(ROOT / "deploy" / "k8s" / "keda.yaml")
    assert {"tracker", "pose", "judge", "suggest"} <= set(scaling)
    assert scaling["pose"].max_replicas == 8 and scaling["pose"].lag_threshold == 16
    assert scaling["tracker"].up_pods == 4 and scaling["tracker"].up_period_s == 15


def test_one_analysis_takes_its_stage_costs_end_to_end():
    mod = _sim()
    # 320 frames = 10 clips; one replica each; tracker 10 ms, pose 20 ms, judge 1 ms, suggest 5 ms a frame
    r = _run(mod, "--analyses", "1", "--frames", "320", "--cost-tracker-ms", "10", "--cost-pose-ms", "20",
             "--cost-judge-ms", "1", "--cost-suggest-ms", "5", "--judge-msg-ms", "0", "--startup-s", "0",
             "--rebalance-s", "0")
    assert r["completed"] == 1
    # pose (6.4 s of work) cannot finish before the tracker's last clip (3.2 s) + that clip's pose,
    # and is the bottleneck: ~6.4 s of pose after the first clip (0.32 s), then judge 0.32 s, suggest 1.6 s
    expected = 0.32 + 6.4 + 0.32 + 1.6
    assert math.isclose(r["end_to_end_s"]["max"], expected, abs_tol=0.6)
    assert r["busy_core_s"]["pose"] == round(320 * 0.020)


def test_more_load_scales_pose_up_to_the_partition_bound():
    mod = _sim()
    r = _run(mod, "--analyses", "40", "--frames", "300")
    assert r["completed"] == 40
    assert r["peak_replicas"]["pose"] == 8          # maxReplicaCount = partitions: a ninth would idle
    faster = _run(mod, "--analyses", "40", "--frames", "300", "--partitions", "16",
                  "--max-replicas", "pose=16", "--up-pods", "8", "--up-period-s", "15")
    assert faster["peak_replicas"]["pose"] > 8
    assert faster["all_done_s"] < r["all_done_s"]
