"""What routing writes for the readers downstream: the predicted first response in the
routing trace, and the aging in force on every routed ticket's record."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from services.core import tickets
from services.departments import queue
from services.router import overflow, priority, routing

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

    def test_it_survives_the_trip_through_json(self) -> None:
        record = routed(priority_aging_seconds=None)
        again = tickets.Routing.model_validate_json(record.model_dump_json())
        assert queue.record_aging(again) == priority.Aging(None)
