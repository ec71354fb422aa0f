"""Segment rules failing on tickets' data, counted per rule (the alert
RoutingSegmentRuleFailing). Each rule's series is exported at 0 as its rule set comes in
force: a series born at its first failure, at 1, is no increase to Prometheus, and that
failure would raise nothing."""

from __future__ import annotations

from prometheus_client import Counter

from services.segmenter import rules

FAILURES = Counter("routing_segment_rule_failures_total",
                   "Tickets a segment rule failed on (it did not hold for them: the next"
                   " rule decided; the log names the tickets)", ["rule"])


def export(rule_set: rules.RuleSet) -> None:
    """Each rule of a rule set put in force, at 0 until it fails."""
    for rule in rule_set.rules:
        FAILURES.labels(rule.name)


def count(rule: str) -> None:
    FAILURES.labels(rule).inc()
