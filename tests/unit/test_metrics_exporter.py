"""The exporter against prometheus_client's real registry (no sockets)."""

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from services.metrics import exporter, service_levels, timeline


@pytest.fixture
def default_buckets() -> Iterator[None]:
    yield
    exporter.use_response_buckets(service_levels.DEFAULT_RESPONSE_BUCKETS)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_target_becomes_a_bucket_edge(default_buckets: None) -> None:
    exporter.use_response_buckets(service_levels.bucket_edges(
        service_levels.DEFAULT_RESPONSE_BUCKETS, [2700]))
    exporter.record([timeline.Duration("first_response", "unit_edge", "s", 2000.0)])
    assert sample("routing_first_response_seconds_bucket", department="unit_edge",
                  segment="s", le="2700.0") == 1
    assert sample("routing_first_response_seconds_bucket", department="unit_edge",
                  segment="s", le="1800.0") == 0


def test_observations_after_new_bucket_edges_count_in_the_new_histogram(
        default_buckets: None) -> None:
    # Labelled children are kept between observations: new edges must not leave one of
    # the former histogram's in use.
    exporter.record([timeline.Duration("first_response", "unit_rebucket", "s", 2000.0)])
    exporter.use_response_buckets(service_levels.bucket_edges(
        service_levels.DEFAULT_RESPONSE_BUCKETS, [2700]))
    exporter.record([timeline.Duration("first_response", "unit_rebucket", "s", 2000.0)])
    assert sample("routing_first_response_seconds_count", department="unit_rebucket",
                  segment="s") == 1
    assert sample("routing_first_response_seconds_bucket", department="unit_rebucket",
                  segment="s", le="2700.0") == 1


def test_pipeline_latency_behind_a_backlog_is_told_apart_up_to_an_hour() -> None:
    """A ticket 20 minutes from receipt to its queue falls in the 30-minute bucket, not
    only +Inf: the p90 panel shows how far behind, not a flat last edge."""
    exporter.record([timeline.Duration("pipeline_latency", "unit_backlog", "s", 1200.0)])
    assert [sample("routing_pipeline_latency_seconds_bucket", department="unit_backlog",
                   segment="s", le=le) for le in ("900.0", "1800.0", "3600.0")] == [0, 1, 1]


COUNTED = [
    (timeline.Routed("unit_b", "s", "transfer"), "routing_tickets_routed_total",
     {"department": "unit_b", "segment": "s", "reason": "transfer"}),
    (timeline.HandedOver("transferred", "unit_a", "unit_b"), "routing_tickets_transferred_total",
     {"from_department": "unit_a", "department": "unit_b"}),
    (timeline.HandedOver("escalated", "unit_a", "unit_c"), "routing_tickets_escalated_total",
     {"from_department": "unit_a", "department": "unit_c"}),
    (timeline.TargetDecided("unit_a", "s", "missed"), "routing_first_response_target_total",
     {"department": "unit_a", "segment": "s", "outcome": "missed"}),
]


@pytest.mark.parametrize(("observation", "name", "labels"), COUNTED,
                         ids=[name for _, name, _ in COUNTED])
def test_each_observation_counts_in_its_metric(observation: timeline.Observation, name: str,
                                               labels: dict[str, str]) -> None:
    before = sample(name, **labels)
    exporter.record([observation])
    assert sample(name, **labels) == before + 1


def test_a_snapshot_replaces_its_whole_set() -> None:
    exporter.OPEN_TICKETS.replace({("unit_a",): 3, ("unit_b",): 1})
    exporter.OPEN_TICKETS.replace({("unit_b",): 2})
    assert REGISTRY.get_sample_value("routing_open_tickets", {"department": "unit_a"}) is None
    assert sample("routing_open_tickets", department="unit_b") == 2
    exporter.OPEN_TICKETS.replace({})


def test_open_tickets_show_every_known_department_and_drop_to_zero() -> None:
    exporter.OPEN_TICKETS.replace({})
    exporter.record_open_tickets({"unit_a": 3}, {"unit_a": 2}, known={"unit_idle"})
    assert sample("routing_open_tickets", department="unit_a") == 3
    assert sample("routing_backlog_tickets", department="unit_a") == 2
    for name in ("routing_open_tickets", "routing_backlog_tickets"):
        assert REGISTRY.get_sample_value(name, {"department": "unit_idle"}) == 0
    exporter.record_open_tickets({}, {}, known=set())  # all resolved: shown as 0, not gone
    for name in ("routing_open_tickets", "routing_backlog_tickets"):
        assert REGISTRY.get_sample_value(name, {"department": "unit_a"}) == 0
    exporter.OPEN_TICKETS.replace({})
    exporter.BACKLOG.replace({})


def test_escalation_series_are_exported_at_zero_from_the_first_routed_ticket() -> None:
    """A counter series born at 1 is no increase to Prometheus: the first second-level
    escalation of a department and segment would not raise RoutingSecondLevelEscalations."""
    labels = {"department": "unit_escalating", "segment": "s", "target": "resolution"}
    assert REGISTRY.get_sample_value("routing_target_escalations_total",
                                     {**labels, "level": "2"}) is None
    exporter.record([timeline.Routed("unit_escalating", "s", "route")])
    for target in ("first_response", "next_response", "resolution"):
        for level in ("1", "2"):
            assert REGISTRY.get_sample_value("routing_target_escalations_total", {
                **labels, "target": target, "level": level}) == 0
    exporter.record([timeline.ClockEscalated("unit_escalating", "s", "resolution", 2)])
    assert sample("routing_target_escalations_total", **labels, level="2") == 1


def test_a_first_level_escalation_exports_the_second_level_at_zero() -> None:
    """An instance that did not see the ticket routed (restarted since, or another
    instance's partition) still shows level 2 at 0 before it comes."""
    labels = {"department": "unit_restarted", "segment": "s", "target": "first_response"}
    exporter.record([timeline.ClockEscalated("unit_restarted", "s", "first_response", 1)])
    assert sample("routing_target_escalations_total", **labels, level="1") == 1
    assert REGISTRY.get_sample_value("routing_target_escalations_total",
                                     {**labels, "level": "2"}) == 0
