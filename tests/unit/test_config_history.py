"""Pure parts of configuration history: the diff of two texts, and what a candidate
routing table would change (a dry run)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.core import config_store
from services.router import routing, table_changes


def version(version_id: int, text: str) -> config_store.ConfigVersion:
    return config_store.ConfigVersion(version_id, config_store.ROUTING_TABLE, f"v{version_id}",
                                      text, config_store.sha256_of(text), "tests", "",
                                      datetime(2026, 1, 1, tzinfo=UTC), False)


class TestDiff:
    def test_names_both_versions_and_the_changed_lines(self) -> None:
        diff = config_store.unified_diff(version(1, "a: 1\nb: 2\n"), version(2, "a: 1\nb: 3\n"))
        assert diff.splitlines() == ["--- #1 v1", "+++ #2 v2", "@@ -1,2 +1,2 @@",
                                     " a: 1", "-b: 2", "+b: 3"]

    def test_the_same_text_has_an_empty_diff(self) -> None:
        assert config_store.unified_diff(version(1, "a: 1\n"), version(2, "a: 1\n")) == ""


class TestTableChanges:
    def test_a_segment_moving_department_and_departments_added_and_removed(self) -> None:
        current = routing.RoutingTable.simple("1", {"gov": "public", "vip": "key"}, "care")
        candidate = routing.RoutingTable.simple("2", {"gov": "public", "vip": "premium"},
                                                "care")
        changes = table_changes.changes(current, candidate)
        assert changes["moved_segments"] == {"vip": {"from": "key", "to": "premium"}}
        assert changes["departments_added"] == ["premium"]
        assert changes["departments_removed"] == ["key"]

    def test_a_segment_without_a_route_goes_to_the_fallback(self) -> None:
        current = routing.RoutingTable.simple("1", {"gov": "public"}, "care")
        candidate = routing.RoutingTable.simple("2", {}, "care")
        assert table_changes.changes(current, candidate)["moved_segments"] == {
            "gov": {"from": "public", "to": "care"}}
