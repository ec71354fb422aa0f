from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.core import config_files, tickets
from services.router import overflow, routing, table_file, table_parsing

SIMPLE = routing.RoutingTable.simple(
    "v1", {"government": "public_sector", "vip": "key_accounts"}, "general")
MONDAY_NOON = datetime(2025, 1, 6, 11, 0, tzinfo=UTC)  # 12:00 in Amsterdam
SATURDAY_NOON = datetime(2025, 1, 4, 11, 0, tzinfo=UTC)
TICKET = {"kind": "question", "channel": "email", "language": "nl", "attributes": {}}
COMPLAINT = {**TICKET, "kind": "complaint"}

OFFICE = ("{time_zone: Europe/Amsterdam, hours: {mon-fri: '08:00-18:00'},"
          " holidays: [2025-12-25]}")
POLICY = f"""\
version: v3
fallback_department: customer_care
defaults:
  priority: 4
  first_response_target: 1d
routes:
  - segment: government
    department: public_sector
    priority: 2
    first_response_target: 4h
  - segment: business
    department: business_desk
    first_response_target: 8h
    tiers:
      most_valuable: {{priority: 2, first_response_target: 2h}}
  - segment: key_accounts
    department: key_accounts
    priority: 2
    first_response_target: 1h
    refinements:
      - name: key-account-complaints
        when: ticket.kind == "complaint"
        priority: 1
        first_response_target: 30m
      - name: phone
        when: ticket.channel == "phone"
        department: customer_care
departments:
  public_sector: {{calendar: {OFFICE}, escalation_to: key_accounts}}
  business_desk:
    calendar: {OFFICE}
    after_hours: {{route_to: key_accounts}}
  key_accounts: {{}}
  sales_support: {{calendar: {OFFICE}}}
  customer_care:
    overflow: {{to: sales_support, max_backlog: 100, resume_below: 0.8}}
"""


def parse(text: str) -> routing.RoutingTable:
    return table_parsing.parse_table(config_files.load_yaml("routing.yaml", text),
                               source="routing.yaml", version="test")


TABLE = parse(POLICY)


def decide(segment: str, *, tier: str = "existing", ticket: dict[str, Any] = TICKET,
           now: datetime = MONDAY_NOON, table: routing.RoutingTable = TABLE,
           **overflow_inputs: Any) -> routing.RoutingDecision:
    return routing.decide(segment, tier, ticket, table, now=now, **overflow_inputs)


class TestSimpleTable:
    def test_routed_segment_goes_to_its_department(self) -> None:
        decision = decide("government", table=SIMPLE)
        assert (decision.department, decision.reason, decision.entry) \
            == ("public_sector", "route", "government")

    def test_unclaimed_segment_goes_to_fallback(self) -> None:
        decision = decide("nobody-routes-this", table=SIMPLE)
        assert (decision.department, decision.reason, decision.entry) \
            == ("general", "fallback", "fallback")

    def test_built_in_service_level_and_wall_clock_deadline(self) -> None:
        decision = decide("government", table=SIMPLE, now=SATURDAY_NOON)
        assert (decision.priority, decision.first_response_target) == (3, timedelta(days=1))
        assert decision.first_response_deadline == SATURDAY_NOON + timedelta(days=1)
        assert decision.queue_topic == "dept.public_sector"

    def test_departments_are_listed_once_with_the_fallback(self) -> None:
        assert SIMPLE.departments == ("public_sector", "key_accounts", "general")

    def test_a_plain_file_still_parses(self) -> None:
        table = parse("fallback_department: general\nroutes:\n"
                      "  - segment: government\n    department: public_sector\n")
        assert table == routing.RoutingTable.simple(
            "test", {"government": "public_sector"}, "general")


class TestServiceLevel:
    def test_the_route_sets_priority_and_target(self) -> None:
        decision = decide("government")
        assert (decision.priority, decision.first_response_target) == (2, timedelta(hours=4))
        assert decision.lane == "high"
        assert decision.queue_topic == "dept.public_sector.high"

    def test_the_tier_tightens_the_target(self) -> None:
        assert decide("business", tier="existing").first_response_target == timedelta(hours=8)
        valued = decide("business", tier="most_valuable")
        assert (valued.priority, valued.first_response_target) == (2, timedelta(hours=2))

    def test_the_fallback_uses_the_defaults(self) -> None:
        decision = decide("general")
        assert (decision.department, decision.priority, decision.first_response_target) \
            == ("customer_care", 4, timedelta(days=1))


