"""A routing table is refused at load, naming the file, line and entry: bad routes,
refinements and departments, and durations past 366 days."""

from datetime import timedelta

import pytest

from services.core import config_files
from services.router import overflow
from tests.unit.routing_tables import MONDAY_NOON, OFFICE, ROUTES, decide, parse


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
         "failed (NOT_FOUND): "),  # on a probe ticket, with CEL's own message
        # Guarded by the kind, yet a question may come without a language.
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, department: e,\n"
         "         when: \"ticket.kind == 'question' && ticket.language.startsWith('en')\"}\n",
         7, "r", "fails on a ticket of kind question by email, language null"),
        # CEL raises on it rather than answer (a map with a key twice), on every ticket.
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, when: \"{'k': 1, 'k': 2}.size() == 1\", department: e}\n", 7,
         "r", "failed (ALREADY_EXISTS)"),
        # Loops past CEL's iteration budget on the most attributes a ticket may have.
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, department: e, when: \"ticket.attributes.exists(a,"
         " ticket.attributes.exists(b, ticket.attributes.exists(c, a + b + c == 'k')))\"}\n",
         7, "r", "Iteration budget exceeded"),
        # A pattern costly to compile, for each of the largest ticket's attributes.
        ("  - segment: c\n    department: d\n    refinements:\n"
         "      - {name: r, department: e, when: \"ticket.attributes.exists(k,"
         " string(ticket.attributes[k]).matches('^(a|b|c|d)*(x{1,100}){1,10}$'))\"}\n",
         7, "r", "ms of CPU on a ticket"),
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
        ("  general: {}\n  b: {overflow: {to: b, max_backlog: 1}}\n", 6, "b",
         "overflow goes round in a circle: b -> b"),
        ("  general: {}\n  b: {after_hours: pause}\n", 6, "b", "needs a calendar"),
        (f"  general: {{}}\n  b: {{calendar: {OFFICE}, after_hours: closed}}\n", 6, "b",
         "'pause' or {route_to"),
        ("  general: {}\n  b: {escalation_to: b}\n", 6, "b", "to itself"),
        ("  general: {}\n  b: {calendar: {time_zone: Nowhere, hours: {}}}\n", 6, "b",
         "calendar: time_zone"),
        ("  general: {}\n  b: {calendar: {time_zone: localtime, hours: {}}}\n", 6, "b",
         "calendar: time_zone 'localtime' is not an IANA time zone"),
        ("  general: {}\n  b: {calendar: {time_zone: posixrules, hours: {}}}\n", 6, "b",
         "calendar: time_zone 'posixrules' is not an IANA time zone"),
        ("  general: {}\n  b: {calendar: {time_zone: LOCALTIME, hours: {}}}\n", 6, "b",
         "calendar: time_zone 'LOCALTIME' is not an IANA time zone"),
        ("  general: {}\n  b: {calendar: {time_zone: europe/amsterdam, hours: {}}}\n", 6,
         "b", "'europe/amsterdam' is not an IANA time zone like 'Europe/Amsterdam' (written"),
        ("  general: {}\n  b: {calendar: {time_zone: right/UTC, hours: {}}}\n", 6, "b",
         "calendar: time_zone 'right/UTC' is not an IANA time zone"),
        ("  general: {}\n  b: {calendar: {time_zone: posix/Europe/Paris, hours: {}}}\n", 6,
         "b", "calendar: time_zone 'posix/Europe/Paris' is not an IANA time zone"),
        ("  general: {}\n  b: {holidays: []}\n", 6, "b", "unknown keys ['holidays']"),
        ("  general: {}\n  b: {calendar: {time_zone: UTC, hours: {mon: '09:00-17:00'},"
         " holidays: [2026-02-30]}}\n", 6, "b",
         "calendar: holiday '2026-02-30' is not a date like 2025-12-25"),
        ("  general: {}\n  b:\n    calendar:\n      time_zone: UTC\n"
         "      hours: {mon: '09:00-17:00'}\n      holidays:\n        - 2026-12-25\n"
         "        - 2026-13-01\n", 12, "b",
         "calendar: holiday '2026-13-01' is not a date like 2025-12-25"),
        ("  general: {}\n  b: {}\n  Bad!: {}\n", 7, "Bad!", "not valid"),
    ])
    def test_department_errors(self, departments: str, line: int, entry: str,
                               problem: str) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse(ROUTES + "departments:\n" + departments)
        assert problem in error.value.problem
        assert (error.value.line, error.value.entry) == (line, entry)

    @pytest.mark.parametrize("maximum", ["max_backlog", "max_lag"])
    def test_an_overflow_maximum_past_the_largest_is_refused(self, maximum: str) -> None:
        """A 311-digit maximum overflowed a float at routing time, for every department."""
        with pytest.raises(config_files.ConfigError) as error:
            parse(ROUTES + "departments:\n  general: {}\n  b: {}\n"
                  f"  d: {{overflow: {{to: b, {maximum}: {10 ** 310}}}}}\n")
        assert (error.value.path, error.value.line, error.value.entry) == (
            "routing.yaml", 7, "d")
        assert error.value.problem.startswith(
            f"overflow: {maximum} must be a whole number from 1 to"
            f" {overflow.LARGEST_MAXIMUM:,}, not 1000")
        table = parse(ROUTES + "departments:\n  general: {}\n  b: {}\n"
                      f"  d: {{overflow: {{to: b, {maximum}: {overflow.LARGEST_MAXIMUM}}}}}\n")
        policy = table.department_policies["d"].overflow_policy
        assert policy is not None
        assert overflow.LARGEST_MAXIMUM in (policy.max_backlog, policy.max_lag)
        resumed = overflow.next_state(overflow.OverflowState(True, MONDAY_NOON),
                                      overflow.DepartmentLoad(backlog=0, lag=0), policy,
                                      now=MONDAY_NOON)
        assert not resumed.state.overflowing

    def test_unknown_top_level_key_is_named(self) -> None:
        with pytest.raises(config_files.ConfigError, match="unknown keys \\['route'\\]"):
            parse(ROUTES + "route: []\n")

    @pytest.mark.parametrize(("text", "line", "entry", "problem"), [
        (ROUTES + "defaults: {}\nroute: []\nabc: 1\n", 5, None,
         "unknown keys ['abc', 'route']"),  # the first in the file
        (ROUTES + "priority_aging: sometimes\n", 4, "priority_aging",
         "priority_aging: 'sometimes' is not a duration"),
        (ROUTES + "warning_share: 2\n", 4, "warning_share", "warning_share must be a share"),
        (ROUTES + "priority_targets: []\n", 4, "priority_targets",
         "priority_targets must map priorities"),
        (ROUTES + "defaults: []\n", 4, "defaults", "defaults must be a mapping"),
        (ROUTES + "departments: []\n", 4, "departments", "departments must map"),
        ("version: v\nfallback_department: 7\nroutes:\n  - {segment: a, department: b}\n",
         2, "fallback_department", "a fallback department is required"),
        ("version: v\nfallback_department: Bad!\nroutes:\n  - {segment: a, department: b}\n",
         2, "fallback_department", "not valid"),
        ("version: v\nfallback_department: general\nroutes: []\n", 3, "routes",
         "routes must be a non-empty list"),
    ])
    def test_a_top_level_key_is_named_at_its_own_line(
            self, text: str, line: int, entry: str | None, problem: str) -> None:
        """Not at the file's first key: `warning_share: 2` at the end of the shipped
        table was reported at its `version:` line."""
        with pytest.raises(config_files.ConfigError) as error:
            parse(text)
        assert problem in error.value.problem
        assert (error.value.line, error.value.entry) == (line, entry)

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
        ("priority_aging: 100000000000d\n", 4, "priority_aging", "priority_aging"),
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
        assert error.value.problem == "calendar: opens too little for the longest target,"\
            " 30d: ten years of its opening hours give at least 21d23h"

    def test_the_time_a_calendar_gives_is_told_as_a_lower_bound(self) -> None:
        # A minute a week, for the 527 whole weeks of the search, less the minute each of
        # eleven changes to summer time can take (not 0m: an hour each took it all).
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes:\n"
                  "  - {segment: a, department: b, first_response_target: 1d}\n"
                  "departments:\n  general: {}\n  b:\n"
                  "    calendar: {time_zone: Europe/Amsterdam, hours: {mon: '09:00-09:01'}}\n")
        assert error.value.problem.endswith(
            "1d: ten years of its opening hours give at least 8h36m")

    def test_a_calendar_too_closed_for_its_second_escalation_is_refused(self) -> None:
        """The second level comes `after` of the department's business time from a
        breach: its calendar must give that too, or the clock watch finds no deadline."""
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes:\n"
                  "  - {segment: a, department: b}\n"
                  "departments:\n  general: {}\n  b:\n"
                  "    calendar: {time_zone: UTC, hours: {mon: '09:00-10:00'}}\n"
                  "    second_escalation: {after: 30d}\n")
        assert (error.value.line, error.value.entry) == (7, "b")
        assert "calendar: opens too little for the second_escalation.after, 30d" \
            in error.value.problem
