"""What the lag-based autoscaling (deploy/k8s/keda.yaml) would do with N concurrent analyses.

    .venv/bin/python scripts/autoscale_sim.py --analyses 100 [--frames 300] [--json]

A discrete-time model of the production topology, not a measurement: N analyses arrive (at once,
or spread over --arrival-s), each is tracked by one tracker replica that streams 32-frame clips,
clips are posed by the pose replicas, the judge counts posed clips and judges an analysis when its
last clip is in, suggest renders and writes the result. Every topic has --partitions partitions;
a replica owns a share of them (a ninth replica of a service gets none), one message at a time.
Lag is what Kafka's lag is (end offset minus committed offset: waiting plus in progress).
KEDA's scaling is read from deploy/k8s/keda.yaml: every pollingInterval, desired replicas =
ceil(lag / lagThreshold) clamped to min..max, limited by the HPA scale-up policy (pods per
period) and, on the way down, by the stabilisation window. A new replica works after
--startup-s (image pull, model load) and every change of a group's membership pauses that group
for --rebalance-s.

Per-frame costs are seconds of one dedicated core; the defaults are the figures measured on the
2-core development machine (docs/benchmarks.md, docs/scaling.md): tracker 27.7 ms/frame (one
core, re-detection budget), pose 70 ms/frame (a pose worker in the pipeline: fetch + JPEG decode +
BlazePose + refiner, 11-17 fps per second of processing), judge 2.5 ms/frame (2.0 s for 795
frames), suggest 10.7 ms/frame (8.5 s render + result for 795 frames). Pass your own with
--cost-*-ms when measured on your nodes.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

STAGES = ("tracker", "pose", "judge", "suggest")
CLIP_FRAMES = 32
_UIDS = itertools.count()


@dataclass
class Scaling:
    """One ScaledObject: what KEDA + the HPA behaviour allow."""
    min_replicas: int
    max_replicas: int
    lag_threshold: float
    polling_s: float
    up_pods: int
    up_period_s: float
    down_pods: int
    down_period_s: float
    down_window_s: float


def read_keda(path: Path) -> dict[str, Scaling]:
    out = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "ScaledObject":
            continue
        spec = doc["spec"]
        beh = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
        up = (beh.get("scaleUp", {}).get("policies") or [{"value": 4, "periodSeconds": 15}])[0]
        down = (beh.get("scaleDown", {}).get("policies") or [{"value": 100, "periodSeconds": 15}])[0]
        trig = next(t for t in spec["triggers"] if t["type"] == "kafka")
        out[spec["scaleTargetRef"]["name"]] = Scaling(
            min_replicas=int(spec.get("minReplicaCount", 0)), max_replicas=int(spec.get("maxReplicaCount", 100)),
            lag_threshold=float(trig["metadata"]["lagThreshold"]), polling_s=float(spec.get("pollingInterval", 30)),
            up_pods=int(up["value"]), up_period_s=float(up["periodSeconds"]),
            down_pods=int(down["value"]), down_period_s=float(down["periodSeconds"]),
            down_window_s=float(beh.get("scaleDown", {}).get("stabilizationWindowSeconds", 300)))
    return out


@dataclass
class Msg:
    aid: int
    work_s: float            # seconds of one core
    frames: int = 0          # tracker: frames of the video; pose: frames of the clip
    done_s: float = 0.0      # work done so far
    uid: int = field(default_factory=lambda: next(_UIDS))   # a redelivered copy keeps its uid


@dataclass
class Replica:
    ready_at: float
    partitions: list[int] = field(default_factory=list)
    current: tuple[int, Msg] | None = None   # (partition, message)
    next_p: int = 0


class Group:
    """One service's consumer group over one topic."""

    def __init__(self, name: str, scaling: Scaling, partitions: int, startup_s: float, rebalance_s: float):
        self.name, self.scaling, self.n_part = name, scaling, partitions
        self.startup_s, self.rebalance_s = startup_s, rebalance_s
        self.queues = [deque() for _ in range(partitions)]
        self.replicas = [Replica(ready_at=0.0) for _ in range(max(1, scaling.min_replicas))]
        self.paused_until = 0.0
        self.last_up = -1e9
        self.last_down = -1e9
        self.desired_history: list[tuple[float, int]] = []
        self.busy_core_s = 0.0
        self._assign(0.0)

    def _assign(self, now: float, removed: list[Replica] = ()) -> None:
        """A rebalance. As in shared/worker.py: a handler that is running finishes, but its commit
        fails where its partition moved, so the new owner gets the message again (work done twice);
        a removed replica's message is delivered again too."""
        owner_before = {p: r for r in self.replicas for p in r.partitions}
        for r in self.replicas:
            r.partitions = []
        for p in range(self.n_part):
            self.replicas[p % len(self.replicas)].partitions.append(p)
        for r in list(self.replicas) + list(removed):
            if r.current is not None:
                p, m = r.current
                if owner_before.get(p) is r and p in r.partitions:
                    continue                     # same owner: it carries on and commits
                self.queues[p].appendleft(Msg(m.aid, m.work_s, m.frames, uid=m.uid))
        self.paused_until = now + self.rebalance_s

    def lag(self) -> int:
        queued = {m.uid for q in self.queues for m in q}
        return len(queued | {r.current[1].uid for r in self.replicas if r.current is not None})

    def put(self, partition: int, msg: Msg) -> None:
        self.queues[partition % self.n_part].append(msg)

    def autoscale(self, now: float) -> None:
        s = self.scaling
        want = min(s.max_replicas, max(s.min_replicas, math.ceil(self.lag() / s.lag_threshold)))
        self.desired_history.append((now, want))
        have = len(self.replicas)
        if want > have and now - self.last_up >= s.up_period_s:
            add = min(want - have, s.up_pods)
            self.replicas += [Replica(ready_at=now + self.startup_s) for _ in range(add)]
            self.last_up = now
            self._assign(now)
        elif want < have and now - self.last_down >= s.down_period_s:
            # scale down only to the highest recommendation within the stabilisation window
            recent = max(w for t, w in self.desired_history if t >= now - s.down_window_s)
            if recent < have:
                remove = min(have - recent, s.down_pods)
                removed = self.replicas[have - remove:]
                self.replicas = self.replicas[:have - remove]
                self.last_down = now
                self._assign(now, removed)

    def step(self, now: float, dt: float, sim: Sim) -> None:
        joining = now < self.paused_until   # running handlers go on; nobody takes a new message
        for r in self.replicas:
            if now < r.ready_at:
                continue
            if r.current is None and not joining:
                for k in range(len(r.partitions)):
                    p = r.partitions[(r.next_p + k) % len(r.partitions)]
                    if self.queues[p]:
                        r.current = (p, self.queues[p].popleft())
                        r.next_p = (r.next_p + k + 1) % len(r.partitions)
                        break
            if r.current is None:
                continue
            p, m = r.current
            before = m.done_s
            m.done_s = min(m.work_s, m.done_s + dt)
            self.busy_core_s += m.done_s - before
            sim.progress(self.name, m, before, now)
            if m.done_s >= m.work_s:
                r.current = None
                if m.uid not in sim.done_uids:       # a duplicate's outputs are the same objects: once
                    sim.done_uids.add(m.uid)
                    sim.finished(self.name, m, now)


