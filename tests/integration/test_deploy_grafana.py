"""The Grafana dashboards query through the datasource variable, only metrics the
services export, and the provisioning matches docker-compose.yml."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.deploy_files import (
    ROOT,
    all_rules,
    base_name,
    bind_mount_target,
    broker_metrics,
    compose_services,
    declared_metrics,
    fleet_wide_gauges,
    load_yaml,
    metric_names,
    recorded_series,
    summed_metrics,
)

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_VARIABLE = {"${datasource}", "$datasource"}


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


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Each query of the dashboard, with where it is (a panel's title, or templating)."""
    found = [(panel["title"], target["expr"]) for panel in all_panels(dashboard["panels"])
             for target in panel.get("targets", [])]
    return found + [("templating", expr) for expr in template_expressions(dashboard)]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_queries_only_routing_and_broker_metrics_and_up(path: Path) -> None:
    declared = declared_metrics()
    recorded = recorded_series()
    broker = broker_metrics()
    found = expressions(load_dashboard(path))
    assert found
    for where, expr in found:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        for name in names:
            if name == "up" or name in recorded:
                continue
            if name.startswith("kafka_"):
                assert base_name(name) in broker, (
                    f"{where}: {name} is not a metric the broker's JMX exporter exports")
                continue
            assert name.startswith("routing_"), f"{where}: {name}"
            assert base_name(name) in declared, (
                f"{where}: {name} is not a metric the services export")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_adds_up_no_figure_every_metrics_instance_exports(path: Path) -> None:
    """Consumer lag and offsets, the backlog, dead letters: each metrics instance exports
    the fleet's figure, so a sum over two replicas shows it twice."""
    fleet_wide = fleet_wide_gauges()
    assert {"routing_consumer_committed_offset", "routing_backlog_tickets"} <= fleet_wide
    for where, expr in expressions(load_dashboard(path)):
        assert not summed_metrics(expr) & fleet_wide, f"{where}: max, not sum: {expr}"


OPERATIONS_METRICS = {
    "routing_first_response_seconds", "routing_first_response_target",
    "routing_open_tickets", "routing_tickets_routed", "routing_tickets_escalated",
    "routing_tickets_transferred", "routing_consumer_lag", "routing_consumer_committed_offset",
    "routing_dead_letters", "routing_dead_letters_read", "routing_dead_letters_waiting",
    "routing_resolution_seconds",
    "routing_queue_wait_seconds",
    "routing_pipeline_latency_seconds", "routing_segment_rule_failures",
    "routing_webhook_deliveries", "routing_webhook_deliveries_waiting",
    "routing_webhook_oldest_due_seconds", "routing_webhook_worker_failures",
    "routing_webhook_endpoint_held_seconds", "routing_stage_progress_timestamp_seconds",
    "routing_http_auth_refused", "routing_segmenter_degraded_tickets",
    "routing_customer_events_passed_over", "routing_config_announcements_passed_over"}


def test_the_operations_dashboard_shows_every_response_and_operations_metric() -> None:
    dashboard = load_dashboard(GRAFANA / "dashboards" / "routing.json")
    shown = {base_name(name) for panel in all_panels(dashboard["panels"])
             for target in panel.get("targets", []) for name in metric_names(target["expr"])}
    assert OPERATIONS_METRICS - shown == set()
    grouped = " ".join(target["expr"] for panel in all_panels(dashboard["panels"])
                       for target in panel.get("targets", []))
    assert "by (segment" in grouped, "no per-segment comparison"
    assert "burn" in " ".join(p["title"].lower() for p in all_panels(dashboard["panels"]))


