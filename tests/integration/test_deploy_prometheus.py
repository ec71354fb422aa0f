"""The Prometheus configurations and rules are valid (promtool), scrape each service and
the broker's JMX exporter on its port, and their expressions use metrics the services or
the exporter export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from devtools import processes
from devtools import run as devtools_run
from services.core.settings import PROJECT_ROOT, Settings
from tests.integration.deploy_files import (
    APP_SERVICES,
    PROMETHEUS,
    PROMETHEUS_CONFIGS,
    ROUTER_STAGE_SERVICE,
    all_rules,
    base_name,
    bind_mount_target,
    broker_metrics,
    compose_broker_metrics_port,
    compose_services,
    declared_metrics,
    fleet_wide_gauges,
    load_yaml,
    metric_names,
    recorded_series,
    rule_files,
    run,
    settings_of,
    summed_metrics,
    tool,
)

HELM_VALUES = PROJECT_ROOT / "deploy/helm/customer-routing/values.yaml"


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


@pytest.mark.parametrize("variant", sorted(PROMETHEUS_CONFIGS))
def test_prometheus_scrapes_each_service_and_the_broker_on_its_port(
        variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    expected: dict[str, list[str]] = {}
    for name in APP_SERVICES:
        port = getattr(settings_of(services[name], monkeypatch), f"{name}_port")
        host = name if variant == "compose" else "127.0.0.1"
        expected[name] = [f"{host}:{port}"]
        if name == "router":  # and the routing stage's instance (bin/run's port for it)
            stage_port = processes.local_ports(Settings())[ROUTER_STAGE_SERVICE]
            expected[name].append(f"{ROUTER_STAGE_SERVICE}:{port}" if variant == "compose"
                                  else f"127.0.0.1:{stage_port}")
        if variant == "compose":  # and the stage's unpublished replicas, by DNS
            expected[name].append(f"dns A {name}-replica:{port}")
    # The broker's JMX exporter: on the port compose's broker gives its agent, or bin/run's.
    expected["kafka"] = ([f"kafka:{compose_broker_metrics_port()}"] if variant == "compose"
                         else [f"127.0.0.1:{devtools_run.BROKER_METRICS_PORT}"])
    scraped = {job["job_name"]: [target for static in job["static_configs"]
                                 for target in static["targets"]]
               + [f"dns {sd['type']} {found}:{sd['port']}"
                  for sd in job.get("dns_sd_configs", []) for found in sd["names"]]
               for job in load_yaml(PROMETHEUS_CONFIGS[variant])["scrape_configs"]}
    assert scraped == expected


def test_the_local_prometheus_config_generated_for_tests_is_valid(tmp_path: Path) -> None:
    """devtools/prometheus.py: prometheus.local.yml's jobs on other ports, 1s."""
    from devtools import prometheus

    targets = {name: [f"127.0.0.1:{18000 + n}"]
               for n, name in enumerate((*APP_SERVICES, "kafka"))}
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


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.9, sum by (department, le) (rate(node_cpu_seconds_total'
            '{mode="idle", department=~"$department"}[$__rate_interval]))) * 1e3 > bool 5'
            ' or on(job) up{job="x"} offset 5m / ignoring(a) group_left(b) other:recorded')
    assert metric_names(expr) == {"node_cpu_seconds_total", "up", "other:recorded"}


def test_summed_metric_extraction() -> None:
    expr = ('60 * sum by (group) (deriv(a[5m])) + max(b) - count(c{x="sum(d)"}) or'
            ' sum(rate(e[1m])) by (f) / sum_over_time(g[1h]) + sum without (h) (i * j:k)')
    assert summed_metrics(expr) == {"a", "c", "e", "i", "j:k"}


def test_rules_add_up_no_figure_every_metrics_instance_exports() -> None:
    fleet_wide = fleet_wide_gauges()
    for rule in all_rules():
        summed = summed_metrics(rule["expr"]) & fleet_wide
        assert not summed, f"{rule.get('record') or rule['alert']}: max, not sum: {summed}"


def test_rules_use_metrics_the_services_or_the_broker_export() -> None:
    known = declared_metrics() | recorded_series() | broker_metrics()
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


KUBERNETES = PROMETHEUS / "prometheus.kubernetes.yml"


def test_the_kubernetes_config_is_valid_and_names_each_chart_component_a_rules_job(
        ) -> None:
    """The rules (RoutingServiceDown, the dashboard's `up`) match jobs router, segmenter
    and metrics: in a cluster, each pod of the Helm chart gets its component's job, the
    routing stage the router's. Prometheus anchors a relabel regex at both ends, as
    `re.fullmatch` does; its `$1` is Python's `\\1`. Debian's promtool is built without
    Kubernetes discovery (it refuses `kubernetes_sd_configs`), so the file's relabelling
    is checked here, and its shape against the other configs'."""
    config = load_yaml(KUBERNETES)
    assert config["rule_files"] == load_yaml(PROMETHEUS_CONFIGS["compose"])["rule_files"]
    [job] = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    for step in job["relabel_configs"]:
        re.compile(step.get("regex", "(.*)"))
    relabel = next(step for step in load_yaml(KUBERNETES)["scrape_configs"][0][
        "relabel_configs"] if step.get("target_label") == "job")
    components = load_yaml(HELM_VALUES)["services"]
    jobs = {}
    for component in components:
        found = re.fullmatch(relabel["regex"], component)
        assert found, component
        jobs[component] = found.expand(relabel["replacement"].replace("$1", "\\1"))
    assert jobs == {"router": "router", "router-stage": "router", "segmenter": "segmenter",
                    "metrics": "metrics"}
    assert set(jobs.values()) == set(APP_SERVICES)
    keep = next(step for step in load_yaml(KUBERNETES)["scrape_configs"][0][
        "relabel_configs"] if step.get("source_labels") == [
        "__meta_kubernetes_pod_label_app_kubernetes_io_name"])
    chart = load_yaml(PROJECT_ROOT / "deploy/helm/customer-routing/Chart.yaml")
    assert (keep["action"], keep["regex"]) == ("keep", chart["name"])  # the pods' name label


def test_the_kubernetes_config_scrapes_no_pod_that_ended() -> None:
    """A Failed or Succeeded pod (evicted, say) stays listed until deleted, its address
    answering nothing: scraped, it would hold RoutingServiceDown up."""
    [job] = load_yaml(KUBERNETES)["scrape_configs"]
    [phase] = [step for step in job["relabel_configs"]
               if step.get("source_labels") == ["__meta_kubernetes_pod_phase"]]
    kept = {name for name in ("Pending", "Running", "Succeeded", "Failed", "Unknown")
            if (re.fullmatch(phase["regex"], name) is None) == (phase["action"] == "drop")}
    assert kept == {"Pending", "Running", "Unknown"}


def test_the_kubernetes_config_shows_the_broker_job_to_point() -> None:
    """The chart runs no broker: the config shows the job `kafka` the broker alerts read,
    commented out, on the port the exporter has in compose."""
    text = KUBERNETES.read_text(encoding="utf-8")
    block = text[text.index("  # - job_name: kafka"):]
    [job] = yaml.safe_load("\n".join(line.replace("  # ", "  ", 1)
                                     for line in block.splitlines()))
    assert job["job_name"] == "kafka"
    [static] = job["static_configs"]
    assert {target.rsplit(":", 1)[1] for target in static["targets"]} == {
        str(compose_broker_metrics_port())}
    assert not [job for job in load_yaml(KUBERNETES)["scrape_configs"]
                if job["job_name"] == "kafka"]
