"""The deployment files stay valid and in step with the code.

docker-compose.yml, deploy/Dockerfile, the Prometheus configuration and rules, the
Alertmanager configuration, the Grafana dashboard and the Helm chart are checked with the
tools that read them (docker-compose, promtool, amtool, helm, kubeconform against the
Kubernetes schemas) and against the real settings class and metric names, without a Docker
engine, a running Prometheus or a Kubernetes cluster.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.settings import Settings
from tests import kubernetes_schemas

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIGS = {"compose": PROMETHEUS / "prometheus.yml",
                      "local": PROMETHEUS / "prometheus.local.yml"}
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

APP_SERVICES = ("segmenter", "router", "metrics")
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
DATASOURCE_VARIABLE = {"${datasource}", "$datasource"}


def tool(name: str) -> str:
    found = (shutil.which(name) or shutil.which(name, path="/usr/bin")
             or shutil.which(name, path=str(ROOT / ".cache" / "bin")))
    if found is None:
        pytest.fail(f"{name} is not installed; `bin/setup --test` installs it")
    return found


def run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, input=stdin)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- docker-compose.yml and the Dockerfile ------------------------------------------------


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(COMPOSE_FILE)["services"]
    return services


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as a mapping, from either of compose's two spellings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {key: value for key, value in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings the service would read inside its container, given the compose env."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    for key, value in environment(service).items():
        assert value is not None, f"{key} is inherited from the host: give it a value"
        monkeypatch.setenv(key, value)
    return Settings()


def bind_mount(service: dict[str, Any], source: str) -> tuple[str, str]:
    """Where a host path is mounted in a service, and the mount's mode ("rw" by default)."""
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if Path(parts[0]) == Path(source):
            return parts[1], parts[2] if len(parts) > 2 else "rw"
    raise AssertionError(f"{source} is not mounted: {service.get('volumes')}")


def bind_mount_target(service: dict[str, Any], source: str) -> str:
    return bind_mount(service, source)[0]


def test_compose_file_passes_docker_compose_validation() -> None:
    result = run(tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "-q")
    assert result.returncode == 0, result.stderr


