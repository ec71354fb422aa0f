"""Monitoring end to end: Debian's Prometheus scrapes the real services of a pipeline every
second with the project's rules loaded, and every dashboard query and every rule must find
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
   on the right of their comparison in the rules, which this relies on;
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
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

from devtools.prometheus import LocalPrometheus
from services.core import envelope, events, kafka, topics
from services.core.settings import PROJECT_ROOT, Settings
from tests.conftest import Pipeline, demo_pipeline
from tests.webhooks_receiver import Receiver

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "routing.json"
RULES = sorted((PROJECT_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# Declared and exported, but without samples while nothing is wrong (a 503 to a caller):
# metric -> the module that declares it, whose collector tells its label names.
NO_SAMPLES_WHEN_HEALTHY = {"routing_intake_unavailable_total": "services.router.intake"}
SETTLE_SECONDS = 120

# --- reading PromQL -------------------------------------------------------------------------

AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
                "quantile", "count_values", "group"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "inf", "nan"}
TOKENS = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<grouping>\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?P<labels>[^)]*)\))
  | (?P<range>\[[^\]]*\])
  | (?P<offset>\boffset\s+\w+)
  | (?P<number>(?<![\w:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_:][\w:]*)(?P<matchers>\s*\{[^}]*\})?
  | (?P<bare>\{[^}]*\})
""", re.VERBOSE)
MATCHER = re.compile(r"""([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|'[^']*')""")
COMPARISON = re.compile(
    r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])")


def selectors(expr: str) -> list[str]:
    """The vector selectors of an expression: `name{matchers}` or `{matchers}`."""
    found = []
    for token in TOKENS.finditer(expr):
        name, matchers = token.group("name"), token.group("matchers")
        if token.group("bare"):
            found.append(token.group("bare"))
        elif name in KEYWORDS and matchers:  # `unless {job="x"}`: a selector after a keyword
            found.append(matchers.strip())
        elif name and name not in KEYWORDS and name not in AGGREGATIONS:
            if expr[token.end():].lstrip().startswith("(") and not token.group("matchers"):
                continue  # a function
            found.append(name + (token.group("matchers") or "").strip())
    return found


def label_names(expr: str) -> set[str]:
    """Labels an expression names in matchers and in by/without/on/ignoring/group_*."""
    names = set()
    for token in TOKENS.finditer(expr):
        if token.group("grouping"):
            names |= {label.strip() for label in token.group("labels").split(",")
                      if label.strip()}
        for matchers in (token.group("matchers"), token.group("bare")):
            if matchers:
                names |= set(MATCHER.findall(matchers))
    return names - {"__name__"}


def without_thresholds(expr: str) -> str:
    """The expression with every `<op> <number>` comparison removed (outside strings)."""
    parts = re.split(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", expr)
    return "".join(part if i % 2 else COMPARISON.sub("", part) for i, part in enumerate(parts))


def test_promql_reading() -> None:
    expr = ('histogram_quantile(0.9, sum by (department, le) (rate(a_bucket{department=~"x|y",'
            ' outcome!="1"}[5m]))) > 0.72 and on (department) b:rec offset 5m < bool 1e3'
            ' or delta(c[1h]) >= 10 unless {job="x>1"} == 0')
    assert selectors(expr) == ['a_bucket{department=~"x|y", outcome!="1"}', "b:rec", "c",
                               '{job="x>1"}']
    assert label_names(expr) == {"department", "le", "outcome", "job"}
    assert without_thresholds(expr) == (
        'histogram_quantile(0.9, sum by (department, le) (rate(a_bucket{department=~"x|y",'
        ' outcome!="1"}[5m]))) and on (department) b:rec offset 5m or delta(c[1h])'
        ' unless {job="x>1"}')


# --- what is checked ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    where: str
    expr: str
    legend: str = ""


def dashboard_checks() -> list[Check]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    values = dict(BUILTINS)
    checks = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            values[variable["name"]] = variable.get("allValue") or ".+"
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            metric, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query).groups()
            checks.append(Check(f"variable {variable['name']}",
                                f"count by ({label}) ({metric})", f"{{{{{label}}}}}"))
        elif variable["type"] == "interval":
            values[variable["name"]] = variable["current"]["value"]

    def substitute(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], text)

    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            checks.append(Check(f"panel {panel['title']!r} {target['refId']}",
                                substitute(target["expr"]), target.get("legendFormat", "")))
    return checks


def rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def rule_checks() -> list[Check]:
    return [Check(f"alert {rule['alert']}", without_thresholds(rule["expr"]))
            if "alert" in rule else Check(f"record {rule['record']}", rule["expr"])
            for rule in rules()]


# --- Prometheus and the traffic it sees -----------------------------------------------------


class PrometheusApi:
    def __init__(self, url: str) -> None:
        self.url = url

    async def query(self, client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
        answer = await client.get(f"{self.url}/api/v1/query", params={"query": expr})
        body = answer.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def problems(self, client: httpx.AsyncClient, check: Check) -> list[str]:
        """What keeps `check` from finding data; [] when it does."""
        found: list[str] = []
        seen_labels = {"__name__"}
        healthy_without_samples = False
        for selector in selectors(check.expr):
            series = await self.query(client, selector)
            name = selector.split("{")[0]
            if name in NO_SAMPLES_WHEN_HEALTHY and not series:
                if not await self.exported(client, name):
                    found.append(f"{selector}: no series, and no target exports it")
                seen_labels |= declared_labels(name)
                healthy_without_samples = True
                continue
            if not series:
                found.append(f"{selector}: no series")
            for item in series:
                seen_labels |= set(item["metric"])
        if not found:
            missing = label_names(check.expr) - seen_labels - {"le", "job", "instance"}
            found += [f"label {label!r} is on none of its series" for label in sorted(missing)]
        if not found and not healthy_without_samples:
            result = await self.query(client, check.expr)
            if not result:
                found.append(f"no result: {check.expr}")
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", check.legend):
                if result and not any(label in item["metric"] for item in result):
                    found.append(f"legend names {label!r}, which the result does not have")
        return found

    async def exported(self, client: httpx.AsyncClient, metric: str) -> bool:
        answer = await client.get(f"{self.url}/api/v1/targets/metadata",
                                  params={"metric": metric})
        return bool(answer.json().get("data"))


def declared_labels(metric: str) -> set[str]:
    """The label names of a metric, from its collector (imported into this process)."""
    importlib.import_module(NO_SAMPLES_WHEN_HEALTHY[metric])
    collector = REGISTRY._names_to_collectors[metric]  # no public lookup by name
    return set(getattr(collector, "_labelnames", ()))


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The demo pipeline, measuring service parity every second over groups of any size:
    the few tickets of this test make no group of the default minimum size."""
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("pipeline"), extra_env={
            "PROTECTED_GROUP_MINIMUM_SIZE": "1", "PARITY_INTERVAL_SECONDS": "1"}) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[PrometheusApi]:
    targets = {name: [f"127.0.0.1:{service.port}"]
               for name, service in pipeline.services.items()}
    server = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), targets, interval="1s")
    server.start()
    try:
        yield PrometheusApi(server.url)
    finally:
        server.stop()


def lifecycle(ticket_id: str, kind: events.TicketEventType, at: datetime,
              **fields: Any) -> envelope.Event:
    return events.as_envelope(events.TicketEvent(ticket_id=ticket_id, type=kind,
                                                 occurred_at=at, **fields),
                              ticket_id, events.WRITTEN_BY[kind])


async def post_ticket(client: httpx.AsyncClient, router: str, customer: str) -> str:
    answer = await client.post(f"{router}/v1/tickets", json={
        "customer_id": customer, "subject": "Where is my invoice?", "body": "Hello",
        "channel": "email", "kind": "question"})
    assert answer.status_code == 202, answer.text
    ticket_id: str = answer.json()["ticket_id"]
    return ticket_id


async def report(client: httpx.AsyncClient, router: str, ticket_id: str, kind: str) -> None:
    answer = await client.post(f"{router}/v1/tickets/{ticket_id}/events", json={"type": kind})
    assert answer.status_code == 202, answer.text


async def transfer(client: httpx.AsyncClient, router: str, ticket_id: str,
                   department: str) -> None:
    """Hand a ticket on, once the router has routed it (404 until then)."""
    for _ in range(100):
        answer = await client.post(f"{router}/v1/tickets/{ticket_id}/transfer", json={
            "to_department": department, "reason": "needs the business desk"})
        if answer.status_code != 404:
            break
        await asyncio.sleep(0.2)
    assert answer.status_code == 202, answer.text


@pytest.fixture(scope="module")
async def traffic(pipeline: Pipeline, prometheus: PrometheusApi) -> AsyncIterator[None]:
    """Real tickets and reports over HTTP; the router's coming events on tickets.events;
    one record no stage can read; the platform called back at its webhook receiver."""
    router = pipeline.url("router")
    now = datetime.now(UTC)
    receiver = Receiver()
    receiver.start()
    # Tickets come from a support platform; an admin reports and transfers for any
    # department.
    async with httpx.AsyncClient(timeout=10, headers=pipeline.headers()) as client, \
            httpx.AsyncClient(timeout=10, headers=pipeline.headers("admin")) as admin:
        registered = await admin.post(f"{router}/v1/webhooks/endpoints",
                                      json={"platform": "tests", "url": receiver.url})
        assert registered.status_code == 201, registered.text
        met, late, unanswered, gov = [await post_ticket(client, router, "gov-ministry-1")
                                      for _ in range(4)]
        escalated, transferred = [await post_ticket(client, router, "ind-vip-1")
                                  for _ in range(2)]
        prospect, business = [await post_ticket(client, router, customer)
                              for customer in ("never-seen-42", "org-acme-1")]
        await post_ticket(client, router, "ind-loyal-1")
        await transfer(admin, router, transferred, "business_desk")
        coming = [
            lifecycle(ticket, events.TicketEventType.ROUTED, now, department="public_sector",
                      segment="government", reason="route", first_response_deadline=deadline)
            for ticket, deadline in ((met, now + timedelta(hours=1)),
                                     (late, now - timedelta(minutes=2)),
                                     (unanswered, now - timedelta(minutes=2)))]
        coming.append(lifecycle(escalated, events.TicketEventType.ESCALATED, now,
                                department="public_sector", from_department="key_accounts",
                                segment="key_accounts", reason="escalation"))
        # The router's clock watch: a warning, then both escalation levels of a target.
        coming.append(lifecycle(unanswered, events.TicketEventType.TARGET_WARNING, now,
                                department="public_sector", segment="government",
                                target="first_response"))
        coming += [lifecycle(unanswered, events.TicketEventType.ESCALATED,
                             now + timedelta(seconds=level), department="public_sector",
                             from_department="public_sector", segment="government",
                             reason="escalation", target="first_response", level=level)
                   for level in (1, 2)]
        producer = kafka.producer(Settings(kafka_bootstrap_servers=pipeline.bootstrap),
                                  client_id="e2e-monitoring")
        await producer.start()
        try:
            for event in coming:
                await (await kafka.send(producer, envelope.encode(
                    topics.EVENTS, event.ticket_id or "", event)))
            await producer.send_and_wait(topics.EVENTS, b"not a cloud event", key=b"e2e")
        finally:
            await producer.stop()
        for ticket in (met, late, gov, escalated, prospect, business):
            await report(admin, router, ticket, "responded")
        # A pause: the department waits on the customer, the platform reports the reply.
        await report(admin, router, gov, "waiting_on_customer")
        answer = await client.post(f"{router}/v1/tickets/{gov}/customer-replies", json={})
        assert answer.status_code == 202, answer.text
        for ticket in (business, prospect):
            await report(admin, router, ticket, "picked_up")
            await report(admin, router, ticket, "resolved")
    await receiver.wait_for(1)  # the routing of a ticket, at least
    receiver.verified(registered.json()["secret"])
    try:
        yield
    finally:
        receiver.stop()


# --- the tests ------------------------------------------------------------------------------


async def settle(prometheus: PrometheusApi, checks: list[Check]) -> dict[str, list[str]]:
    """Retry the checks until all find data or SETTLE_SECONDS pass; what is left failing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            failing = {check.where: problems for check in checks
                       if (problems := await prometheus.problems(client, check))}
            if not failing or loop.time() > deadline:
                return failing
            await asyncio.sleep(2)


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


async def test_the_measures_match_what_happened(prometheus: PrometheusApi,
                                                traffic: None) -> None:
    wanted = {
        'routing_first_response_target_total{department="public_sector", outcome="met"}': 1,
        'routing_first_response_target_total{department="public_sector", outcome="missed"}': 2,
        'routing_tickets_escalated_total{department="key_accounts"}': 1,
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