class Sim:
    def __init__(self, args, scaling: dict[str, Scaling]):
        self.a = args
        self.cost = {"tracker": args.cost_tracker_ms / 1000, "pose": args.cost_pose_ms / 1000,
                     "judge": args.cost_judge_ms / 1000, "suggest": args.cost_suggest_ms / 1000}
        startup = {"tracker": args.startup_s, "pose": args.startup_s, "judge": args.startup_s, "suggest": args.startup_s}
        self.groups = {name: Group(name, scaling[name], args.partitions, startup[name], args.rebalance_s)
                       for name in STAGES}
        self.clips = math.ceil(args.frames / CLIP_FRAMES)
        self.sent_clips = [0] * args.analyses
        self.posed = [0] * args.analyses
        self.submitted = [i * args.arrival_s / max(1, args.analyses - 1) if args.analyses > 1 else 0.0
                          for i in range(args.analyses)]
        self.first_verdict: list[float | None] = [None] * args.analyses
        self.completed: list[float | None] = [None] * args.analyses
        self.arrived = 0
        self.done_uids: set[int] = set()

    def progress(self, stage: str, m: Msg, before_s: float, now: float) -> None:
        if stage != "tracker":
            return
        # the tracker streams a clip every 32 frames (a re-delivered video re-sends none: clips are
        # idempotent objects keyed per clip, and the pose results already stored are kept)
        frames_done = int(m.done_s / self.cost["tracker"] + 1e-9)
        while self.sent_clips[m.aid] < self.clips and (self.sent_clips[m.aid] + 1) * CLIP_FRAMES <= frames_done:
            self._send_clip(m.aid, now)

    def _send_clip(self, aid: int, now: float) -> None:
        k = self.sent_clips[aid]
        n = min(CLIP_FRAMES, self.a.frames - k * CLIP_FRAMES)
        self.groups["pose"].put(hash((aid, k)), Msg(aid, n * self.cost["pose"], frames=n))
        self.sent_clips[aid] += 1

    def finished(self, stage: str, m: Msg, now: float) -> None:
        if stage == "tracker":
            while self.sent_clips[m.aid] < self.clips:   # the last, shorter clip
                self._send_clip(m.aid, now)
        elif stage == "pose":
            self.groups["judge"].put(m.aid, Msg(m.aid, self.a.judge_msg_ms / 1000))
        elif stage == "judge":
            self.posed[m.aid] += 1
            if self.posed[m.aid] == self.clips and m.frames == 0:
                # the last clip is in: judge the whole analysis (one more unit of work on this partition)
                self.groups["judge"].queues[m.aid % self.a.partitions].appendleft(
                    Msg(m.aid, self.a.frames * self.cost["judge"], frames=-1))
            elif m.frames == -1:
                self.first_verdict[m.aid] = now
                self.groups["suggest"].put(m.aid, Msg(m.aid, self.a.frames * self.cost["suggest"]))
        elif stage == "suggest":
            self.completed[m.aid] = now

    def run(self) -> dict:
        dt, now, horizon = self.a.dt, 0.0, self.a.horizon_s
        timeline, next_poll = [], {name: 0.0 for name in STAGES}
        next_sample = 0.0
        while now < horizon:
            while self.arrived < self.a.analyses and self.submitted[self.arrived] <= now:
                aid = self.arrived
                self.groups["tracker"].put(aid, Msg(aid, self.a.frames * self.cost["tracker"], frames=self.a.frames))
                self.arrived += 1
            for name, g in self.groups.items():
                if now >= next_poll[name]:
                    g.autoscale(now)
                    next_poll[name] = now + g.scaling.polling_s
                g.step(now, dt, self)
            if now >= next_sample:
                timeline.append({"t_s": round(now), **{n: len(g.replicas) for n, g in self.groups.items()},
                                 **{f"lag_{n}": g.lag() for n, g in self.groups.items()}})
                next_sample = now + self.a.sample_s
            if all(c is not None for c in self.completed):
                break
            now += dt
        done = [c - s for c, s in zip(self.completed, self.submitted) if c is not None]
        first = [v - s for v, s in zip(self.first_verdict, self.submitted) if v is not None]

        def pct(xs, q):
            return round(statistics.quantiles(xs, n=100)[q - 1], 1) if len(xs) >= 2 else (round(xs[0], 1) if xs else None)

        core_s = {n: round(g.busy_core_s) for n, g in self.groups.items()}
        return {
            "model": "discrete-time simulation of deploy/k8s/keda.yaml; costs are inputs, not measurements",
            "analyses": self.a.analyses, "frames_per_analysis": self.a.frames, "arrival_s": self.a.arrival_s,
            "costs_ms_per_frame": {k: round(v * 1000, 2) for k, v in self.cost.items()},
            "startup_s": self.a.startup_s, "rebalance_s": self.a.rebalance_s, "partitions": self.a.partitions,
            "completed": len(done), "all_done_s": round(max(c for c in self.completed if c is not None), 1) if done else None,
            "end_to_end_s": {"p50": pct(done, 50), "p95": pct(done, 95), "max": round(max(done), 1) if done else None},
            "final_verdict_s": {"p50": pct(first, 50), "p95": pct(first, 95)},
            "peak_replicas": {n: max(row[n] for row in timeline) for n in STAGES},
            "busy_core_s": core_s,
            "timeline": timeline,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--analyses", type=int, default=100)
    ap.add_argument("--frames", type=int, default=300, help="frames per analysis (default: 10 s at 30 fps)")
    ap.add_argument("--arrival-s", type=float, default=0.0, help="spread the submissions over this many seconds")
    ap.add_argument("--keda", type=Path, default=Path(__file__).resolve().parents[1] / "deploy/k8s/keda.yaml")
    ap.add_argument("--partitions", type=int, default=8, help="COACH_WORK_PARTITIONS")
    ap.add_argument("--cost-tracker-ms", type=float, default=27.7)
    ap.add_argument("--cost-pose-ms", type=float, default=70.0)
    ap.add_argument("--cost-judge-ms", type=float, default=2.5)
    ap.add_argument("--cost-suggest-ms", type=float, default=10.7)
    ap.add_argument("--judge-msg-ms", type=float, default=20.0, help="judge: counting one posed clip")
    ap.add_argument("--startup-s", type=float, default=30.0, help="a new replica's start (pull, model load)")
    ap.add_argument("--rebalance-s", type=float, default=5.0, help="a group's pause when its members change")
    ap.add_argument("--max-replicas", action="append", default=[], metavar="SERVICE=N",
                    help="override a ScaledObject's maxReplicaCount (raise --partitions with it)")
    ap.add_argument("--lag-threshold", action="append", default=[], metavar="SERVICE=N",
                    help="override a ScaledObject's lagThreshold")
    ap.add_argument("--up-pods", type=int, default=None, help="override the scale-up policy: pods per period")
    ap.add_argument("--up-period-s", type=float, default=None, help="override the scale-up policy's period")
    ap.add_argument("--dt", type=float, default=0.1)
    ap.add_argument("--sample-s", type=float, default=60.0)
    ap.add_argument("--horizon-s", type=float, default=6 * 3600)
    ap.add_argument("--json", action="store_true", help="the whole report with the timeline")
    return ap.parse_args(argv)


def simulate(args: argparse.Namespace) -> dict:
    """The report for these arguments: keda.yaml's scaling with the command line's overrides."""
    scaling = read_keda(args.keda)
    for item in args.max_replicas:
        name, _, n = item.partition("=")
        scaling[name].max_replicas = int(n)
    for item in args.lag_threshold:
        name, _, n = item.partition("=")
        scaling[name].lag_threshold = float(n)
    for sc in scaling.values():
        sc.up_pods = args.up_pods or sc.up_pods
        sc.up_period_s = args.up_period_s or sc.up_period_s
    return Sim(args, scaling).run()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = simulate(args)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps({k: v for k, v in report.items() if k != "timeline"}, indent=1))
        print("t_s  " + "  ".join(f"{n:>8}" for n in STAGES) + "   (replicas; lag)")
        for row in report["timeline"]:
            print(f"{row['t_s']:>5} " + "  ".join(f"{row[n]:>3}; {row['lag_' + n]:>4}" for n in STAGES))
    return 0 if report["completed"] == args.analyses else 1


if __name__ == "__main__":
    sys.exit(main())