def test_docker_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above means something: the same validator refuses an invalid service."""
    broken = load_yaml(COMPOSE_FILE)
    broken["services"]["router"]["ports"] = {"not": "a list"}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = run(tool("docker-compose"), "-f", str(path), "--project-directory", str(ROOT),
                 "config", "-q")
    assert result.returncode != 0
    assert "ports" in result.stderr


def test_app_services_set_only_settings_fields() -> None:
    services = compose_services()
    for name in APP_SERVICES:
        service = services[name]
        assert "env_file" not in service, f"{name}: keep the environment in docker-compose.yml"
        env = environment(service)
        assert env, f"{name} sets no environment"
        unknown = sorted(set(env) - SETTINGS_ENV)
        assert not unknown, f"{name} sets {unknown}, which Settings does not read"


def test_app_services_listen_on_all_interfaces_and_use_postgres(
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    for name in APP_SERVICES:
        settings = settings_of(services[name], monkeypatch)
        assert settings.host == "0.0.0.0", f"{name} would listen on {settings.host} only"
        assert settings.database_url.startswith("postgresql+asyncpg://"), name
        assert "@postgres:5432/" in settings.database_url, name
        assert settings.kafka_bootstrap_servers == "kafka:9092", name
        assert {"kafka", "postgres"} <= set(services[name]["depends_on"]), name


def test_app_services_publish_their_settings_port_on_loopback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    for name in APP_SERVICES:
        service = services[name]
        port = getattr(settings_of(service, monkeypatch), f"{name}_port")
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert [str(p) for p in service["ports"]] == [f"127.0.0.1:{port}:{port}"], name
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_app_services_read_the_mounted_config(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings.model_fields
    services = compose_services()
    for name in APP_SERVICES:
        service = services[name]
        mounted, mode = bind_mount(service, "./config")
        assert mode == "ro", f"{name} may write to ./config"
        settings = settings_of(service, monkeypatch)
        for field in ("segment_rules_file", "routing_table_file"):
            path = getattr(settings, field)
            assert path.parent == Path(mounted), f"{name}: {path} is not under {mounted}"
            assert path.name == Path(str(defaults[field].default)).name, f"{name}: {path}"


def test_every_published_port_is_loopback_only() -> None:
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def dockerfile_final_stage() -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def test_dockerfile_image_runs_as_non_root_on_all_interfaces() -> None:
    stage = dockerfile_final_stage()
    assert stage[0].split()[1] == "python:3.11-slim"
    env: dict[str, str] = {}
    for line in stage:
        if line.upper().startswith("ENV "):
            for pair in line.split()[1:]:
                key, _, value = pair.partition("=")
                env[key] = value
    assert env.get("HOST") == "0.0.0.0"
    unknown = sorted(key for key in env if key not in SETTINGS_ENV
                     and key != "PATH" and not key.startswith(("PYTHON", "PIP_")))
    assert not unknown, f"the Dockerfile sets {unknown}, which Settings does not read"
    users = [line.split()[1] for line in stage if line.upper().startswith("USER ")]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_sources_are_not_docker_ignored() -> None:
    copied = {"pyproject.toml", "README.md", "services", "config"}
    text = DOCKERFILE.read_text(encoding="utf-8")
    for source in copied:
        assert re.search(rf"^COPY\s.*\b{re.escape(source)}\b", text, re.MULTILINE), source
    ignored = {line.strip().rstrip("/") for line in
               (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert not copied & ignored
    assert {".venv", ".git", ".cache", ".data"} <= ignored


# --- Prometheus -----------------------------------------------------------------------------


def rule_files() -> list[Path]:
    return sorted((PROMETHEUS / "rules").glob("*.yml"))


@pytest.mark.parametrize("variant", sorted(PROMETHEUS_CONFIGS))
def test_prometheus_config_is_valid(variant: str) -> None:
    config = PROMETHEUS_CONFIGS[variant]
    result = run(tool("promtool"), "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool accepts a glob that matches nothing; the rules must really be loaded.
    patterns = load_yaml(config)["rule_files"]
    assert patterns == ["rules/*.yml"]
    assert [path for pattern in patterns for path in config.parent.glob(pattern)]


def test_prometheus_rules_are_valid() -> None:
    files = rule_files()
    assert files, "no rule files under deploy/prometheus/rules"
    for path in files:
        result = run(tool("promtool"), "check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    result = run(tool("promtool"), "test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_down_alert_exists() -> None:
    alerts = {rule["alert"]: rule for path in rule_files()
              for group in load_yaml(path)["groups"] for rule in group["rules"]
              if "alert" in rule}
    down = alerts["RoutingServiceDown"]
    assert re.fullmatch(r"up\{.*\} == 0", down["expr"])
    assert down["for"] == "1m"


@pytest.mark.parametrize("variant", sorted(PROMETHEUS_CONFIGS))
def test_prometheus_scrapes_each_service_on_its_port(
        variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    expected: dict[str, list[str]] = {}
    for name in APP_SERVICES:
        port = getattr(settings_of(services[name], monkeypatch), f"{name}_port")
        host = name if variant == "compose" else "127.0.0.1"
        expected[name] = [f"{host}:{port}"]
        if variant == "compose":  # and the stage's unpublished replicas, by DNS
            expected[name].append(f"dns A {name}-replica:{port}")
    scraped = {job["job_name"]: [target for static in job["static_configs"]
                                 for target in static["targets"]]
               + [f"dns {sd['type']} {found}:{sd['port']}"
                  for sd in job.get("dns_sd_configs", []) for found in sd["names"]]
               for job in load_yaml(PROMETHEUS_CONFIGS[variant])["scrape_configs"]}
    assert scraped == expected


def test_the_local_prometheus_config_generated_for_tests_is_valid(tmp_path: Path) -> None:
    """devtools/prometheus.py: prometheus.local.yml's jobs on other ports, 1s."""
    from devtools import prometheus

    targets = {name: [f"127.0.0.1:{18000 + n}"] for n, name in enumerate(APP_SERVICES)}
    generated = prometheus.config(targets, interval="1s")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(generated), encoding="utf-8")
    result = run(tool("promtool"), "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_files())} rule files found" in result.stdout  # by full path
    assert {job["job_name"]: job["static_configs"][0]["targets"]
            for job in generated["scrape_configs"]} == targets
    with pytest.raises(prometheus.PrometheusError):
        prometheus.config({"router": ["127.0.0.1:1"]})


def test_compose_prometheus_mounts_the_config_directory() -> None:
    prometheus = compose_services()["prometheus"]
    target = bind_mount_target(prometheus, "./deploy/prometheus")
    assert f"--config.file={target}/prometheus.yml" in prometheus["command"]


# --- PromQL metric names --------------------------------------------------------------------

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless", "inf", "nan", "atan2"}
METRIC_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if text[match.end():].lstrip().startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(word)
    return names


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.9, sum by (department, le) (rate(node_cpu_seconds_total'
            '{mode="idle", department=~"$department"}[$__rate_interval]))) * 1e3 > bool 5'
            ' or on(job) up{job="x"} offset 5m / ignoring(a) group_left(b) other:recorded')
    assert metric_names(expr) == {"node_cpu_seconds_total", "up", "other:recorded"}


def declared_metrics() -> set[str]:
    """Metric names the services register (as string literals), without counters' _total."""
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        for name in re.findall(r"""["'](routing_[a-z0-9_]+)["']""", path.read_text("utf-8")):
            names.add(name.removesuffix("_total"))
    return names


def base_name(metric: str) -> str:
    for suffix in METRIC_SUFFIXES:
        if metric.endswith(suffix):
            return metric.removesuffix(suffix)
    return metric


def all_rules() -> list[dict[str, Any]]:
    return [rule for path in rule_files() for group in load_yaml(path)["groups"]
            for rule in group["rules"]]


def recorded_series() -> set[str]:
    return {rule["record"] for rule in all_rules() if "record" in rule}


def test_rules_use_metrics_the_services_export() -> None:
    known = declared_metrics() | recorded_series()
    for rule in all_rules():
        for metric in metric_names(rule["expr"]) - {"up"}:
            assert base_name(metric) in known, f"{rule.get('record') or rule['alert']}: {metric}"


def test_recorded_series_are_named_level_metric_operations() -> None:
    declared = declared_metrics()
    for name in recorded_series():
        level, metric, operations = name.split(":")
        # The level names the labels kept, joined by "_" (department_target: by both).
        assert level.split("_")[0] in {"department", "segment", "group"}, name
        assert set(level.split("_")) <= {"department", "segment", "group", "target",
                                         "level"}, name
        assert operations, name
        assert any(metric == known or metric.startswith(f"{known}_") for known in declared), name


def alert_unit_tests() -> list[dict[str, Any]]:
    return [case for path in sorted((PROMETHEUS / "tests").glob("*.yml"))
            for test in load_yaml(path)["tests"] for case in test.get("alert_rule_test", [])]


def test_every_alert_has_unit_tests_that_fire_and_that_stay_quiet() -> None:
    alerts = {rule["alert"] for rule in all_rules() if "alert" in rule}
    cases = alert_unit_tests()
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - firing == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"
    assert {"RoutingServiceDown", "RoutingFirstResponseTargetFastBurn",
            "RoutingFirstResponseTargetSlowBurn", "RoutingBacklogGrowing",
            "RoutingStageStalled", "RoutingDepartmentQueueStalled",
            "RoutingDeadLetters"} <= alerts


def test_alerts_say_how_bad_and_what_happened() -> None:
    for rule in all_rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


# --- Grafana --------------------------------------------------------------------------------


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def is_datasource_variable(datasource: Any) -> bool:
    if isinstance(datasource, dict):
        return datasource.get("uid") in DATASOURCE_VARIABLE
    return datasource in DATASOURCE_VARIABLE


def load_dashboard(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def template_expressions(dashboard: dict[str, Any]) -> Iterator[str]:
    """PromQL in query variables; `label_values(metric, label)` yields its metric."""
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
        if label_values:
            yield label_values.group(1)
        elif not re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", query):
            yield re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", query)


def test_there_is_a_dashboard() -> None:
    assert GRAFANA / "dashboards" / "routing.json" in DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_has_a_datasource_variable(path: Path) -> None:
    variables = {v["name"]: v for v in load_dashboard(path)["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert is_datasource_variable(variable["datasource"]), variable["name"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_panels_query_through_the_datasource_variable(path: Path) -> None:
    dashboard = load_dashboard(path)
    targets = 0
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            targets += 1
            datasource = target.get("datasource") or panel.get("datasource")
            assert is_datasource_variable(datasource), (panel["title"], datasource)
            if "datasource" in panel:
                assert is_datasource_variable(panel["datasource"]), panel["title"]
    assert targets, "the dashboard queries nothing"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_queries_only_routing_metrics_and_up(path: Path) -> None:
    dashboard = load_dashboard(path)
    declared = declared_metrics()
    recorded = recorded_series()
    expressions = [(panel["title"], target["expr"]) for panel in all_panels(dashboard["panels"])
                   for target in panel.get("targets", [])]
    expressions += [("templating", expr) for expr in template_expressions(dashboard)]
    assert expressions
    for where, expr in expressions:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        for name in names:
            if name == "up" or name in recorded:
                continue
            assert name.startswith("routing_"), f"{where}: {name}"
            assert base_name(name) in declared, (
                f"{where}: {name} is not a metric the services export")


OPERATIONS_METRICS = {
    "routing_first_response_seconds", "routing_first_response_target",
    "routing_open_tickets", "routing_tickets_routed", "routing_tickets_escalated",
    "routing_tickets_transferred", "routing_consumer_lag", "routing_consumer_committed_offset",
    "routing_dead_letters", "routing_resolution_seconds", "routing_queue_wait_seconds",
    "routing_pipeline_latency_seconds"}


def test_the_operations_dashboard_shows_every_response_and_operations_metric() -> None:
    dashboard = load_dashboard(GRAFANA / "dashboards" / "routing.json")
    shown = {base_name(name) for panel in all_panels(dashboard["panels"])
             for target in panel.get("targets", []) for name in metric_names(target["expr"])}
    assert OPERATIONS_METRICS - shown == set()
    grouped = " ".join(target["expr"] for panel in all_panels(dashboard["panels"])
                       for target in panel.get("targets", []))
    assert "by (segment" in grouped, "no per-segment comparison"
    assert "burn" in " ".join(p["title"].lower() for p in all_panels(dashboard["panels"]))


def test_grafana_provisioning_matches_compose() -> None:
    grafana = compose_services()["grafana"]
    provisioning = bind_mount_target(grafana, "./deploy/grafana/provisioning")
    assert provisioning == "/etc/grafana/provisioning"
    dashboards_dir = bind_mount_target(grafana, "./deploy/grafana/dashboards")
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")
    assert [p["options"]["path"] for p in providers["providers"]] == [dashboards_dir]
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    [prometheus] = datasources["datasources"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["uid"]
    assert prometheus["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in compose_services()["prometheus"]["ports"]


# --- docker-compose.yml: replicas, demo data, Kafka from the host ---------------------------

REPLICAS = {name: f"{name}-replica" for name in APP_SERVICES}


def rendered_compose(*options: str) -> dict[str, Any]:
    """The file as docker-compose resolves it (anchors, merges, profiles)."""
    result = run(tool("docker-compose"), "-f", str(COMPOSE_FILE), *options, "config")
    assert result.returncode == 0, result.stderr
    rendered: dict[str, Any] = yaml.safe_load(result.stdout)
    return rendered


def test_each_stage_has_an_unpublished_replica_service() -> None:
    services = rendered_compose()["services"]
    for name, replica in REPLICAS.items():
        same = ("command", "environment", "healthcheck", "image", "depends_on", "volumes")
        assert {key: services[replica].get(key) for key in same} == {
            key: services[name].get(key) for key in same}, replica
        assert "ports" not in services[replica], f"{replica} would clash on the host port"
        assert services[replica]["deploy"]["replicas"] == 0, "none unless scaled"


def test_every_replica_gets_its_own_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """INSTANCE_ID=auto takes the container's host name, which Docker makes from the
    container's id unless the file fixes it; every container of every stage differs."""
    services = rendered_compose()["services"]
    containers = 0
    ids: dict[str, set[str]] = {}
    for name in [*APP_SERVICES, *REPLICAS.values()]:
        service = services[name]
        assert "hostname" not in service and "container_name" not in service, name
        assert environment(service)["INSTANCE_ID"] == "auto", name
        stage = name.removesuffix("-replica")
        for _ in range(3):  # as if scaled to 3
            container_id = secrets.token_hex(32)
            monkeypatch.setattr(socket, "gethostname", lambda cid=container_id: cid[:12])
            ids.setdefault(stage, set()).add(settings_of(service, monkeypatch).instance_id)
            containers += 1
    assert sum(len(found) for found in ids.values()) == containers


def test_kafka_is_published_where_the_walk_through_reads_it() -> None:
    kafka = compose_services()["kafka"]
    env = environment(kafka)
    advertised = dict(listener.split("://") for listener in
                      (env["KAFKA_ADVERTISED_LISTENERS"] or "").split(","))
    host_listener = advertised["HOST"]
    listening = dict(listener.split("://") for listener in
                     (env["KAFKA_LISTENERS"] or "").split(","))
    container_port = listening["HOST"].rsplit(":", 1)[1]
    assert kafka["ports"] == [f"{host_listener}:{container_port}"]
    # The address bin/run's broker has, the settings' default and the README's kcat line.
    assert host_listener == Settings.model_fields["kafka_bootstrap_servers"].default
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"kcat -b {host_listener} " in readme


def test_the_demo_profile_seeds_the_walk_through() -> None:
    default = rendered_compose()["services"]
    demo = rendered_compose("--profile", "demo")["services"]["demo"]
    assert "demo" in default  # listed, but only started with --profile demo
    assert load_yaml(COMPOSE_FILE)["services"]["demo"]["profiles"] == ["demo"]
    assert demo["command"][:3] == ["python", "-m", "devtools.demo_seed"]
    credentials = Path(demo["command"][3])
    mounts = {Path(volume.split(":")[1]): volume for volume in demo["volumes"]}
    data = mounts[credentials.parent]
    assert data.startswith(f"{ROOT / '.data'}:") and not data.endswith(":ro")
    # It reads the routing table (the departments' tokens) from the read-only mount and
    # hands the file to that mount's owner.
    assert mounts[Path("/app/config")] == f"{ROOT / 'config'}:/app/config:ro"
    # The image holds no dev tooling: the demo runs the checkout's devtools/, mounted.
    assert mounts[Path("/app/devtools")] == f"{ROOT / 'devtools'}:/app/devtools:ro"
    assert demo["command"][4:] == ["--owner-of", "/app/config"]
    assert demo["restart"] == "no"
    assert set(demo["depends_on"]) == {"postgres"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert credentials.relative_to("/app").as_posix() == ".data/credentials.env"
    assert "source .data/credentials.env" in readme


# --- Alertmanager ---------------------------------------------------------------------------

ALERTMANAGER = ROOT / "deploy" / "alertmanager"


def test_alertmanager_config_is_valid() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_rejects_a_route_to_a_missing_receiver(tmp_path: Path) -> None:
    broken = load_yaml(ALERTMANAGER / "alertmanager.yml")
    broken["route"]["receiver"] = "nobody"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert run(tool("amtool"), "check-config", str(path)).returncode != 0


def test_prometheus_sends_alerts_to_the_compose_alertmanager() -> None:
    services = compose_services()
    alertmanager = services["alertmanager"]
    target = bind_mount_target(alertmanager, "./deploy/alertmanager")
    assert bind_mount(alertmanager, "./deploy/alertmanager")[1] == "ro"
    assert f"--config.file={target}/alertmanager.yml" in alertmanager["command"]
    assert alertmanager["ports"] == ["127.0.0.1:9093:9093"]
    [wired] = load_yaml(PROMETHEUS_CONFIGS["compose"])["alerting"]["alertmanagers"]
    assert wired["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    assert "alertmanager" in services["prometheus"]["depends_on"]


def test_every_alert_reaches_a_receiver() -> None:
    config = load_yaml(ALERTMANAGER / "alertmanager.yml")
    receivers = {receiver["name"] for receiver in config["receivers"]}
    # As shipped: one receiver with no integration, where Slack or PagerDuty go.
    assert config["receivers"] == [{"name": "operations"}]
    assert config["route"]["receiver"] == "operations"
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {route["receiver"] for route in routes} <= receivers
    alerts = {rule["alert"] for rule in all_rules() if "alert" in rule}
    for rule in config.get("inhibit_rules", []):
        for matcher in (*rule["source_matchers"], *rule["target_matchers"]):
            named = re.fullmatch(r'alertname="(\w+)"', matcher)
            assert named and named.group(1) in alerts, matcher


# --- Kubernetes: the Helm chart -------------------------------------------------------------

CHART = ROOT / "deploy" / "helm" / "customer-routing"
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")
# Environment the chart sets that Settings does not read: spliced into DATABASE_URL.
CHART_ONLY_ENV = {"DATABASE_PASSWORD"}


def chart_values(**extra: str) -> list[str]:
    """Install options as the README gives them, with a password made up for this run."""
    options = {"kafka.bootstrapServers": "kafka.streaming:9092",
               "postgresql.host": "postgresql.data", "postgresql.password":
               secrets.token_urlsafe(16), **extra}
    return ["--set-file", "config.routingTable=config/routing.yaml",
            "--set-file", "config.segmentRules=config/segments.yaml",
            *(f"--set={key}={value}" for key, value in options.items())]


def helm_template(*options: str) -> subprocess.CompletedProcess[str]:
    return run(tool("helm"), "template", "routing", str(CHART), *options)


def rendered_chart(**extra: str) -> list[dict[str, Any]]:
    result = helm_template(*chart_values(**extra))
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def deployments(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in manifests
            if d["kind"] == "Deployment"}


def kubeconform(manifests: str, version: str, schemas: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("kubeconform"), "-strict", "-summary", "-kubernetes-version", version,
               "-schema-location", f"{schemas}/{kubernetes_schemas.LOCATION}", "-",
               stdin=manifests)


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not kubernetes_schemas.SCHEMAS.is_dir():
        pytest.fail("no Kubernetes schemas; `bin/setup --test` installs them")
    out = tmp_path_factory.mktemp("kubernetes-schemas")
    for version in KUBERNETES_VERSIONS:
        kubernetes_schemas.standalone(version, ["deployment-apps-v1.json", "service-v1.json",
                                                "configmap-v1.json", "secret-v1.json"], out)
    return out


def test_helm_lint_passes() -> None:
    result = run(tool("helm"), "lint", "--strict", str(CHART), *chart_values())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_chart_matches_the_kubernetes_schemas(version: str, schemas: Path) -> None:
    result = helm_template(*chart_values(), "--kube-version", version)
    assert result.returncode == 0, result.stderr
    checked = kubeconform(result.stdout, version, schemas)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Valid: 8, Invalid: 0, Errors: 0, Skipped: 0" in checked.stdout


def test_kubeconform_rejects_a_broken_manifest(schemas: Path) -> None:
    """The check above means something: the same schemas refuse a misspelt probe."""
    manifests = rendered_chart()
    router = deployments(manifests)["router"]
    container = router["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    checked = kubeconform(yaml.safe_dump_all(manifests), KUBERNETES_VERSIONS[0], schemas)
    assert checked.returncode != 0
    assert "livenesProbe" in checked.stdout


def test_every_deployment_has_probes_resources_and_replicas() -> None:
    values = load_yaml(CHART / "values.yaml")
    defaults = {name: values["services"][name]["replicas"] for name in APP_SERVICES}
    assert defaults == {"router": 2, "segmenter": 2, "metrics": 1}  # as the README says
    assert values["kafka"]["topicPartitions"] == 6
    found = deployments(rendered_chart(**{"services.segmenter.replicas": "4"}))
    assert set(found) == set(APP_SERVICES)
    for name, deployment in found.items():
        expected_replicas = 4 if name == "segmenter" else values["services"][name]["replicas"]
        assert deployment["spec"]["replicas"] == expected_replicas, name
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["ports"] == [{"name": "http",
                                       "containerPort": values["services"][name]["port"]}]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert f"--uid {pod_security['runAsUser']} " in DOCKERFILE.read_text("utf-8")
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_a_new_routing_table_rolls_the_pods(tmp_path: Path) -> None:
    changed = tmp_path / "routing.yaml"
    changed.write_text((ROOT / "config" / "routing.yaml").read_text("utf-8") + "\n# new\n",
                       encoding="utf-8")
    annotations = []
    for extra in ([], ["--set-file", f"config.routingTable={changed}"]):
        result = helm_template(*chart_values(), *extra)
        assert result.returncode == 0, result.stderr
        manifests = [m for m in yaml.safe_load_all(result.stdout) if m]
        annotations.append({name: d["spec"]["template"]["metadata"]["annotations"]
                            ["checksum/config"] for name, d in deployments(manifests).items()})
    before, after = annotations
    assert all(before[name] != after[name] for name in APP_SERVICES)


def container_env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of an env value from the variables set before it."""
    return re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], value)


def test_pods_read_their_settings_from_the_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    password = secrets.token_urlsafe(16)
    manifests = rendered_chart(**{"postgresql.password": password})
    [secret] = [m for m in manifests if m["kind"] == "Secret"]
    values = load_yaml(CHART / "values.yaml")
    for name, deployment in deployments(manifests).items():
        env: dict[str, str] = {}
        for variable in container_env(deployment):
            if "value" in variable:
                env[variable["name"]] = expand(variable["value"], env)
            elif variable["name"] == "DATABASE_PASSWORD":
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == secret["metadata"]["name"]
                env["DATABASE_PASSWORD"] = secret["stringData"][reference["key"]]
            else:  # the pod's name, from the downward API
                assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
                env[variable["name"]] = f"routing-customer-routing-{name}-7d9f8c6b5-x2k4q"
        assert set(env) - SETTINGS_ENV == CHART_ONLY_ENV, name
        settings = settings_of({"environment": env}, monkeypatch)
        assert settings.instance_id == env["INSTANCE_ID"], name
        assert settings.database_url == (f"postgresql+asyncpg://routing:{password}"
                                          "@postgresql.data:5432/routing")
        assert settings.kafka_bootstrap_servers == "kafka.streaming:9092"
        assert settings.kafka_topic_partitions == values["kafka"]["topicPartitions"]
        assert settings.host == "0.0.0.0"
        assert getattr(settings, f"{name}_port") == values["services"][name]["port"]
        mounted = {Path(mount["mountPath"]) for mount in
                   deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert {settings.segment_rules_file.parent, settings.routing_table_file.parent} \
            <= mounted


def test_the_config_map_holds_the_routing_table_and_segment_rules() -> None:
    [config_map] = [m for m in rendered_chart() if m["kind"] == "ConfigMap"]
    defaults = Settings.model_fields
    for field, path in (("routing_table_file", ROOT / "config" / "routing.yaml"),
                        ("segment_rules_file", ROOT / "config" / "segments.yaml")):
        file_name = Path(str(defaults[field].default)).name
        assert yaml.safe_load(config_map["data"][file_name]) == load_yaml(path), file_name


def test_the_chart_commits_no_secret() -> None:
    values = load_yaml(CHART / "values.yaml")
    assert values["postgresql"]["password"] == ""
    without = [option for option in chart_values() if "postgresql.password" not in option]
    refused = helm_template(*without)
    assert refused.returncode != 0
    assert "postgresql.password" in refused.stderr
    # With an existing Secret the chart makes none and the pods read that one.
    manifests = rendered_chart(**{"postgresql.password": "",
                                  "postgresql.existingSecret": "routing-db"})
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for deployment in deployments(manifests).values():
        [reference] = [v["valueFrom"]["secretKeyRef"] for v in container_env(deployment)
                       if v["name"] == "DATABASE_PASSWORD"]
        assert reference == {"name": "routing-db", "key": "password"}


def test_every_stage_has_a_service_on_its_port() -> None:
    manifests = rendered_chart()
    services = {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in manifests
                if m["kind"] == "Service"}
    for name, deployment in deployments(manifests).items():
        selector = services[name]["spec"]["selector"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        [port] = services[name]["spec"]["ports"]
        assert port["targetPort"] == "http"
