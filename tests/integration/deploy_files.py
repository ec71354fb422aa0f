"""What the deployment files' tests share: the files' places, the tools that read them
(docker-compose, promtool, amtool, helm, kubeconform), docker-compose.yml's services as
the settings class reads them, and the metric names in PromQL, in the services' code and
in the broker's JMX exporter configuration.

The tests check the files with those tools and against the real settings class and
metric names, without a Docker engine, a running Prometheus or a Kubernetes cluster.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import processes
from services.core.settings import Settings
from services.metrics import exporter

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIGS = {"compose": PROMETHEUS / "prometheus.yml",
                      "local": PROMETHEUS / "prometheus.local.yml"}

APP_SERVICES = ("segmenter", "router", "metrics")
# The router program's second service: the routing stage, apart from the intake and APIs
# (named as bin/run names its process).
ROUTER_STAGE_SERVICE = processes.ROUTER_STAGE_INSTANCE
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}


def tool(name: str) -> str:
    # What `bin/setup --test` builds at the version it pins comes first.
    found = (shutil.which(name, path=str(ROOT / ".cache" / "bin")) or shutil.which(name)
             or shutil.which(name, path="/usr/bin"))
    if found is None:
        pytest.fail(f"{name} is not installed; `bin/setup --test` installs it")
    return found


def run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, input=stdin)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


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


@dataclass(frozen=True)
class JavaAgent:
    """`-javaagent:JAR=[HOST:]PORT:CONFIG`, the JMX exporter agent's argument."""

    jar: str
    host: str | None
    port: int
    config: str


def compose_broker_agent() -> JavaAgent:
    """The JMX exporter agent compose's broker runs, from its KAFKA_OPTS."""
    options = environment(compose_services()["kafka"])["KAFKA_OPTS"] or ""
    [found] = re.findall(r"-javaagent:([^=\s]+)=(?:([^:\s]+):)?(\d+):(\S+)", options)
    jar, host, port, config = found
    return JavaAgent(jar, host or None, int(port), config)


def compose_broker_metrics_port() -> int:
    return compose_broker_agent().port


def rule_files() -> list[Path]:
    return sorted((PROMETHEUS / "rules").glob("*.yml"))


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


# An aggregation that adds series up: of one figure exported by n instances, n times it.
ADDING_UP = re.compile(r"\b(?:sum|count)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(")


def summed_metrics(expr: str) -> set[str]:
    """The metric names an expression selects inside a `sum` or a `count`."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    names = set()
    for aggregation in ADDING_UP.finditer(text):
        depth = 1
        for end in range(aggregation.end(), len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                names |= metric_names(text[aggregation.end():end])
                break
    return names


def fleet_wide_gauges() -> set[str]:
    """The gauges every metrics-service instance measures alike from the store or the
    broker (its `Snapshot`s: backlog, consumer lag and offsets, dead letters, parity): a
    figure for the fleet, read with max, never added up across instances."""
    return {value.name for value in vars(exporter).values()
            if isinstance(value, exporter.Snapshot)}


def declared_metrics() -> set[str]:
    """Metric names the services register (as string literals), without counters' _total."""
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        for name in re.findall(r"""["'](routing_[a-z0-9_]+)["']""", path.read_text("utf-8")):
            names.add(name.removesuffix("_total"))
    return names


BROKER_EXPORTER = ROOT / "deploy" / "kafka" / "jmx-exporter.yml"


def broker_metrics() -> set[str]:
    """Metric names the broker's JMX exporter exports (deploy/kafka/jmx-exporter.yml's
    rules name each), without counters' _total."""
    return {rule["name"].removesuffix("_total") for rule in load_yaml(BROKER_EXPORTER)["rules"]}


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
