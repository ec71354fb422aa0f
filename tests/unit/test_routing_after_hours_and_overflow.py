"""Routing when a department is closed (pause or hand on) or overloaded (overflow)."""

from datetime import UTC, datetime, timedelta

from services.router import overflow, routing
from tests.unit.routing_tables import MONDAY_NOON, OFFICE, SATURDAY_NOON, decide, parse


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


def chain(**after_hours: str | None) -> str:
    """A table routing segment s to a, whose departments close at the weekend (OFFICE) and
    hand tickets on after hours as `after_hours` says (None: they pause); c, when not
    named, is open 24/7."""
    lines = [f"  {department}: {{calendar: {OFFICE}"
             + (f", after_hours: {{route_to: {to}}}}}" if to else "}")
             for department, to in after_hours.items()]
    lines += [] if "c" in after_hours else ["  c: {}"]
    return ("fallback_department: a\nroutes: [{segment: s, department: a}]\n"
            "departments:\n" + "\n".join(lines) + "\n")


class TestAfterHoursChains:
    """`after_hours.route_to` is followed until an open department; a chain that reaches
    none hands nothing on: the ticket stays with the department it started from."""

    def test_the_chain_is_followed_to_an_open_department(self) -> None:
        decision = decide("s", table=parse(chain(a="b", b="c")), now=SATURDAY_NOON)
        assert (decision.department, decision.reason) == ("c", "after_hours")
        assert decision.first_response_deadline == SATURDAY_NOON + timedelta(days=1)

    def test_a_closed_department_at_the_end_keeps_nothing_handed_to_it(self) -> None:
        decision = decide("s", table=parse(chain(a="b", b=None)), now=SATURDAY_NOON)
        assert (decision.department, decision.reason) == ("a", "route")
        assert "b closed at Sat 2025-01-04 12:00 Europe/Amsterdam, and hands nothing on" \
               " after hours: a -> b all closed: stays with a" in decision.explanation
        # The target (1d) in a's business hours from its opening on Monday 08:00: 10h on
        # Monday and Tuesday each, 4h on Wednesday, due 12:00 in Amsterdam.
        assert decision.first_response_deadline == datetime(2025, 1, 8, 11, 0, tzinfo=UTC)

    def test_a_longer_chain_ending_closed_keeps_the_first(self) -> None:
        decision = decide("s", table=parse(chain(a="b", b="c", c=None)), now=SATURDAY_NOON)
        assert (decision.department, decision.reason) == ("a", "route")
        assert any(step.endswith("a -> b -> c all closed: stays with a")
                   for step in decision.explanation)

    def test_a_chain_coming_round_keeps_the_first(self) -> None:
        decision = decide("s", table=parse(chain(a="b", b="c", c="b")), now=SATURDAY_NOON)
        assert (decision.department, decision.reason) == ("a", "route")
        assert "a -> b -> c all closed: stays with a" in decision.explanation


class TestAfterHoursToADepartmentWhoseLanesAreMissing:
    """The router could not make them (services/router/missing_lanes.py): handed there,
    the ticket would be dead-lettered. As an overflow, nothing is handed there: the ticket
    stays with the department it started from, whose clock waits, the trace saying why."""

    def test_the_ticket_stays_with_its_own_closed_department(self) -> None:
        decision = decide("s", table=parse(chain(a="c")), now=SATURDAY_NOON,
                          lanes_missing={"c"})
        assert (decision.department, decision.reason) == ("a", "route")
        assert "a closed at Sat 2025-01-04 12:00 Europe/Amsterdam, but c's lanes do not" \
               " exist (the router could not make them): stays with a" in decision.explanation
        assert decision.first_response_deadline == datetime(2025, 1, 8, 11, 0, tzinfo=UTC)
        assert decision.withheld == (routing.Withheld("after_hours", "c"),)

    def test_nor_is_it_handed_past_them_along_the_chain(self) -> None:
        decision = decide("s", table=parse(chain(a="b", b="c")), now=SATURDAY_NOON,
                          lanes_missing={"b"})
        assert (decision.department, decision.reason) == ("a", "route")
        assert any(step.endswith("but b's lanes do not exist (the router could not make"
                                 " them): stays with a") for step in decision.explanation)
        assert decision.withheld == (routing.Withheld("after_hours", "b"),)

    def test_lanes_missing_elsewhere_hand_it_on_as_before(self) -> None:
        decision = decide("s", table=parse(chain(a="c")), now=SATURDAY_NOON,
                          lanes_missing={"b"})
        assert (decision.department, decision.reason) == ("c", "after_hours")
        assert decision.withheld == ()


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

    def test_never_to_a_department_whose_lanes_are_missing(self) -> None:
        """The router could not make them (services/router/missing_lanes.py): handed
        there, the ticket would be dead-lettered, where its own department takes it."""
        decision = decide("general", load=SWAMPED, lanes_missing={"sales_support"})
        assert (decision.department, decision.overflowed_from) == ("customer_care", None)
        assert "customer_care over backlog 120 > 100, but sales_support's lanes do not exist" \
               " (the router could not make them): no overflow" in decision.explanation
        assert decision.withheld == (routing.Withheld("overflow", "sales_support"),)

    def test_the_deadline_follows_the_receiving_department_calendar(self) -> None:
        late = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)  # 17:00 in Amsterdam
        decision = decide("general", load=SWAMPED, now=late)
        # 24 hours of business time: 1h on Monday, 10h each Tuesday and Wednesday, 3h on
        # Thursday, on sales_support's calendar (customer_care has none: it would be 24h).
        assert decision.first_response_deadline == datetime(2025, 1, 9, 10, 0, tzinfo=UTC)
