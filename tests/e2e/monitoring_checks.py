"""What tests/e2e/test_monitoring.py checks (every dashboard query and every rule), and
asking Prometheus' API whether a check finds data, retried until it does or time is up."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import yaml
from prometheus_client import REGISTRY

from services.core.settings import PROJECT_ROOT
from tests.e2e.promql import label_names, selectors, without_absent, without_thresholds

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "routing.json"
RULES = sorted((PROJECT_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# Declared and exported, but without samples while nothing is wrong (a 503 to a caller):
# metric -> the module that declares it, whose collector tells its label names.
NO_SAMPLES_WHEN_HEALTHY = {"routing_intake_unavailable_total": "services.router.intake"}
SETTLE_SECONDS = 120


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
            label_values = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert label_values, f"variable {variable['name']}: {query}"
            metric, label = label_values.groups()
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
    return [Check(f"alert {rule['alert']}", without_absent(without_thresholds(rule["expr"])))
            if "alert" in rule else Check(f"record {rule['record']}", rule["expr"])
            for rule in rules()]


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
