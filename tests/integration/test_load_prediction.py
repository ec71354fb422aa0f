"""The load the router samples for a predicted first response, read from the real SQL
store (SQLite and PostgreSQL): first responses within the rate window, the oldest open
ticket, and the overflow state that follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core.settings import Settings
from services.router import overflow, routing
from services.router.load import RESPONSE_RATE_WINDOW, LoadWatch
from services.router.store import Dispatch, RoutedTickets

TABLE = routing.RoutingTable(
    "v1", {"potential": routing.Route("potential", "sales_support")}, "customer_care",
    department_policies={
        "sales_support": routing.DepartmentPolicy(overflow_policy=overflow.OverflowPolicy(
            to="customer_care", max_backlog=20,
            max_predicted_first_response=timedelta(hours=2))),
        "customer_care": routing.ALWAYS_OPEN})


def dispatch(ticket_id: str, department: str, at: datetime) -> Dispatch:
    return Dispatch(ticket_id=ticket_id, department=department, segment="potential",
                    priority=3, deadline=at + timedelta(hours=4), steps=[], payload={}, at=at)


async def with_work(routed: RoutedTickets, now: datetime) -> None:
    """sales_support: five tickets routed, one answered 10 minutes ago (within the hour),
    one 2 hours ago (outside it), three open, the oldest routed 40 minutes ago;
    customer_care: one answered within the hour."""
    await routed.record_first_dispatches([
        dispatch("s-1", "sales_support", now - timedelta(hours=3)),
        dispatch("s-2", "sales_support", now - timedelta(minutes=50)),
        dispatch("s-3", "sales_support", now - timedelta(minutes=40)),
        dispatch("s-4", "sales_support", now - timedelta(minutes=30)),
        dispatch("s-5", "sales_support", now - timedelta(minutes=20)),
        dispatch("c-1", "customer_care", now - timedelta(minutes=30))])
    await routed.record_report("s-1", "ticket.responded", now - timedelta(hours=2))
    await routed.record_report("s-2", "ticket.responded", now - timedelta(minutes=10))
    await routed.record_report("c-1", "ticket.resolved", now - timedelta(minutes=5))


class TestMeasuredFromTheStore:
    async def test_first_responses_are_counted_within_the_window(
            self, routed: RoutedTickets) -> None:
        now = datetime.now(UTC)
        await with_work(routed, now)
        assert await routed.first_responses_since(now - RESPONSE_RATE_WINDOW) == {
            "sales_support": 1, "customer_care": 1}

    async def test_the_oldest_open_ticket_is_found_per_department(
            self, routed: RoutedTickets) -> None:
        now = datetime.now(UTC)
        await with_work(routed, now)
        assert await routed.oldest_open() == {"sales_support": now - timedelta(minutes=40)}


class TestSampledPrediction:
    async def test_a_slow_department_overflows_on_its_prediction(
            self, routed: RoutedTickets, database_url: str) -> None:
        await with_work(routed, datetime.now(UTC))
        watch = LoadWatch(Settings(database_url=database_url), routed, lambda: TABLE)
        await watch.sample()
        loads, states = watch.view()
        # 3 open ahead at 1 first response an hour: 3h, over 2h with a backlog of 3 of 20.
        assert loads["sales_support"] == overflow.DepartmentLoad(
            3, None, timedelta(hours=3), "3 open ahead, 1 first responses in the last 1h")
        assert states["sales_support"].overflowing
        # Departments whose overflow does not read a prediction get none.
        assert loads["customer_care"].predicted_first_response is None
