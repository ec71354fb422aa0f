"""Monitoring end to end: Debian's Prometheus scrapes the real services of a pipeline and its
broker's JMX exporter (the agent deploy/kafka/jmx-exporter.yml configures) every second with
the project's rules loaded, and every dashboard query and every rule must find
data in it; the PNG report is drawn from the running metrics service.

How "finds data" is decided, so that no misspelt metric, label or label value can pass:
1. every vector selector of an expression, taken alone (matchers kept, ranges and
   functions dropped), returns series: a typo in a metric name or a matcher's value
   selects nothing, even inside an `or` whose other side has data;
2. every label an expression names (in matchers, `by`, `without`, `on`, `ignoring`,
   `group_left`) is a label of those series: `by (departmnt)` would still return data,
   but grouped wrongly, and a negative matcher on a misspelt label matches everything;
3. the expression itself returns a non-empty result. An alert's expression is empty
   when nothing is wrong, so it is evaluated with its threshold comparisons removed
   (`x > 0.72 and y > 0.72` becomes `x and y`): what is left is the measure the alert
   compares, which must exist for the alert to be able to fire. Thresholds are written
   on the right of their comparison in the rules, which this relies on. An `absent(x)`
   is read as `x`: what the alert watches for must be there while nothing is wrong;
4. a panel's legend names only labels its result has.
Dashboard variables take the values a viewer starts with (`All` is the variable's
allValue), and `$__rate_interval` one minute.

Tickets, responses, resolutions, a pause (waiting on the customer, the platform's report
of the reply) and a transfer go through the real router over HTTP. A target missed, a
warning and escalations need deadlines to pass, which takes hours with the real routing
table: the test produces those lifecycle events on `tickets.events` itself, as the router
does (a `ticket.routed` with an earlier deadline for a ticket the router routed, a
`ticket.target_warning`, `ticket.escalated` of both levels), plus one record no stage can
read.

`routing_intake_unavailable_total` counts 503 answers, which a healthy pipeline never
gives: for it, Prometheus' metadata from the router's scrape must name it (it is exported,
without samples yet), and the labels named with it must be those its collector declares;
an expression over it alone cannot have a result.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from devtools.kafka_broker import LocalKafka
from devtools.prometheus import LocalPrometheus
from services.core.settings import PROJECT_ROOT
from tests.conftest import Pipeline, demo_pipeline
from tests.e2e.monitoring_checks import (
    Check,
    PrometheusApi,
    dashboard_checks,
    rule_checks,
    rules,
    settle,
)
from tests.e2e.monitoring_traffic import traffic_on


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own, running the JMX exporter's agent for Prometheus
    (the other tests' broker runs without it)."""
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), metrics=True)
    with broker.running():
        yield broker


@pytest.fixture(scope="module")
def pipeline(broker: LocalKafka, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Pipeline]:
    """The demo pipeline, measuring service parity every second over groups of any size:
    the few tickets of this test make no group of the default minimum size."""
    with demo_pipeline(broker.bootstrap_servers, tmp_path_factory.mktemp("pipeline"),
                       extra_env={"PROTECTED_GROUP_MINIMUM_SIZE": "1",
                                  "PARITY_INTERVAL_SECONDS": "1"}) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(pipeline: Pipeline, broker: LocalKafka,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusApi]:
    targets = {name: [f"127.0.0.1:{service.port}"]
               for name, service in pipeline.services.items()}
    targets["kafka"] = [f"127.0.0.1:{broker.metrics_port}"]
    server = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), targets, interval="1s")
    server.start()
    try:
        yield PrometheusApi(server.url)
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def traffic(pipeline: Pipeline, prometheus: PrometheusApi) -> AsyncIterator[None]:
    """The traffic of `traffic_on`, once Prometheus scrapes the pipeline."""
    async with traffic_on(pipeline):
        yield


# --- the tests ------------------------------------------------------------------------------


async def test_every_dashboard_query_finds_data(prometheus: PrometheusApi,
                                                traffic: None) -> None:
    checks = dashboard_checks()
    assert len(checks) >= 20
    assert await settle(prometheus, checks) == {}


async def test_every_recording_and_alert_rule_finds_data(prometheus: PrometheusApi,
                                                          traffic: None) -> None:
    checks = rule_checks()
    assert len(checks) == len(rules()) >= 10
    assert await settle(prometheus, checks) == {}


async def test_prometheus_evaluates_every_rule_without_error(prometheus: PrometheusApi,
                                                             traffic: None) -> None:
    expected = {rule.get("record") or rule["alert"] for rule in rules()}
    async with httpx.AsyncClient(timeout=10) as client:
        groups = (await client.get(f"{prometheus.url}/api/v1/rules")).json()["data"]["groups"]
        recorded = {rule["name"] for group in groups for rule in group["rules"]
                    if rule["type"] == "recording"}
        assert await settle(prometheus, [Check(f"recorded {name}", name)
                                         for name in recorded]) == {}
        groups = (await client.get(f"{prometheus.url}/api/v1/rules")).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == expected
    assert {name: rule.get("lastError") for name, rule in loaded.items()
            if rule["health"] != "ok"} == {}


async def test_prometheus_scrapes_the_brokers_own_metrics(prometheus: PrometheusApi,
                                                         traffic: None) -> None:
    """The broker's JMX exporter, scraped as the job `kafka`: up, no partition offline
    or under its min ISR, and the tickets' records counted in."""
    checks = [Check(expr, expr) for expr in (
        'up{job="kafka"} == 1',
        'kafka_controller_offline_partitions{job="kafka"} == 0',
        'kafka_server_under_min_isr_partitions{job="kafka"} == 0',
        'kafka_controller_active_controllers{job="kafka"} == 1',
        'kafka_server_messages_in_total{job="kafka"} > 0',
        'rate(kafka_server_request_handler_idle_seconds_total{job="kafka"}[1m]) > 0')]
    assert await settle(prometheus, checks) == {}


async def test_the_measures_match_what_happened(prometheus: PrometheusApi,
                                                traffic: None) -> None:
    wanted = {
        'routing_first_response_target_total{department="public_sector", outcome="met"}': 1,
        'routing_first_response_target_total{department="public_sector", outcome="missed"}': 2,
        'routing_tickets_escalated_total{from_department="key_accounts",'
        ' department="public_sector"}': 1,
        'routing_tickets_transferred_total{from_department="key_accounts",'
        ' department="business_desk"}': 1,
        'sum by (group) (routing_consumer_lag{group="department.public_sector"})': 4,
        'routing_open_tickets{department="public_sector"}': 4,
        "routing_dead_letters": 1,
    }
    checks = [Check(expr, f"{expr} >= {least}") for expr, least in wanted.items()]
    assert await settle(prometheus, checks) == {}


async def test_the_report_is_drawn_from_the_running_metrics_service(
        pipeline: Pipeline, traffic: None, tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.metrics.report", "--url", pipeline.url("metrics"),
         "--window", "1h", "--out", str(out)],
        env={**os.environ, "API_TOKEN": pipeline.headers("admin")["Authorization"].split()[1]},
        capture_output=True, text=True, timeout=120, check=False, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert re.search(r"written: [1-9]\d* departments, [1-9]\d* segments", done.stdout)