class TestRefinements:
    def test_a_matching_refinement_overrides_the_route(self) -> None:
        decision = decide("key_accounts", ticket=COMPLAINT)
        assert (decision.department, decision.reason, decision.entry, decision.priority) \
            == ("key_accounts", "refinement", "key-account-complaints", 1)
        assert decision.first_response_target == timedelta(minutes=30)

    def test_the_first_match_wins(self) -> None:
        decision = decide("key_accounts", ticket={**COMPLAINT, "channel": "phone"})
        assert decision.entry == "key-account-complaints"

    def test_a_later_refinement_can_change_the_department(self) -> None:
        decision = decide("key_accounts", ticket={**TICKET, "channel": "phone"})
        assert (decision.department, decision.priority) == ("customer_care", 2)

    def test_no_match_keeps_the_route(self) -> None:
        assert decide("key_accounts").reason == "route"

    def test_a_refinement_failing_on_a_ticket_is_skipped_and_traced(self) -> None:
        decision = decide("key_accounts", ticket={"kind": "question"})  # no channel
        assert decision.reason == "route"
        assert any("refinement 'phone' failed" in step for step in decision.explanation)


class TestAfterHours:
    def test_pause_keeps_the_ticket_and_starts_the_clock_at_opening(self) -> None:
        decision = decide("government", now=SATURDAY_NOON)
        assert (decision.department, decision.reason) == ("public_sector", "route")
        assert decision.first_response_deadline == datetime(2025, 1, 6, 11, 0, tzinfo=UTC)
        assert any("public_sector closed" in step for step in decision.explanation)

    def test_route_to_hands_the_ticket_to_an_open_department(self) -> None:
        decision = decide("business", now=SATURDAY_NOON)
        assert (decision.department, decision.reason) == ("key_accounts", "after_hours")
        assert decision.first_response_deadline == SATURDAY_NOON + timedelta(hours=8)

    def test_open_departments_keep_their_tickets(self) -> None:
        assert decide("business").department == "business_desk"

    def test_a_ring_of_closed_departments_keeps_the_first(self) -> None:
        table = parse(f"fallback_department: a\nroutes: [{{segment: s, department: a}}]\n"
                      f"departments:\n"
                      f"  a: {{calendar: {OFFICE}, after_hours: {{route_to: b}}}}\n"
                      f"  b: {{calendar: {OFFICE}, after_hours: {{route_to: a}}}}\n")
        decision = decide("s", table=table, now=SATURDAY_NOON)
        assert decision.department == "a"
        assert "a -> b all closed: stays with a" in decision.explanation


SWAMPED = {"customer_care": overflow.DepartmentLoad(backlog=120)}


class TestOverflow:
    def test_an_overloaded_department_hands_on_new_tickets(self) -> None:
        decision = decide("general", load=SWAMPED)
        assert (decision.department, decision.reason, decision.overflowed_from) \
            == ("sales_support", "overflow", "customer_care")
        assert "customer_care over backlog 120 > 100: overflow to sales_support" \
            in decision.explanation

    def test_within_limits_nothing_overflows(self) -> None:
        decision = decide("general", load={"customer_care": overflow.DepartmentLoad(90)})
        assert (decision.department, decision.overflowed_from) == ("customer_care", None)

    def test_hysteresis_comes_from_the_state(self) -> None:
        state = {"customer_care": overflow.OverflowState(True, MONDAY_NOON)}
        decision = decide("general", load={"customer_care": overflow.DepartmentLoad(90)},
                          overflow_state=state)
        assert decision.department == "sales_support"

    def test_never_to_a_closed_department(self) -> None:
        decision = decide("general", load=SWAMPED, now=SATURDAY_NOON)
        assert decision.department == "customer_care"
        assert any("sales_support is closed: no overflow" in step for step in decision.explanation)

    def test_the_deadline_follows_the_receiving_department_calendar(self) -> None:
        late = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)  # 17:00 in Amsterdam
        decision = decide("general", load=SWAMPED, now=late)
        # 24 hours of business time: 1h on Monday, 10h each Tuesday and Wednesday, 3h on
        # Thursday, on sales_support's calendar (customer_care has none: it would be 24h).
        assert decision.first_response_deadline == datetime(2025, 1, 9, 10, 0, tzinfo=UTC)


