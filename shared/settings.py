"""Configuration from the environment, with defaults that fit the embedded stack.

Every process builds one `Settings` with `Settings.from_env()` and passes it down; nothing
reads os.environ elsewhere. Variables are named COACH_<FIELD> in upper case, e.g.
COACH_KAFKA_BOOTSTRAP=kafka:9092 or COACH_S3_ENDPOINT=minio:9000.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Topics:
    """Kafka topic names; one message model per topic (see shared.messages.TOPIC_MODELS)."""

    analyses: str = "analyses"        # AnalysisRequested: gateway -> tracker
    clips: str = "clips"              # TrackedClip: tracker -> pose
    poses: str = "poses"              # ClipPoses: pose -> judge
    verdicts: str = "verdicts"        # AnalysisVerdict: judge -> suggest, integrators
    results: str = "results"          # AnalysisCompleted: suggest -> integrators
    dead_letters: str = "dead-letters"  # DeadLetter: any service
    control: str = "control"          # ModelPublished: `coach judge publish` -> every judge worker
    athlete_selections: str = "athlete-selections"  # AthleteSelected: gateway -> tracker (another person is the athlete)
    alignments: str = "alignments"    # SessionAlignmentRequested: gateway -> the tracker's align worker
    partial_verdicts: str = "partial-verdicts"  # PartialVerdict: judge -> integrators (provisional, while running)

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclass(frozen=True)
class Settings:
    # Messaging
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    work_partitions: int = 8          # partitions of work topics: the most workers a group can use
    # Tansu (and kafka-python) make the first JoinGroup wait for the rebalance timeout, which
    # kafka-python takes from max_poll_interval_ms: keep it short. Long work is done while the
    # loop keeps polling with its partitions paused, so this does not bound processing time.
    max_poll_interval_ms: int = 5_000
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 1_000
    # A consumer holding no partition of its topic this long rejoins its group (shared/worker.py:
    # after a broker hiccup kafka-python can keep an empty assignment made without the topic's metadata)
    rejoin_empty_s: float = 30.0
    max_attempts: int = 3             # processing attempts before a message is dead-lettered
    stall_timeout_s: float = 300.0    # watchdog: an analysis without progress this long is re-driven
    watchdog_interval_s: float = 10.0
    max_redrives: int = 2             # then it is failed with the stage it was stuck in
    # A handler with no progress (ctx.status / ctx.emit) for this long is taken to hang: its
    # message is dead-lettered, the analysis failed, and the worker process exits to be restarted.
    # 0 disables it. A WorkerSpec may set its own (deadline_s).
    handler_deadline_s: float = 900.0
    # Object storage
    s3_endpoint: str = "127.0.0.1:18333"
    s3_access_key: str = "coach"
    s3_secret_key: str = "coach-secret"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    bucket: str = "coach"
    presign_expiry_s: int = 3600
    # Where clients reach the store, when not at s3_endpoint (a public host or proxy in front of
    # MinIO), e.g. "https://media.example.com": presigned URLs are signed for that host. Empty:
    # s3_endpoint, which suits the embedded stack on loopback.
    s3_public_url: str = ""
    # HTTP
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    allow_keyless: bool = True        # keyless /v1 requests from loopback, only while bound to loopback
    uploads_per_minute: int = 60      # per API key (token bucket)
    metrics_port: int = 0             # 0: services pick a free port; the stack assigns fixed ones
    metrics_host: str = "127.0.0.1"  # where workers serve /metrics + /healthz; 0.0.0.0 in containers
    # Analysis
    clip_frames: int = 32             # frames per clip message from tracker to pose
    # The first clip is cut short (frames [0, first_clip_frames), then [first_clip_frames, clip_frames),
    # then every clip_frames as before: shared/clips.py) so it is posed and judged sooner (issue 17,
    # docs/benchmarks.md "First verdict"). 0 or >= clip_frames: no short first clip.
    first_clip_frames: int = 8
    max_upload_mb: int = 200
    max_duration_s: float = 600.0
    max_pixels: int = 3840 * 2160
    min_frame_side_px: int = 32       # narrower or lower frames are refused (nobody can be found in them)
    max_aspect_ratio: float = 8.0     # width/height (or height/width) beyond this is refused
    jpeg_quality: int = 90
    # BlazePose landmark model: "lite" | "full" | "heavy" (docs/pose.md: speed, accuracy, why the default);
    # lite and heavy are installed by scripts/setup.sh, and a missing one fails the pose worker at start-up
    pose_model: str = "full"
    # BlazePose sessions a pose worker keeps across an analysis's consecutive clips (services/pose/sessions.py):
    # a clip that continues the last one posed for its analysis keeps the video graph's tracking and the
    # rotated-body tilt. ~110 MB each; 0: every clip starts fresh (docs/pose.md "Sessions across clips")
    pose_sessions: int = 2
    # suggest draws the annotated video clip by clip while clips are posed (from provisional verdicts;
    # docs/suggest.md), so the final verdict only joins segments. It costs ~40 % more render CPU, taken
    # while tracker and pose run: off (false) suits a machine where every service shares a few cores.
    suggest_prerender: bool = True
    # Tracker (docs/tracker.md): "mot" follows everyone by detection and picks the athlete after the
    # whole clip (issue 15), while the single-target tracker streams a provisional athlete to pose;
    # "legacy" is the single-target tracker alone (picks the athlete in the first 15 frames, keeps
    # them while it can; about a quarter of mot's cost on vtest.avi's crowd).
    tracker: str = "mot"
    # Who is the athlete ("mot"; a request's target_bbox_px always means "box"): "most_active"
    # (coverage x size x motion), "largest", "first_seen", "box".
    athlete_policy: str = "most_active"
    min_track_s: float = 1.0          # people followed at least this long are kept (tracking.json, result)
    # "mot": once chosen, the athlete is followed again by the single-target tracker (a second read
    # of the video), fused with their multi-person track (docs/tracker.md)
    tracker_refine: bool = True
    # pose refinement: "one_euro" | "strn" (STRN + post-pass, services/pose/strn.py) | "none". One-Euro by
    # default: on hand-labelled real frames the STRN hurt fast motion (docs/pose.md, "Default refiner")
    refiner: str = "one_euro"
    strn_weights: str = ""            # the STRN checkpoint; empty: the shipped services/pose/weights/strn.pt
    default_sport: str = "squat"
    # Embedded stack
    data_dir: Path = field(default_factory=lambda: Path("var/coach"))
    log_level: str = "INFO"

    @property
    def topics(self) -> Topics:
        p = self.topic_prefix
        return Topics(**{f.name: p + getattr(Topics(), f.name) for f in dataclasses.fields(Topics)})

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        values: dict = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"COACH_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _parse(raw, f.type, f.name)
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f"COACH_{f.name.upper()}"] = ("true" if v else "false") if isinstance(v, bool) else str(v)
        return out


def _parse(raw: str, typ, name: str):
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if typ == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if typ == "int":
            return int(raw)
        if typ == "float":
            return float(raw)
        if typ == "Path":
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"COACH_{name.upper()}={raw!r}: {exc}") from None