# The rows README names ("Webhooks to the platforms", "Service parity across protected
# groups", "Dashboards" for the broker's) and the figures it says each shows.
README_ROWS = {
    "Callbacks to the platforms (webhooks)": {
        "routing_webhook_deliveries", "routing_webhook_deliveries_waiting"},
    "Pipeline health: stages, segment rules and callback senders": {
        "routing_webhook_oldest_due_seconds", "routing_webhook_worker_failures",
        "routing_webhook_endpoint_held_seconds", "routing_segment_rule_failures",
        "routing_customer_events_passed_over", "routing_config_announcements_passed_over"},
    "Kafka broker": {
        "up", "kafka_controller_offline_partitions", "kafka_server_under_min_isr_partitions",
        "kafka_server_under_replicated_partitions",
        "kafka_server_request_handler_idle_seconds", "kafka_network_processor_idle_ratio",
        "kafka_server_bytes_in", "kafka_server_messages_in"},
    "Service parity across protected groups": {
        "group:routing_service_parity_ratio:min", "routing_service_parity_threshold",
        "routing_service_parity_ratio", "routing_service_parity_below_threshold"},
}


def shown_by_row(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """Each row's title -> the metrics its panels query (those after it, up to the next
    row, or those it holds when collapsed)."""
    shown: dict[str, set[str]] = {}
    row: set[str] | None = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            row = shown.setdefault(panel["title"], set())
        if row is not None:
            row |= {base_name(name) for inner in all_panels([panel])
                    for target in inner.get("targets", [])
                    for name in metric_names(target["expr"])}
    return shown


def test_the_rows_readme_names_show_what_it_says() -> None:
    shown = shown_by_row(load_dashboard(GRAFANA / "dashboards" / "routing.json"))
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for title, metrics in README_ROWS.items():
        assert f'"{title}"' in readme, title
        assert metrics - shown.get(title, set()) == set(), title


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


def _alert(name: str) -> dict[str, Any]:
    return next(rule for rule in all_rules() if rule.get("alert") == name)


def _compared_with(alert: str, operator: str) -> float:
    """The number an alert's expression compares its series with, first found."""
    found = re.search(rf"{re.escape(operator)}\s*([0-9.]+)", _alert(alert)["expr"])
    assert found, f"{alert} compares nothing with {operator}"
    return float(found.group(1))


def _thresholds_of_panels_reading(metric: str, words: str) -> dict[str, list[float]]:
    """Each panel whose query reads `metric` and whose title holds `words`: its
    thresholds' values."""
    found = {}
    for path in DASHBOARDS:
        for panel in all_panels(load_dashboard(path)["panels"]):
            exprs = " ".join(target.get("expr", "") for target in panel.get("targets", []))
            if metric in exprs and words in panel.get("title", "").lower():
                steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                found[panel["title"]] = [step["value"] for step in steps
                                         if step.get("value") is not None]
    assert found, f"no panel titled with {words!r} reads {metric}"
    return found


class TestPanelsTurnRedWhereTheAlertsFire:
    """A panel's threshold is the alert's, or the objective's the alerts burn: a panel
    red where no alert fires (or green where one does) tells the one on call two
    things."""

    def test_attainment_of_every_target_at_the_alerts_share(self) -> None:
        share = _compared_with("RoutingServiceTargetAttainmentLow", "<")
        for title, values in _thresholds_of_panels_reading(
                "routing_service_target_total", "attainment").items():
            assert values == [share], title

    def test_first_response_attainment_at_the_objective_burn_rates_at_the_alerts(
            self) -> None:
        fast, slow = (_alert(f"RoutingFirstResponseTarget{speed}Burn")
                      for speed in ("Fast", "Slow"))
        objective = {fast["labels"]["slo"], slow["labels"]["slo"]}
        assert len(objective) == 1
        named = re.fullmatch(r"first-response-(\d+)", objective.pop())
        assert named, "the burn alerts' slo label names the objective in percent"
        met = int(named.group(1)) / 100
        for title, values in _thresholds_of_panels_reading(
                "routing_first_response_target_total", "attainment").items():
            assert values == [met], title
        budget = 1 - met
        burn = sorted(round(_compared_with(f"RoutingFirstResponseTarget{speed}Burn", ">")
                            / budget, 6) for speed in ("Slow", "Fast"))
        for title, values in _thresholds_of_panels_reading(
                "routing_first_response_target_missed", "burn").items():
            assert sorted(values) == burn, title