class TestTrace:
    def test_names_the_route_and_table_version(self) -> None:
        assert decide("government").explanation[0] \
            == "segment government -> public_sector (route 'government', table test)"

    def test_ends_with_the_service_level_and_deadline(self) -> None:
        assert decide("government").explanation[-1] == (
            "tier existing: priority 2 (high lane), first response within 4h (business hours"
            " of public_sector), due Mon 2025-01-06 16:00 Europe/Amsterdam")


class TestTable:
    def test_departments_include_every_target(self) -> None:
        assert TABLE.departments == ("public_sector", "business_desk", "key_accounts",
                                     "customer_care", "sales_support")

    def test_escalation_targets_and_overflow_policies(self) -> None:
        assert TABLE.escalation_target("public_sector") == "key_accounts"
        assert TABLE.escalation_target("nobody") is None
        assert list(TABLE.overflow_policies) == ["customer_care"]

    def test_the_demo_file_is_valid(self) -> None:
        table = table_file.load(Path(__file__).parents[2] / "config" / "routing.yaml")
        assert table.fallback_department == "customer_care"
        decision = routing.decide("key_accounts", "most_valuable", COMPLAINT, table,
                                  now=MONDAY_NOON)
        assert (decision.department, decision.priority) == ("key_accounts", 1)


ROUTES = "fallback_department: general\nroutes:\n  - {segment: a, department: b}\n"


