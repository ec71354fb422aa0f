from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.metrics import service_levels, targets_file

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=15)


class TestOutcome:
    def test_answered_by_the_deadline_is_met(self) -> None:
        assert service_levels.first_response_outcome(DEADLINE, DEADLINE) == "met"

    def test_answered_after_it_is_missed(self) -> None:
        late = DEADLINE + timedelta(seconds=1)
        assert service_levels.first_response_outcome(late, DEADLINE) == "missed"

    def test_unanswered_is_undecided_until_the_deadline_has_passed(self) -> None:
        assert service_levels.first_response_outcome(None, DEADLINE) is None
        assert service_levels.first_response_outcome(None, DEADLINE, DEADLINE) is None
        later = DEADLINE + timedelta(seconds=1)
        assert service_levels.first_response_outcome(None, DEADLINE, later) == "missed"

    def test_no_deadline_no_outcome(self) -> None:
        assert service_levels.first_response_outcome(T0, None, T0) is None


TABLE = Path("config/routing.yaml")  # where errors say the table is

ROUTING_TABLE = """
version: t-1
fallback_department: customer_care
defaults:
  first_response_target: 1d
  tiers:
    most_valuable: {first_response_target: 15m}
priority_targets:
  1: {first_response_target: 10m, resolution_target: 4h}
routes:
  - segment: government
    department: public_sector
    first_response_target: 4h
  - segment: key_accounts
    department: key_accounts
    first_response_target: 45m
    refinements:
      - name: outage
        when: ticket.kind == 'incident'
        first_response_target: 5m
"""


class TestTargetsInTheRoutingTable:
    """The targets the router routes by, read with its own parser: defaults, tiers,
    routes, refinements and priority targets; no other target (a resolution target is
    no first response's)."""

    def test_every_first_response_target_is_found_wherever_it_stands(self) -> None:
        assert targets_file.targets(ROUTING_TABLE, "routing.yaml", path=TABLE) == \
            [300, 600, 900, 2700, 14400, 86400]

    @pytest.mark.parametrize("first_line", [
        "version: 2025-02-30", "version: !!int abc", "routes: [" * 3000,
        "default_first_response_target: 1d"])
    def test_a_table_the_router_refuses_leaves_the_default_buckets(
            self, first_line: str) -> None:
        """The metrics service starts whatever the table holds; what the router refuses
        (a bad value, a key of no layout it reads) gives no targets here either (the
        version in force read rather than the file, and the file alone:
        tests/integration/test_metrics_buckets_in_force.py)."""
        assert targets_file.targets(first_line + "\n" + ROUTING_TABLE, "routing.yaml",
                                    path=TABLE) == []

    def test_targets_become_bucket_edges(self) -> None:
        edges = service_levels.bucket_edges(service_levels.DEFAULT_RESPONSE_BUCKETS,
                                            [2700, 900, 14400])
        assert 2700.0 in edges
        assert list(edges) == sorted(set(edges))
        assert set(service_levels.DEFAULT_RESPONSE_BUCKETS) <= set(edges)
