"""Every metric README.md names is one the services export, with the labels it names:
dashboards, alerts and operators' queries are written against those names, and a rename
must not pass unnoticed."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import services
from services.core.settings import PROJECT_ROOT
from services.metrics import exporter

# `routing_open_tickets`, `routing_stage_retries_total{stage,fault}`,
# `routing_first_response_target_total{outcome="met"|"missed"}`
# `routing_webhook_deliveries_waiting
# {platform, status}` (a span broken across lines)
DOCUMENTED = re.compile(r"`((?:routing|http)_[a-z_]*[a-z])\s*(\{[^}`]*\})?`")


def labels_of(collector: Any) -> tuple[str, ...] | None:
    """A metric's label names: prometheus_client's own (a rename of its attribute fails
    here, loudly), a Snapshot's, or None for another collector of our own."""
    if isinstance(collector, MetricWrapperBase):
        names: tuple[str, ...] = collector._labelnames
        return names
    if isinstance(collector, exporter.Snapshot):
        return collector.labelnames
    return None


def exported() -> dict[str, tuple[str, ...] | None]:
    """Each exported sample name and its labels (None: see labels_of)."""
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    names: dict[str, tuple[str, ...] | None] = {}
    collectors: dict[Any, list[str]] = REGISTRY._collector_to_names  # type: ignore[attr-defined]
    for collector, samples in collectors.items():
        for name in samples:
            names[name] = labels_of(collector)
    return names


def documented() -> dict[str, set[str]]:
    text = (PROJECT_ROOT / "README.md").read_text("utf-8")
    named: dict[str, set[str]] = {}
    for name, labels in DOCUMENTED.findall(text):
        named.setdefault(name, set()).update(
            part.split("=")[0].strip() for part in labels.strip("{}").split(",")
            if part.strip())
    return named


def test_the_readme_names_metrics_at_all() -> None:
    named = documented()
    assert len(named) >= 40
    assert named["routing_webhook_deliveries_waiting"] == {"platform", "status"}
    assert named["routing_open_tickets"] == {"department"}


def test_every_metric_the_readme_names_is_exported_with_its_labels() -> None:
    names = exported()
    missing = sorted(set(documented()) - set(names))
    assert not missing, f"README.md names metrics no service exports: {missing}"
    unchecked = sorted(name for name in documented() if names[name] is None)
    assert not unchecked, f"labels of these cannot be read here: {unchecked}"
    wrong = {name: (sorted(labels), names[name]) for name, labels in documented().items()
             if not labels <= set(names[name] or ())}
    assert not wrong, f"README.md gives labels these metrics do not have: {wrong}"
