"""A ticket handed on (escalation, transfer): the same typed ticket with a new department,
its deadline kept, published under the correlation id it came with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core import events, tickets, topics
from services.router import dispatch, priority

RECEIVED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DEADLINE = RECEIVED + timedelta(hours=4)
LATER = RECEIVED + timedelta(hours=5)


def routed() -> tickets.RoutedTicket:
    ticket = tickets.Ticket(ticket_id="t-1", customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=RECEIVED)
    segmented = ticket.with_segmentation(tickets.Segmentation(
        segment="government", rule="gov", rules_version="r1", customer_known=True,
        tier="existing"))
    return segmented.with_routing(tickets.Routing(
        department="public_sector", reason="route", table_version="t1", routed_at=RECEIVED,
        queue="dept.public_sector.high", priority=2, first_response_deadline=DEADLINE,
        explanation=["segment government: route to public_sector"]))


class TestHandedTo:
    def test_the_department_changes_and_the_deadline_stays(self) -> None:
        handed = routed().handed_to("key_accounts", reason="escalation", at=LATER,
                                    queue="dept.key_accounts.high")
        assert (handed.routing.department, handed.routing.reason, handed.routing.routed_at,
                handed.routing.queue) == ("key_accounts", "escalation", LATER,
                                          "dept.key_accounts.high")
        assert handed.routing.first_response_deadline == DEADLINE
        assert handed.received_at == RECEIVED
        assert handed.segmentation == routed().segmentation

    def test_the_ticket_handed_on_reads_back_as_the_same_model(self) -> None:
        handed = routed().handed_to("key_accounts", reason="transfer", at=LATER,
                                    queue="dept.key_accounts")
        assert tickets.RoutedTicket.model_validate(handed.model_dump(mode="json")) == handed


class TestRedispatch:
    def test_both_records_carry_the_tickets_correlation_id(self) -> None:
        handed, outputs = dispatch.redispatch(
            routed(), department="key_accounts", reason="transfer",
            from_department="public_sector", event_type=events.TicketEventType.TRANSFERRED,
            now=LATER, correlation_id="platform-corr-7", queue_for=priority.queue_for)
        queue, lifecycle = outputs
        assert queue.topic == "dept.key_accounts.high"  # priority 2: the high lane
        assert lifecycle.topic == topics.EVENTS
        assert [o.event.correlation_id for o in outputs] == ["platform-corr-7"] * 2
        assert queue.event.data == handed.model_dump(mode="json")
        assert handed.routing.queue == queue.topic
        assert lifecycle.event.data["from_department"] == "public_sector"


class TestExplanation:
    def test_a_record_routed_before_the_rename_reads_its_trace_as_the_explanation(
            self) -> None:
        written = routed().model_dump(mode="json")
        written["routing"]["trace"] = written["routing"].pop("explanation")
        assert tickets.RoutedTicket.model_validate(written).routing.explanation == [
            "segment government: route to public_sector"]
