"""The deployment files stay valid and in step with the code.

docker-compose.yml, deploy/Dockerfile, the Prometheus configuration and rules and the Grafana
dashboard are checked with the tools that read them (docker-compose, promtool) and against
the real settings class and metric names, without a Docker engine or a running Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.settings import Settings

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
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if found is None:
        pytest.fail(f"{name} is not installed; `bin/setup --test` installs it")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)


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
    expected = {}
    for name in APP_SERVICES:
        port = getattr(settings_of(services[name], monkeypatch), f"{name}_port")
        host = name if variant == "compose" else "127.0.0.1"
        expected[name] = [f"{host}:{port}"]
    scraped = {job["job_name"]: [target for static in job["static_configs"]
                                 for target in static["targets"]]
               for job in load_yaml(PROMETHEUS_CONFIGS[variant])["scrape_configs"]}
    assert scraped == expected


def test_the_local_prometheus_config_generated_for_tests_is_valid(tmp_path: Path) -> None:
    """services/local/prometheus.py: prometheus.local.yml's jobs on other ports, 1s."""
    from services.local import prometheus

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
        assert level in {"department", "segment", "group"}, name
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
