"""The routing table's service-level targets, warning share and second escalation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.core import config_files
from services.router import priority, routing, table_file
from tests.unit.routing_tables import parse

TABLE = """\
fallback_department: general
warning_share: 0.75
defaults: {first_response_target: 4h, next_response_target: 8h, resolution_target: 2d}
routes:
  - segment: business
    department: b2b
    resolution_target: 1d
    tiers:
      most_valuable: {first_response_target: 1h, next_response_target: 2h}
departments:
  general: {}
  supervisors: {}
  b2b:
    escalation_to: general
    second_escalation: {after: 2h, to: supervisors}
"""
NOW = datetime(2025, 3, 10, 9, tzinfo=UTC)


class TestTargets:
    def test_each_target_per_route_and_tier(self) -> None:
        decision = routing.decide("business", "most_valuable", {}, parse(TABLE), now=NOW)
        assert decision.level is not None
        assert (decision.level.first_response_target, decision.level.next_response_target,
                decision.level.resolution_target) == (
            timedelta(hours=1), timedelta(hours=2), timedelta(days=1))
        assert any("resolution within 1d" in step for step in decision.explanation)

    def test_defaults_fill_what_a_route_leaves_out(self) -> None:
        decision = routing.decide("retail", "existing", {}, parse(TABLE), now=NOW)
        assert decision.level is not None
        assert decision.level.next_response_target == timedelta(hours=8)
        assert decision.level.resolution_target == timedelta(days=2)

    def test_without_them_there_is_no_next_response_or_resolution_clock(self) -> None:
        table = parse("fallback_department: general\nroutes:\n"
                      "  - {segment: a, department: general}\n")
        decision = routing.decide("a", "existing", {}, table, now=NOW)
        assert decision.level is not None and decision.level.resolution_target is None
        assert table.warning_share is None

    def test_without_one_a_first_response_target_is_built_in_a_day(self) -> None:
        """README's clock table: the first-response clock always runs, at 1d where neither
        the route, its tier nor the defaults give a target."""
        table = parse("fallback_department: general\nroutes:\n"
                      "  - {segment: a, department: general}\n")
        decision = routing.decide("a", "existing", {}, table, now=NOW)
        assert decision.level is not None
        assert decision.level.first_response_target == timedelta(days=1)
        assert decision.first_response_deadline == NOW + timedelta(days=1)

    def test_warnings_can_be_switched_off_by_name(self) -> None:
        assert parse(TABLE).warning_share == 0.75
        assert parse(TABLE.replace("warning_share: 0.75", "warning_share: 'off'")
                     ).warning_share is None

    def test_each_level_is_the_resolved_one_and_follows_a_new_table(self) -> None:
        old = parse(TABLE)
        for segment, tier in [("business", "most_valuable"), ("business", "existing"),
                              ("retail", "existing"), ("retail", "most_valuable")]:
            route = old.routes.get(segment)
            resolved = priority.resolve(tier, route.service if route else None,
                                        old.defaults)
            assert old.service_level(segment, tier) == resolved  # asked
            assert old.service_level(segment, tier) == resolved  # and asked again
        # A new version of the table (after the old one answered) has its own levels.
        new = parse(TABLE.replace("first_response_target: 1h", "first_response_target: 3h")
                    .replace("first_response_target: 4h", "first_response_target: 5h"))
        assert new.service_level("business", "most_valuable").first_response_target \
            == timedelta(hours=3)
        assert routing.decide("retail", "existing", {}, new, now=NOW).first_response_target \
            == timedelta(hours=5)
        assert old.service_level("retail", "existing").first_response_target \
            == timedelta(hours=4)

    def test_a_bad_target_names_file_line_and_field(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes:\n"
                  "  - {segment: a, department: general, resolution_target: soon}\n")
        assert (error.value.line, error.value.entry) == (3, "a")
        assert "resolution_target" in error.value.problem


class TestWarningsAndSecondLevel:
    def test_the_share_and_the_second_escalation_are_read(self) -> None:
        table = parse(TABLE)
        assert table.warning_share == 0.75
        second = table.policy("b2b").second_escalation
        assert second == routing.SecondEscalation(timedelta(hours=2), "supervisors")
        assert "supervisors" in table.departments

    @pytest.mark.parametrize("share", ["1", "0", "1.5", "'75%'", "true"])
    def test_a_share_outside_zero_to_one_is_refused(self, share: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(TABLE.replace("warning_share: 0.75", f"warning_share: {share}"))
        assert error.value.entry == "warning_share"

    def test_a_second_escalation_without_after_is_refused(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(TABLE.replace("{after: 2h, to: supervisors}", "{to: supervisors}"))
        assert error.value.entry == "b2b" and "second_escalation" in error.value.problem

    def test_a_second_escalation_to_an_undefined_department_is_refused(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(TABLE.replace("to: supervisors}", "to: bosses}"))
        assert "'bosses' is not defined" in error.value.problem


PRIORITY_TARGETS = """\
priority_targets:
  1: {first_response_target: 15m, next_response_target: 30m, resolution_target: 4h}
  2:
    resolution_target: 8h
