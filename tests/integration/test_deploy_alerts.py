"""The alerts: each shown to fire and to stay quiet by promtool's unit tests, with a
severity and a description, and routed by a valid Alertmanager configuration."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.integration.deploy_files import (
    PROMETHEUS,
    PROMETHEUS_CONFIGS,
    ROOT,
    all_rules,
    bind_mount,
    bind_mount_target,
    compose_services,
    load_yaml,
    rule_files,
    run,
    tool,
)


def test_service_down_alert_exists() -> None:
    alerts = {rule["alert"]: rule for path in rule_files()
              for group in load_yaml(path)["groups"] for rule in group["rules"]
              if "alert" in rule}
    down = alerts["RoutingServiceDown"]
    assert re.fullmatch(r"up\{.*\} == 0", down["expr"])
    assert down["for"] == "1m"


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


def on_call_table() -> dict[str, str]:
    """README's "On call" table: each alert named in its first column, and its row."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## On call\n", 1)[1].split("\n## ", 1)[0]
    return {named.group(1): line for line in section.splitlines()
            if (named := re.match(r"\| `(\w+)` \|", line))}


def test_the_readme_names_every_alert_on_call() -> None:
    alerts = {rule["alert"]: rule for rule in all_rules() if "alert" in rule}
    table = on_call_table()
    assert set(alerts) - set(table) == set(), "alerts the on-call table does not name"
    assert set(table) - set(alerts) == set(), "the on-call table names no such alert"
    for name, row in table.items():
        assert f"| {alerts[name]['labels']['severity']} |" in row, name


def test_the_dead_letters_alert_says_how_to_list_and_replay_them() -> None:
    alert = next(rule for rule in all_rules() if rule.get("alert") == "RoutingDeadLetters")
    description = " ".join(alert["annotations"]["description"].split())
    assert "`routing dead-letters list`" in description
    assert "`routing dead-letters replay ID`" in description
    assert "routing dead-letters replay" in on_call_table()["RoutingDeadLetters"]


def test_the_outage_alert_names_the_log_line_that_says_which() -> None:
    alert = next(rule for rule in all_rules()
                 if rule.get("alert") == "RoutingStageWaitingForOutage")
    description = " ".join(alert["annotations"]["description"].split())
    logged = (ROOT / "services" / "core" / "pipeline.py").read_text(encoding="utf-8")
    assert '"stage %s failed on a batch; retrying it"' in logged
    assert '"stage {{ $labels.stage }} failed on a batch; retrying it"' in description
    assert "failed on a batch; retrying it" in on_call_table()["RoutingStageWaitingForOutage"]
