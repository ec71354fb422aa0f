from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

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


class TestDurations:
    """Targets are read with the routing table's own grammar, nothing more tolerant."""

    @pytest.mark.parametrize(("value", "seconds"), [
        ("15m", 900), ("4h", 14400), ("1d", 86400), ("1h30m", 5400), ("90s", 90),
        ("1d2h", 93600)])
    def test_read(self, value: object, seconds: float) -> None:
        assert targets_file.parse_duration(value) == seconds

    @pytest.mark.parametrize("value", ["", "soon", "15", "m15", "-5m", "0m", True, None,
                                       [], "15m garbage", "400d", float("inf"), -1,
                                       "2 h", "1W", 600, 0.5, "1.5h"])
    def test_not_read(self, value: object) -> None:
        assert targets_file.parse_duration(value) is None


ROUTING_TABLE = """
version: demo-3
fallback_department: customer_care
default_first_response_target: 1d
service_levels:
  first_response_target: {most_valuable: 15m, potential: 2d}
routes:
  - segment: government
    department: public_sector
    first_response_target: 4h
  - segment: business
    department: business_desk
    first_response_target: soon
  - segment: key_accounts
    department: key_accounts
    first_response_target: 45m
"""


class TestTargetsInTheRoutingTable:
    def test_every_target_is_found_wherever_it_stands(self) -> None:
        seconds, unreadable = targets_file.targets_in(yaml.safe_load(ROUTING_TABLE))
        assert sorted(seconds) == [900, 2700, 14400, 172800]
        assert unreadable == ["'soon'"]

    def test_a_table_without_targets_has_none(self) -> None:
        assert targets_file.targets_in({"routes": [{"segment": "a"}]}) == ([], [])
        assert targets_file.targets_in("not a mapping") == ([], [])

    @pytest.mark.parametrize("first_line", [
        "version: 2025-02-30", "version: !!int abc", "routes: [" * 3000])
    def test_a_file_the_router_would_refuse_leaves_the_default_buckets(
            self, tmp_path: Path, first_line: str) -> None:
        """The metrics service starts whatever the file holds (it reads the file with
        the router's loader, so what the router refuses it skips)."""
        table = tmp_path / "routing.yaml"
        table.write_text(first_line + "\n" + ROUTING_TABLE, encoding="utf-8")
        assert targets_file.read_targets(table) == []
        assert targets_file.response_buckets(table) == \
            service_levels.DEFAULT_RESPONSE_BUCKETS

    def test_the_file_s_targets_are_read_with_its_lines(self, tmp_path: Path) -> None:
        table = tmp_path / "routing.yaml"
        table.write_text(ROUTING_TABLE, encoding="utf-8")
        assert sorted(targets_file.read_targets(table)) == [900, 2700, 14400, 172800]

    def test_targets_become_bucket_edges(self) -> None:
        edges = service_levels.bucket_edges(service_levels.DEFAULT_RESPONSE_BUCKETS,
                                            [2700, 900, 14400])
        assert 2700.0 in edges
        assert list(edges) == sorted(set(edges))
        assert set(service_levels.DEFAULT_RESPONSE_BUCKETS) <= set(edges)
