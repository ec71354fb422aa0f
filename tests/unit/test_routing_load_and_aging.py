"""What routing writes for the readers downstream: the predicted first response in the
routing trace, and the aging in force on every routed ticket's record."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pydantic
import pytest

from services.core import durations, envelope, tickets
from services.departments import queue
from services.router import overflow, priority, routing, table_file

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
TABLE = routing.RoutingTable(
    "v1", {"potential": routing.Route("potential", "sales_support")}, "customer_care",
    department_policies={
        "sales_support": routing.DepartmentPolicy(overflow_policy=overflow.OverflowPolicy(
            to="customer_care", max_backlog=20,
            max_predicted_first_response=timedelta(hours=2))),
        "customer_care": routing.ALWAYS_OPEN})
VIEW = {"kind": None, "channel": "web", "language": None, "attributes": {}}


def decide(backlog: int, answered: int) -> routing.RoutingDecision:
    prediction = overflow.predict_first_response(
        backlog, overflow.RecentFirstResponses(answered, timedelta(hours=1)),
        oldest_open_since=None, now=NOW)
    load = {"sales_support": overflow.DepartmentLoad(
        backlog, None, prediction.wait, prediction.basis)}
    return routing.decide("potential", "existing", VIEW, TABLE, now=NOW, load=load)


class TestPredictionInTheTrace:
    def test_a_department_within_its_limits_shows_its_prediction(self) -> None:
        decision = decide(2, 4)
        assert decision.department == "sales_support"
        assert "sales_support: predicted first response 30m (2 open ahead, 4 first" \
            " responses in the last 1h)" in decision.explanation

    def test_an_overflow_on_the_prediction_says_why(self) -> None:
        decision = decide(3, 1)
        assert (decision.department, decision.overflowed_from) \
            == ("customer_care", "sales_support")
        assert decision.explanation[1:3] == (
            "sales_support: predicted first response 3h (3 open ahead, 1 first responses"
            " in the last 1h)",
            "sales_support over predicted first response 3h > 2h: overflow to customer_care")

    def test_no_prediction_no_line(self) -> None:
        decision = routing.decide("potential", "existing", VIEW, TABLE, now=NOW,
                                  load={"sales_support": overflow.DepartmentLoad(2)})
        assert not any("predicted" in step for step in decision.explanation)


def routed(**routing_fields: Any) -> tickets.Routing:
    return tickets.Routing.model_validate({
        "department": "sales_support", "reason": "route", "table_version": "v1",
        "routed_at": NOW.isoformat(), "priority": 4, **routing_fields})


class TestAgingOnTheRecord:
    def test_the_record_says_the_tables_step(self) -> None:
        assert queue.record_aging(routed(priority_aging_seconds=1800)) \
            == priority.Aging(timedelta(minutes=30))

    def test_null_means_aging_off(self) -> None:
        assert queue.record_aging(routed(priority_aging_seconds=None)) == priority.Aging(None)

    def test_a_record_without_the_key_says_nothing(self) -> None:
        assert queue.record_aging(routed()) is None

    def test_a_step_of_zero_is_refused_naming_the_field(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="priority_aging_seconds"):
            routed(priority_aging_seconds=0)

    @pytest.mark.parametrize("seconds", [1e-7, 0.5, 1e308,
                                         durations.LONGEST.total_seconds() + 1])
    def test_a_step_outside_the_tables_durations_is_refused_naming_the_field(
            self, seconds: float) -> None:
        """1e-7 s rounds to no time (a division by zero when ordering), 1e308 s overflows
        a timedelta: either stopped the department's queue at that record."""
        with pytest.raises(pydantic.ValidationError, match="priority_aging_seconds"):
            routed(priority_aging_seconds=seconds)

    @pytest.mark.parametrize("step", [durations.SHORTEST, durations.LONGEST])
    def test_the_tables_shortest_and_longest_steps_age_a_ticket(
            self, step: timedelta) -> None:
        aging = queue.record_aging(routed(priority_aging_seconds=step.total_seconds()))
        assert aging == priority.Aging(step)
        assert priority.effective_priority(4, step, aging) == 3

    @pytest.mark.parametrize(("seconds", "why"), [(1e-7, "too short"), (1e308, "too long")])
    def test_an_unchecked_step_no_ticket_can_age_by_is_refused(
            self, seconds: float, why: str) -> None:
        unchecked = routed().model_copy(update={"priority_aging_seconds": seconds})
        with pytest.raises(queue.UnusableAging, match=f"priority_aging_seconds: {why}"):
            queue.record_aging(unchecked)

    @pytest.mark.parametrize("seconds", [1e-7, 1e308])
    def test_a_lane_record_whose_aging_cannot_be_used_is_unreadable(
            self, seconds: float) -> None:
        """Skipped and committed past by the queue reader, rather than failing its every
        read; the reason names the field, not the record's values."""
        data = routed_data(subject="Secret", body="Secret")
        data["routing"]["priority_aging_seconds"] = seconds
        unreadable = queue.read_record(lane_record(data))
        assert isinstance(unreadable, queue.Unreadable)
        assert (unreadable.topic, unreadable.offset) == ("dept.sales_support.low", 7)
        assert "priority_aging_seconds" in unreadable.reason
        assert "Secret" not in unreadable.reason and str(seconds) not in unreadable.reason

    def test_a_lane_record_naming_a_person_in_a_key_is_unreadable_without_it(self) -> None:
        """The reason goes to the tool's stderr and the log: a key the record's writer
        chose (an attribute's name) is told by its length, never quoted."""
        data = routed_data(subject="s", body="b")
        data["attributes"] = {"jane.doe": [1]}
        unreadable = queue.read_record(lane_record(data))
        assert isinstance(unreadable, queue.Unreadable)
        assert unreadable.reason == (
            "not a routed ticket: attributes.(an unknown name: 8 characters, not shown):"
            " Value error, an attribute is text, a number or true/false")

    def test_a_table_without_priority_aging_ages_by_an_hour(self) -> None:
        table = table_file.parse("fallback_department: general\nroutes:\n"
                                 "  - {segment: a, department: general}\n", "routing.yaml")
        assert table.aging == priority.Aging(timedelta(hours=1))

    def test_it_survives_the_trip_through_json(self) -> None:
        record = routed(priority_aging_seconds=None)
        again = tickets.Routing.model_validate_json(record.model_dump_json())
        assert queue.record_aging(again) == priority.Aging(None)


def routed_data(*, subject: str, body: str) -> dict[str, Any]:
    """A routed ticket's data, as a lane record holds it."""
    ticket = tickets.Ticket(ticket_id="t-1", customer_id="c-1", subject=subject, body=body,
                            channel="web", received_at=NOW)
    return ticket.with_segmentation(tickets.Segmentation(
        segment="potential", rule="r", rules_version="r1", customer_known=True,
        tier="existing")).routed_data(routed())


def lane_record(data: dict[str, Any]) -> SimpleNamespace:
    """A record of sales_support's low lane holding `data`, as the queue reader reads it."""
    event = envelope.Event(type="ticket.routed", source="/test", ticket_id="t-1",
                           correlation_id="c-1", data=data)
    return SimpleNamespace(topic="dept.sales_support.low", partition=0, offset=7,
                           headers=envelope.to_headers(event), value=envelope.to_value(event))