"""


class TestPriorityTargets:
    def test_each_priority_gives_the_targets_it_names(self) -> None:
        table = parse(PRIORITY_TARGETS + TABLE)
        assert table.priority_targets[1] == priority.Override(
            first_response_target=timedelta(minutes=15),
            next_response_target=timedelta(minutes=30), resolution_target=timedelta(hours=4))
        assert table.priority_targets[2] == priority.Override(
            resolution_target=timedelta(hours=8))
        assert 3 not in table.priority_targets

    def test_a_json_uploads_text_keys_are_priorities_too(self) -> None:
        """JSON keys are strings: `"1"` in a JSON upload is priority 1."""
        document = {"fallback_department": "general",
                    "priority_targets": {"1": {"first_response_target": "15m"}},
                    "routes": [{"segment": "a", "department": "general"}]}
        table = table_file.parse(json.dumps(document), "upload")
        assert table.priority_targets == {
            1: priority.Override(first_response_target=timedelta(minutes=15))}

    def test_without_them_no_priority_changes_a_target(self) -> None:
        assert parse(TABLE).priority_targets == {}

    # A mapping's line is its own; a scalar's, its section's (line 2).
    @pytest.mark.parametrize(("given", "line", "problem"), [
        ("  6: {resolution_target: 4h}\n", 3, "6 is not a priority"),
        ("  urgent: {resolution_target: 4h}\n", 3, "'urgent' is not a priority"),
        ("  1: {resolution_target: soon}\n", 3, "priority_targets.1.resolution_target"),
        ("  1: {priority: 2}\n", 3, "unknown keys ['priority']"),
        ("  1: 15m\n", 2, "priority_targets.1 must be a mapping"),
    ])
    def test_a_bad_entry_names_file_line_and_what_is_accepted(
            self, given: str, line: int, problem: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("priority_targets:\n  2: {resolution_target: 8h}\n" + given + TABLE)
        assert error.value.path == "routing.yaml"
        assert (error.value.line, error.value.entry) == (line, "priority_targets")
        assert problem in error.value.problem

    def test_a_list_instead_of_a_mapping_is_refused(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("priority_targets: [15m]\n" + TABLE)
        assert error.value.entry == "priority_targets"
        assert "map priorities (1-5)" in error.value.problem

    def test_a_calendar_too_short_for_a_priority_target_is_refused(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("priority_targets: {4: {resolution_target: 366d}}\n" + TABLE.replace(
                "  general: {}\n", "  general:\n    calendar:\n      time_zone: UTC\n"
                "      hours: {mon: '09:00-09:01'}\n"))
        assert error.value.entry == "general" and "longest target" in error.value.problem
