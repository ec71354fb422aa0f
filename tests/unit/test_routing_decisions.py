"""Routing decisions: a segment's route, its service level, refinements, the trace, the
table's departments and what refinements read of a ticket."""

from datetime import timedelta
from pathlib import Path

from services.core import tickets
from services.router import routing, table_file
from tests.unit.routing_tables import (
    COMPLAINT,
    MONDAY_NOON,
    ROUTES,
    SATURDAY_NOON,
    SIMPLE,
    TABLE,
    TICKET,
    decide,
    parse,
)


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
        assert "refinement 'phone' failed (NOT_FOUND); skipped" in decision.explanation

    def test_a_refinement_cel_raises_on_for_a_tickets_values_is_skipped(self) -> None:
        # CEL raises, rather than answer, on a map keyed by two equal values (the probes
        # have neither attribute): the refinement fails on this ticket as on any data it
        # cannot decide, and the route stands.
        table = parse(ROUTES + "  - segment: c\n    department: d\n    refinements:\n"
                      "      - name: pair\n        department: e\n"
                      "        when: \"has(ticket.attributes.a) && has(ticket.attributes.b)"
                      " && {ticket.attributes.a: 1, ticket.attributes.b: 2}.size() == 2\"\n")
        same = {**TICKET, "attributes": {"a": "v", "b": "v"}}
        decision = decide("c", ticket=same, table=table)
        assert (decision.department, decision.reason) == ("d", "route")
        assert "refinement 'pair' failed (ALREADY_EXISTS); skipped" in decision.explanation
        other = decide("c", ticket={**TICKET, "attributes": {"a": "v", "b": "w"}}, table=table)
        assert (other.department, other.reason) == ("e", "refinement")

    def test_other_failures_on_the_largest_ticket_are_left_to_run_time(self) -> None:
        # Every attribute compared with a number fails on the largest probe's text: only
        # CEL's budget is checked on it, so the table loads and the refinement holds on
        # a ticket whose attributes are numbers.
        table = parse(ROUTES + "  - segment: c\n    department: d\n    refinements:\n"
                      "      - name: big\n        department: e\n"
                      "        when: ticket.attributes.exists(k, ticket.attributes[k] > 100)\n")
        decision = decide("c", ticket={**TICKET, "attributes": {"n": 500}}, table=table)
        assert (decision.department, decision.reason) == ("e", "refinement")

    def test_the_trace_of_a_failed_refinement_does_not_quote_the_ticket(self) -> None:
        # CEL's own message names the key it missed; a ticket's lane carries the trace.
        decision = decide("key_accounts", ticket={"kind": "question"})
        assert not any('"channel"' in step for step in decision.explanation)


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

    def test_overflow_policies(self) -> None:
        assert list(TABLE.overflow_policies) == ["customer_care"]

    def test_it_lacks_a_department_it_names_nowhere(self) -> None:
        """A route's, a department's under `departments:` and the fallback are its own;
        one it names nowhere (removed since) it lacks, as one of a plain table."""
        assert not any(TABLE.lacks(department) for department in (
            "public_sector", "sales_support", "customer_care"))
        assert TABLE.lacks("nobody")
        assert not SIMPLE.lacks("general") and SIMPLE.lacks("sales_support")

    def test_the_demo_file_is_valid(self) -> None:
        table = table_file.load(Path(__file__).parents[2] / "config" / "routing.yaml")
        assert table.fallback_department == "customer_care"
        decision = routing.decide("key_accounts", "most_valuable", COMPLAINT, table,
                                  now=MONDAY_NOON)
        assert (decision.department, decision.priority) == ("key_accounts", 1)


class TestViewOf:
    def test_a_ticket_gives_what_refinements_read(self) -> None:
        ticket = tickets.Ticket(ticket_id="t", customer_id="c", subject="s", body="b",
                                channel="chat", kind="complaint", attributes={"order": "1"},
                                received_at=MONDAY_NOON)
        assert routing.view_of(ticket) == {"kind": "complaint", "channel": "chat",
                                           "language": None, "attributes": {"order": "1"}}
