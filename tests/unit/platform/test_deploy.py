"""The deployment files (deploy/): compose, Dockerfile, Kubernetes, Prometheus, Grafana.

No Docker engine or cluster here: the files are parsed and checked against each other and
against the code (settings, entry points, metrics), and Prometheus's own promtool checks the
scrape config, the alert rules and every PromQL expression the dashboard uses.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"

SERVICES = ("gateway", "tracker", "pose", "judge", "suggest", "align", "watchdog")
WORKERS = ("tracker", "pose", "judge", "suggest", "align")
ENTRY = {s: ["python", "-m", f"services.{s}.worker"] for s in WORKERS} | {
    "align": ["python", "-m", "services.tracker.align_worker"],   # the tracker service's session-alignment worker
    "gateway": ["python", "-m", "services.gateway"], "watchdog": ["python", "-m", "coach.watchdog"]}
CONSUMES = {"tracker": "analyses", "pose": "clips", "judge": "poses", "suggest": "verdicts",
            "align": "alignments"}   # Topics fields
SETTING_VARS = {f"COACH_{f.name.upper()}" for f in dataclasses.fields(Settings)}


# ------------------------------------------------------------------------------ helpers
def _expand(value):
    """Resolve compose's ${VAR:-default} to its default (what an unconfigured `up` runs with)."""
    if isinstance(value, str):
        return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def k8s() -> list[dict]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        docs += [dict(d, _file=str(path.relative_to(K8S))) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _k8s(docs, kind, name=None):
    """Objects of the base (kubectl apply -k deploy/k8s), not of optional/ or overlays/."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
            and "/" not in d["_file"]]


def _one(docs, kind, name):
    found = _k8s(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name} in deploy/k8s, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def configmap(k8s) -> dict:
    return _one(k8s, "ConfigMap", "coach-settings")["data"]


def _dockerfile_stages() -> dict[str, str]:
    """Stage name -> its text."""
    stages, name, lines = {}, None, []
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            if name:
                stages[name] = "\n".join(lines)
            name, lines = m.group(1), [line]
        elif name:
            lines.append(line)
    if name:
        stages[name] = "\n".join(lines)
    return stages


def _stage_chain(stages: dict[str, str], target: str) -> str:
    """The text of a target and every stage it is built FROM (not COPY --from)."""
    text, name = "", target
    while name in stages:
        text = stages[name] + "\n" + text
        parent = re.match(r"FROM\s+(\S+)", stages[name], re.I).group(1)
        name = parent
    return text


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (scripts/setup.sh does)")
    return tool


def _run_promtool(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


# ------------------------------------------------------------------------------ compose
def test_compose_runs_kafka_kraft_minio_init_jobs_and_every_service(compose):
    svcs = compose["services"]
    assert {"kafka", "minio", "minio-init", "topic-init", "prometheus", "grafana", *SERVICES, "pose-gpu"} <= set(svcs)

    kafka = svcs["kafka"]
    assert kafka["image"].startswith("apache/kafka:") and not kafka["image"].endswith(":latest")
    env = kafka["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"], "KRaft, no ZooKeeper"
    assert not any("zookeeper" in n for n in svcs) and "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false", "topics come from topic-init with their partitions"
    assert "healthcheck" in kafka

    assert svcs["minio"]["image"].startswith("minio/minio:RELEASE.")
    init = " ".join(svcs["minio-init"]["command"])
    assert "mc mb --ignore-existing" in init and "coach/coach" in init
    assert svcs["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"

    topic_init = svcs["topic-init"]
    assert "bus.ensure_topics(s)" in " ".join(topic_init["command"])
    assert topic_init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topic_init["environment"]["COACH_WORK_PARTITIONS"] == "8"


# Service keys of the Compose Specification (compose-spec.json, definitions.service.properties)
COMPOSE_SERVICE_KEYS = set("""
develop deploy annotations attach build blkio_config cap_add cap_drop cgroup cgroup_parent command configs
container_name cpu_count cpu_percent cpu_shares cpu_quota cpu_period cpu_rt_period cpu_rt_runtime cpus cpuset
credential_spec depends_on device_cgroup_rules devices dns dns_opt dns_search domainname entrypoint env_file
label_file environment expose extends provider external_links extra_hosts gpus group_add healthcheck hostname image
init ipc isolation labels links logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit
network_mode models networks oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_stop
privileged profiles pull_policy pull_refresh_after read_only restart runtime scale security_opt shm_size secrets
sysctls stdin_open stop_grace_period stop_signal storage_opt tmpfs tty ulimits use_api_socket user uts userns_mode
volumes volumes_from working_dir""".split())


def test_compose_uses_only_keys_of_the_compose_specification(compose):
    assert set(compose) <= {"name", "services", "volumes", "networks", "secrets", "configs"} | {k for k in compose if k.startswith("x-")}
    for name, svc in compose["services"].items():
        unknown = {k for k in svc if not k.startswith("x-")} - COMPOSE_SERVICE_KEYS
        assert not unknown, f"{name}: {unknown} are not Compose service keys"
        for dep in (svc.get("depends_on") or {}).values() if isinstance(svc.get("depends_on"), dict) else []:
            assert dep["condition"] in {"service_started", "service_healthy", "service_completed_successfully"}
        assert set(svc.get("healthcheck", {})) <= {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
        res = svc.get("deploy", {}).get("resources", {})
        assert set(res) <= {"limits", "reservations"} and set(res.get("limits", {})) <= {"cpus", "memory", "pids"}
        for dev in res.get("reservations", {}).get("devices", []):
            assert set(dev) <= {"capabilities", "count", "device_ids", "driver", "options"} and "capabilities" in dev
        for dep_name in svc.get("depends_on") or {}:
            assert dep_name in compose["services"], f"{name} depends on unknown {dep_name}"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            assert src.startswith(".") or src in compose["volumes"], f"{name}: volume {src} not declared"


def test_compose_services_are_configured_by_valid_coach_settings(compose):
    svcs = compose["services"]
    listener_port = re.search(r"PLAINTEXT://kafka:(\d+)", svcs["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]).group(1)
    minio_port = re.search(r"--address\s+:(\d+)|':(\d+)'", " ".join(svcs["minio"]["command"])).group(1)
    for name in (*SERVICES, "pose-gpu", "topic-init"):
        env = {k: _expand(v) for k, v in svcs[name]["environment"].items()}
        unknown = {k for k in env if k.startswith("COACH_")} - SETTING_VARS
        assert not unknown, f"{name}: {unknown} are not settings (shared/settings.py)"
        Settings.from_env(env)   # every value parses as its field's type
        assert env["COACH_KAFKA_BOOTSTRAP"] == f"kafka:{listener_port}"
        assert env["COACH_S3_ENDPOINT"] == f"minio:{minio_port}"
        assert env["COACH_S3_ACCESS_KEY"] == _expand(svcs["minio"]["environment"]["MINIO_ROOT_USER"])
        assert env["COACH_S3_SECRET_KEY"] == _expand(svcs["minio"]["environment"]["MINIO_ROOT_PASSWORD"])
        if name in ("gateway", "topic-init"):
            continue
        assert env["COACH_METRICS_HOST"] == "0.0.0.0", f"{name}: metrics must listen beyond loopback in a container"
        assert env["COACH_METRICS_PORT"] in svcs[name]["expose"]
        health = " ".join(svcs[name]["healthcheck"]["test"])
        assert f":{env['COACH_METRICS_PORT']}/healthz" in health
        assert svcs[name]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    gw = {k: _expand(v) for k, v in svcs["gateway"]["environment"].items()}
    assert gw["COACH_GATEWAY_HOST"] == "0.0.0.0" and f"{gw['COACH_GATEWAY_PORT']}:{gw['COACH_GATEWAY_PORT']}" in svcs["gateway"]["ports"]
    assert f":{gw['COACH_GATEWAY_PORT']}/healthz" in " ".join(svcs["gateway"]["healthcheck"]["test"])


def test_compose_images_come_from_their_own_dockerfile_target(compose):
    stages = _dockerfile_stages()
    for name in (*SERVICES, "pose-gpu"):
        svc = compose["services"][name]
        target = svc["build"]["target"]
        assert target == name and target in stages, f"{name}: no Dockerfile target {target}"
        assert (COMPOSE.parent / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert _expand(svc["image"]) == f"ai-coach/{target}:0.1.0"
        cmd = re.findall(r'^CMD\s+(\[.*\])', _stage_chain(stages, target), re.M)[-1]
        base = "pose" if name == "pose-gpu" else name
        assert json.loads(cmd) == ENTRY[base], f"{target} starts {cmd}"


def test_pose_has_a_gpu_variant_with_a_device_reservation_and_a_cpu_default(compose):
    svcs = compose["services"]
    devices = svcs["pose-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"] and devices[0]["count"] == 1
    assert svcs["pose-gpu"]["profiles"] == ["gpu"]
    assert "reservations" not in svcs["pose"].get("deploy", {}).get("resources", {}), "the default pose worker runs on CPU"
    assert "profiles" not in svcs["pose"]


def test_compose_workers_get_time_to_finish_their_message(compose):
    for name in WORKERS:
        grace = int(compose["services"][name]["stop_grace_period"].rstrip("s"))
        assert grace >= 60, f"{name}: {grace}s is not enough to finish a message on SIGTERM"
    assert int(compose["services"]["tracker"]["stop_grace_period"].rstrip("s")) >= 600


def test_compose_mounts_the_monitoring_files_that_exist(compose):
    for name in ("prometheus", "grafana"):
        for vol in compose["services"][name]["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE.parent / src).resolve().exists(), f"{name} mounts missing {src}"


# ------------------------------------------------------------------------------ Dockerfile
def test_each_image_installs_only_what_its_service_needs():
    stages = _dockerfile_stages()
    assert {"base", *SERVICES, "pose-gpu"} <= set(stages)
    chain = {t: _stage_chain(stages, t) for t in (*SERVICES, "pose-gpu")}
    for target, text in chain.items():
        assert ("ffmpeg" in re.sub(r"#.*", "", text)) == (target == "suggest"), f"{target}: ffmpeg only where rendering happens"
    assert not re.search(r"\b(torch|mediapipe)\b", re.sub(r"#.*", "", chain["gateway"])), "gateway needs no models"
    assert "mediapipe==0.10.21" in chain["pose"] and "--no-deps mediapipe" in chain["pose"]
    assert re.search(r"\btorch\b", re.sub(r"#.*", "", chain["pose"])), "pose runs the STRN refiner (torch)"
    assert "NVIDIA_VISIBLE_DEVICES" in chain["pose-gpu"]
    assert "ai-edge-litert" in chain["tracker"]
    assert not re.search(r"scikit-learn|\btorch\b", re.sub(r"#.*", "", chain["tracker"]))
    # every package installed with the lock as constraints is pinned there
    pinned = {re.split(r"==", line)[0].lower().replace("_", "-") for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    for cmd in re.findall(r"pip install -c requirements\.lock ([^\\&\n]+)", DOCKERFILE.read_text()):
        for pkg in cmd.split():
            assert pkg.lower().replace("_", "-") in pinned, f"{pkg} is installed by the Dockerfile but not pinned in requirements.lock"
    for target in (*SERVICES, "pose-gpu"):
        assert re.search(r"^USER\s+10001", chain[target], re.M), f"{target} must not run as root"


def test_dockerignore_keeps_the_context_small():
    lines = [ln.strip() for ln in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "**", "ignore everything, then allow what the images copy"
    assert {"!requirements.lock", "!shared/", "!services/", "!coach/"} <= set(lines)


# ------------------------------------------------------------------------------ Kubernetes
def test_k8s_has_a_deployment_per_service_with_image_entry_point_and_settings(k8s, compose):
    secret = _one(k8s, "Secret", "coach-s3")
    assert {"COACH_S3_ACCESS_KEY", "COACH_S3_SECRET_KEY"} <= set(secret["stringData"])
    for name in SERVICES:
        dep = _one(k8s, "Deployment", name)
        pod = dep["spec"]["template"]["spec"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        (ct,) = pod["containers"]
        compose_variant = "pose-gpu" if name == "pose" else name
        assert ct["image"] == _expand(compose["services"][compose_variant]["image"]), f"{name}: image differs from compose"
        assert ct["command"] == ENTRY[name]
        refs = {next(iter(r.values()))["name"] for r in ct["envFrom"]}
        assert refs == {"coach-settings", "coach-s3"}
        assert {"cpu", "memory"} <= set(ct["resources"]["requests"]), f"{name}: resource requests"
        assert "memory" in ct["resources"]["limits"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_settings_are_valid_and_point_workers_metrics_beyond_loopback(configmap):
    unknown = set(configmap) - SETTING_VARS
    assert not unknown, f"ConfigMap coach-settings sets unknown settings {unknown}"
    s = Settings.from_env({k: str(v) for k, v in configmap.items()})
    assert s.metrics_host == "0.0.0.0" and s.gateway_host == "0.0.0.0" and s.work_partitions == 8


def test_k8s_probes_and_scrape_annotations_use_the_metrics_port(k8s, configmap):
    for name in SERVICES:
        dep = _one(k8s, "Deployment", name)
        (ct,) = dep["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in ct["ports"]}
        expected = int(configmap["COACH_GATEWAY_PORT"] if name == "gateway" else configmap["COACH_METRICS_PORT"])
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = ct[kind]["httpGet"]
            assert get["path"] == "/healthz", f"{name} {kind}"
            assert ports.get(get["port"], get["port"]) == expected, f"{name} {kind} probes port {get['port']}"
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
        assert int(ann["prometheus.io/port"]) == expected


def test_k8s_pose_requests_a_gpu_and_workers_shut_down_gracefully(k8s):
    pose = _one(k8s, "Deployment", "pose")["spec"]["template"]["spec"]
    res = pose["containers"][0]["resources"]
    assert int(res["requests"]["nvidia.com/gpu"]) == 1 and int(res["limits"]["nvidia.com/gpu"]) == 1
    for name in SERVICES:
        if name == "pose":
            continue
        res = _one(k8s, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert "nvidia.com/gpu" not in res["requests"], f"only pose needs a GPU, not {name}"
    grace = {n: _one(k8s, "Deployment", n)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] for n in SERVICES}
    assert all(grace[w] >= 60 for w in WORKERS), grace
    assert grace["tracker"] >= 600 and grace["suggest"] >= 300, "a whole video / a whole render must fit"
    assert grace["gateway"] >= 30


def test_k8s_workers_autoscale_on_their_topic_lag_within_the_partitions(k8s, configmap):
    topics = Settings.from_env({k: str(v) for k, v in configmap.items()}).topics
    partitions = int(configmap["COACH_WORK_PARTITIONS"])
    for name in WORKERS:
        so = _one(k8s, "ScaledObject", name)
        assert so["apiVersion"] == "keda.sh/v1alpha1" and so["spec"]["scaleTargetRef"]["name"] == name
        assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"] <= partitions
        (trig,) = so["spec"]["triggers"]
        assert trig["type"] == "kafka"
        meta = trig["metadata"]
        assert meta["consumerGroup"] == f"coach-{name}", "the group shared/worker.py joins"
        assert meta["topic"] == getattr(topics, CONSUMES[name])
        assert meta["bootstrapServersFromEnv"] in configmap
        assert int(meta["lagThreshold"]) >= 1 and meta["allowIdleConsumers"] == "false"
    assert not _k8s(k8s, "ScaledObject", "gateway")


def test_k8s_gateway_has_a_service_and_a_disruption_budget(k8s):
    dep = _one(k8s, "Deployment", "gateway")
    assert dep["spec"]["replicas"] >= 2
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = _one(k8s, "PodDisruptionBudget", "gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] >= 1 and pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
    svc = _one(k8s, "Service", "gateway")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] in {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}


def test_k8s_init_job_creates_topics_and_bucket(k8s):
    job = _one(k8s, "Job", "coach-init")
    code = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    compile(code, "coach-init", "exec")
    assert "bus.ensure_topics(s)" in code and "ensure_bucket()" in code


def test_kustomizations_list_every_manifest(k8s):
    for kust in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kust.read_text())
        for res in doc.get("resources", []):
            assert (kust.parent / res).exists(), f"{kust}: missing {res}"
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(base["resources"]) == {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    cpu = yaml.safe_load((K8S / "overlays" / "cpu" / "kustomization.yaml").read_text())
    removed = {op["path"] for op in yaml.safe_load(cpu["patches"][0]["patch"])}
    assert "/spec/template/spec/containers/0/resources/requests/nvidia.com~1gpu" in removed
    assert cpu["images"][0] == {"name": "ai-coach/pose-gpu", "newName": "ai-coach/pose", "newTag": "0.1.0"}


def test_prometheus_rule_crd_matches_alerts_yml():
    sys.path.insert(0, str(PROM))
    try:
        import rule_crd
    finally:
        sys.path.remove(str(PROM))
    assert (K8S / "optional" / "prometheusrule.yaml").read_text() == rule_crd.render(), \
        "regenerate: python deploy/prometheus/rule_crd.py > deploy/k8s/optional/prometheusrule.yaml"


# ------------------------------------------------------------------------------ Prometheus + Grafana
def test_scrape_config_covers_every_service_on_the_ports_they_serve(compose):
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    svcs = compose["services"]
    for name in SERVICES:
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        (sd,) = job["dns_sd_configs"]
        variants = [name, "pose-gpu"] if name == "pose" else [name]
        assert sd["names"] == variants, f"job {name} must resolve every replica of {variants}"
        for v in variants:
            env = svcs[v]["environment"]
            port = env["COACH_GATEWAY_PORT"] if name == "gateway" else env["COACH_METRICS_PORT"]
            assert sd["port"] == int(port), f"{v} serves /metrics on {port}, scraped on {sd['port']}"
    assert cfg["rule_files"] == ["alerts.yml"]


def test_promtool_accepts_the_config_and_the_rules():
    out = _run_promtool("check", "config", str(PROM / "prometheus.yml"))
    assert "SUCCESS" in out.stdout + out.stderr
    out = _run_promtool("check", "rules", str(PROM / "alerts.yml"))
    assert "SUCCESS" in out.stdout + out.stderr


def _metric_names_in(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(coach_[a-z_]+)\b", expr)}


def _exported_metric_names() -> set[str]:
    import services.gateway.app  # noqa: F401  (registers the gateway's metrics)
    import shared.observability  # noqa: F401
    import coach.watchdog  # noqa: F401
    from prometheus_client import REGISTRY

    names = set()
    for fam in REGISTRY.collect():
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        if fam.type == "histogram":
            names.update({fam.name + "_bucket", fam.name + "_sum", fam.name + "_count"})
    return names


def test_alerts_cover_lag_errors_progress_and_dead_letters_with_real_metrics():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert {"CoachConsumerLagGrowing", "CoachErrorRateHigh", "CoachNoProgress", "CoachDeadLetters"} <= set(alerts)
    exported = _exported_metric_names()
    recorded = {r["record"] for r in rules if "record" in r}
    for rule in rules:
        unknown = {m for m in _metric_names_in(rule["expr"]) if m not in exported and not rule["expr"].count(m + ":")}
        assert not unknown - {r.split(":")[1] for r in recorded}, f"{rule.get('alert', rule.get('record'))} uses {unknown}"
    for a in alerts.values():
        assert a["labels"]["severity"] in {"warning", "critical"} and a["annotations"]["summary"]


def test_new_operator_metrics_are_exported():
    exported = _exported_metric_names()
    for name in ("coach_analysis_seconds_bucket", "coach_analyses_completed_total", "coach_pose_inference_seconds_bucket",
                 "coach_pose_batch_frames_bucket", "coach_gpu_in_use", "coach_analyses_submitted_total",
                 "coach_consumer_lag_messages", "coach_messages_total", "coach_dead_letters_total"):
        assert name in exported, name


def test_grafana_provisions_prometheus_and_a_dashboard_whose_queries_promtool_accepts(tmp_path):
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ai-coach.yml").read_text())["providers"][0]
    assert prov["options"]["path"] == "/var/lib/grafana/dashboards"
    dash = json.loads((GRAFANA / "dashboards" / "ai-coach.json").read_text())
    exprs = []
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == ds["uid"]
        exprs += [t["expr"] for t in panel["targets"]]
    exported = _exported_metric_names()
    for e in exprs:
        assert _metric_names_in(e) <= exported, f"dashboard query uses unknown metrics: {e}"
    used = set().union(*map(_metric_names_in, exprs))
    assert {"coach_consumer_lag_messages", "coach_analysis_seconds_bucket", "coach_analyses_completed_total",
            "coach_pose_inference_seconds_bucket", "coach_gpu_in_use", "coach_frames_total"} <= used
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    _run_promtool("check", "rules", str(path))


def test_embedded_stack_prometheus_config_scrapes_every_process_and_promtool_accepts_it(tmp_path):
    from coach.stack import ALERT_RULES, WORKER_MODULES, EmbeddedStack, Proc, StackPorts

    stack = EmbeddedStack(tmp_path, StackPorts(), {"tracker": 1, "pose": 2, "judge": 1, "suggest": 1, "align": 1},
                          with_prometheus=True)
    port = 19101
    for svc, n in stack.workers.items():
        for k in range(n):
            name = svc if n == 1 else f"{svc}-{k + 1}"
            stack.procs.append(Proc(name, [sys.executable, "-m", WORKER_MODULES[svc]], {}, tmp_path / "x.log", metrics_port=port))
            port += 1
    stack.procs.append(Proc("gateway", [sys.executable, "-m", "services.gateway"], {}, tmp_path / "g.log", metrics_port=8000))
    stack.procs.append(Proc("watchdog", [sys.executable, "-m", "coach.watchdog"], {}, tmp_path / "w.log", metrics_port=port))
    stack.procs.append(Proc("broker", ["tansu"], {}, tmp_path / "b.log"))
    cfg = stack.prometheus_config()
    jobs = {j["job_name"]: j["static_configs"] for j in cfg["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    assert [t["labels"]["instance"] for t in jobs["pose"]] == ["pose-1", "pose-2"]
    assert jobs["gateway"][0]["targets"] == ["127.0.0.1:8000"]
    assert cfg["rule_files"] == [str(ALERT_RULES)] and ALERT_RULES.exists()
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(cfg))
    _run_promtool("check", "config", str(path))
    assert StackPorts().shifted(100).prometheus == StackPorts().prometheus + 100


def test_lag_series_of_a_partition_moved_to_another_worker_is_dropped():
    """Alerts take the max lag per partition: a stale series left by the previous owner would keep
    reporting lag after a rebalance, so a worker drops the series of partitions it no longer owns."""
    from kafka.structs import TopicPartition
    from prometheus_client import REGISTRY

    from shared.worker import Worker, WorkerSpec

    class Consumer:
        owned = {TopicPartition("t-clips", 0), TopicPartition("t-clips", 1)}

        def assignment(self):
            return set(self.owned)

        def highwater(self, tp):
            return 10

    w = object.__new__(Worker)
    w.spec = WorkerSpec("lagtest", "t-clips", object, lambda m, c: None)
    w.consumer, w._lag_reported = Consumer(), set()
    for p in (0, 1):
        w._record_lag(TopicPartition("t-clips", p), 4)

    def lag(p):
        return REGISTRY.get_sample_value("coach_consumer_lag_messages",
                                         {"service": "lagtest", "topic": "t-clips", "partition": str(p)})

    assert lag(0) == lag(1) == 6
    Consumer.owned = {TopicPartition("t-clips", 0)}    # partition 1 went to another member
    w._forget_moved_partitions()
    assert lag(0) == 6 and lag(1) is None


# What each image must be able to import: the entry point and the modules its handlers import
# lazily, plus calls that trigger further lazy imports.
IMAGE_IMPORTS = {
    "gateway": (["services.gateway.__main__", "services.gateway.app"],
                "from services.gateway.app import create_app; from shared.settings import Settings; create_app(Settings()); "
                "from shared.sports import shipped_descriptions; shipped_descriptions()"),
    "tracker": (["services.tracker.worker", "services.tracker.athlete", "services.tracker.mot", "services.tracker.detector"],
                "from services.tracker.detector import PersonDetector; PersonDetector()"),
    "pose": (["services.pose.worker", "services.pose.blazepose", "services.pose.refine"],
             "from services.pose.worker import PoseStage, report_gpu; PoseStage('strn')"),
    "judge": (["services.judge.worker", "services.judge.packs", "shared.features", "services.judge.segments"],
              "from services.judge.packs import available_packs, load_pack; [load_pack(p) for p in available_packs()]"),
    "suggest": (["services.suggest.worker", "services.suggest.catalog", "services.suggest.retrieval", "shared.features",
                 "shared.sports", "shared.poses", "services.suggest.biomech_report", "shared.render"],
                "from services.suggest.biomech_report import _figure; _figure(1); "
                "from services.suggest.library import load_library; load_library()"),
    "align": (["services.tracker.align_worker", "services.tracker.align"],
              "from services.tracker.align import normalized_xcorr; normalized_xcorr([1, 2, 3], [2, 3, 1], 2)"),
    "watchdog": (["coach.watchdog"], ""),
}

_IMPORT_PROBE = r'''
import importlib, importlib.abc, json, sys
allowed, blocked, modules, call, target = json.loads(sys.argv[1])
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target_=None):
        top = name.split(".")[0]
        if top in blocked and top not in allowed:
            raise ModuleNotFoundError(f"the {target} image does not install {top!r} (imported as {name})", name=top)
sys.meta_path.insert(0, Block())
for m in modules:
    importlib.import_module(m)
exec(call)
'''


def _image_packages(target: str) -> tuple[set[str], set[str]]:
    """Distributions the target's pip lines install (with their dependencies), and those without."""
    from importlib import metadata

    def norm(n):
        return re.sub(r"[-_.]+", "-", n).lower()

    chain = re.sub(r"#.*", "", _stage_chain(_dockerfile_stages(), target)).replace("\\\n", " ")
    with_deps = {norm(p) for line in re.findall(r"pip install -c requirements\.lock ([^&\n]+)", chain) for p in line.split()}
    no_deps = {norm(p.split("==")[0]) for p in re.findall(r"pip install --no-deps (\S+)", chain)}
    todo, seen = list(with_deps), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req:
                continue
            todo.append(norm(re.match(r"[A-Za-z0-9_.\-]+", req).group(0)))
    return seen | no_deps, no_deps


@pytest.mark.parametrize("target", sorted(IMAGE_IMPORTS))
def test_each_image_installs_what_its_code_imports(target):
    """Run the service's imports in a fresh interpreter where only the packages its image installs
    (per the Dockerfile, with their dependencies) can be imported."""
    from importlib import metadata

    installed, _ = _image_packages(target)
    top_to_dists = metadata.packages_distributions()
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    blocked = {top for top, dists in top_to_dists.items() if top not in ("shared", "services", "coach")}
    allowed = {top for top, dists in top_to_dists.items() if any(norm(d) in installed for d in dists)}
    modules, call = IMAGE_IMPORTS[target]
    arg = json.dumps([sorted(allowed), sorted(blocked), modules, call, target])
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, arg], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    if target == "tracker":   # its mediapipe wheel is installed without dependencies: only a file is read
        assert "mediapipe" in (_image_packages(target)[1])


def test_metrics_server_listens_where_coach_metrics_host_says(monkeypatch):
    """Containers set COACH_METRICS_HOST=0.0.0.0 so probes and Prometheus reach /healthz and /metrics;
    every process serving them (workers, watchdog) follows it."""
    import urllib.request

    from shared.observability import serve_health

    monkeypatch.setenv("COACH_METRICS_HOST", "127.0.0.2")
    server = serve_health(0, lambda: (True, {"service": "t"}))
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.2"
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/healthz", timeout=5) as r:
            assert json.loads(r.read())["ok"] is True
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.delenv("COACH_METRICS_HOST")
    server = serve_health(0, lambda: (True, {}))
    try:
        assert server.server_address[0] == "127.0.0.1", "loopback unless told otherwise"
    finally:
        server.shutdown()
        server.server_close()