class TestParseErrors:
    def test_missing_fallback_is_rejected_with_file_and_line(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("routes:\n  - segment: a\n    department: b\n")
        assert (error.value.path, error.value.entry) == ("routing.yaml", "fallback_department")
        assert "required" in error.value.problem

    def test_error_names_the_line_and_entry_of_a_bad_route(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes:\n"
                  "  - segment: a\n    department: b\n"
                  "  - segment: vip\n    department: Key Accounts!\n")
        assert (error.value.line, error.value.entry) == (5, "vip")
        assert "routing.yaml:5" in str(error.value)

    @pytest.mark.parametrize(("extra", "line", "entry", "problem"), [
        ("  - {segment: a, department: c}\n", 4, "a", "routed twice"),
        ("  - {segment: c, department: d, speed: 1}\n", 4, "routes[2]", "unknown keys"),
        ("  - {segment: c, department: d, priority: 6}\n", 4, "c", "priority must be"),
        ("  - {segment: c, department: d, first_response_target: 1w}\n", 4, "c",
         "not a duration"),
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: 'ticket.kind ==', department: e}\n", 7, "r",
         "not a valid CEL"),
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: 'tier', department: e}\n", 7, "r", "not a boolean"),
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: 'ticket.attributes.vip == true', department: e}\n", 7, "r",
         "fails on a probe ticket"),
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: 'true'}\n", 7, "r", "must set a department"),
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: 'true', department: Bad!}\n", 7, "r", "not valid"),
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: 'true', priority: 1}\n      - {name: r, when: 'true',"
         " priority: 2}\n", 8, "r", "two refinements have this name"),
    ])
    def test_route_errors(self, extra: str, line: int, entry: str, problem: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(ROUTES + extra)
        assert problem in error.value.problem
        assert (error.value.line, error.value.entry) == (line, entry)

    @pytest.mark.parametrize(("departments", "line", "entry", "problem"), [
        ("  general: {}\n  b: {overflow: {to: c, max_backlog: 1}}\n", 6, "b",
         "'c' is not defined under departments"),
        ("  general: {}\n", 3, "a", "'b' is not defined"),
        ("  general: {overflow: {to: b, max_backlog: 1}}\n"
         "  b: {overflow: {to: general, max_backlog: 1}}\n", 5, "general",
         "overflow goes round in a circle: general -> b -> general"),
        ("  general: {}\n  b: {after_hours: pause}\n", 6, "b", "needs a calendar"),
        (f"  general: {{}}\n  b: {{calendar: {OFFICE}, after_hours: closed}}\n", 6, "b",
         "'pause' or {route_to"),
        ("  general: {}\n  b: {escalation_to: b}\n", 6, "b", "to itself"),
        ("  general: {}\n  b: {calendar: {time_zone: Nowhere, hours: {}}}\n", 6, "b",
         "calendar: time_zone"),
        ("  general: {}\n  b: {holidays: []}\n", 6, "b", "unknown keys ['holidays']"),
        ("  general: {}\n  b: {}\n  Bad!: {}\n", 7, "Bad!", "not valid"),
    ])
    def test_department_errors(self, departments: str, line: int, entry: str,
                               problem: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(ROUTES + "departments:\n" + departments)
        assert problem in error.value.problem
        assert (error.value.line, error.value.entry) == (line, entry)

    def test_unknown_top_level_key_is_named(self) -> None:
        with pytest.raises(config_files.ConfigError, match="unknown keys \\['route'\\]"):
            parse(ROUTES + "route: []\n")

    def test_priority_aging_must_be_a_duration_or_off(self) -> None:
        assert parse(ROUTES + "priority_aging: 'off'\n").aging.step is None
        assert parse(ROUTES + "priority_aging: 15m\n").aging.step == timedelta(minutes=15)
        with pytest.raises(config_files.ConfigError, match="priority_aging"):
            parse(ROUTES + "priority_aging: sometimes\n")

    def test_yaml_syntax_error_names_the_line(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes: [\n  - x\n")
        assert error.value.line is not None


class TestDurationBounds:
    """Every duration is at most 366 days, refused at load with the file, line and
    entry; a longer one would overflow the deadline (or the aging) at routing time."""

    @pytest.mark.parametrize(("extra", "line", "entry", "field"), [
        ("  - {segment: c, department: d, first_response_target: 1000000000000d}\n", 4, "c",
         "first_response_target"),
        ("  - {segment: c, department: d, first_response_target: 367d}\n", 4, "c",
         "first_response_target"),
        ("  - segment: c\n    department: d\n    tiers:\n"
         "      existing: {first_response_target: 999999999d}\n", 7, "c",
         "tiers.existing.first_response_target"),
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: 'true', first_response_target: 9000000h}\n", 7, "r",
         "first_response_target"),
        ("priority_aging: 100000000000d\n", 1, "priority_aging", "priority_aging"),
        ("departments:\n  general: {}\n  b: {}\n  d: {overflow: {to: b, "
         "max_predicted_first_response: 5000000000000s}}\n", 7, "d",
         "overflow.max_predicted_first_response"),
    ])
    def test_a_duration_past_366_days_is_refused(self, extra: str, line: int, entry: str,
                                                 field: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(ROUTES + extra)
        assert (error.value.line, error.value.entry) == (line, entry)
        assert error.value.problem.startswith(f"{field}: ")
        assert "longer than 366d, the longest allowed" in error.value.problem

    def test_the_longest_target_routes_with_a_deadline(self) -> None:
        table = parse("fallback_department: general\n"
                      "defaults: {first_response_target: 366d}\nroutes:\n"
                      "  - {segment: a, department: b}\n"
                      f"departments:\n  general: {{}}\n  b: {{calendar: {OFFICE}}}\n")
        decision = decide("a", table=table)
        assert decision.first_response_target == timedelta(days=366)
        assert decision.first_response_deadline > MONDAY_NOON + timedelta(days=366)

    def test_a_calendar_too_closed_for_the_longest_target_is_refused(self) -> None:
        # Open an hour a week: ten years of it is about 22 days, not 30.
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes:\n"
                  "  - {segment: a, department: b, first_response_target: 30d}\n"
                  "departments:\n  general: {}\n  b:\n"
                  "    calendar: {time_zone: UTC, hours: {mon: '09:00-10:00'}}\n")
        assert (error.value.line, error.value.entry) == (7, "b")
        assert "calendar: opens too little for the longest target, 30d" \
            in error.value.problem


class TestViewOf:
    def test_a_ticket_gives_what_refinements_read(self) -> None:
        ticket = tickets.Ticket(ticket_id="t", customer_id="c", subject="s", body="b",
                                channel="chat", kind="complaint", attributes={"order": "1"},
                                received_at=MONDAY_NOON)
        assert routing.view_of(ticket) == {"kind": "complaint", "channel": "chat",
                                           "language": None, "attributes": {"order": "1"}}
