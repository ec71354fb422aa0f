"""`POST /v1/tickets/{id}/priority` on the real SQL store (SQLite and PostgreSQL) and the
real broker: the ticket takes the routing table's targets for its new priority, its
clocks keep the time spent and paused, and `ticket.priority_changed` is published with
the new deadlines. Only the router's tickets API runs (no pipeline stage)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core import events, topics
from services.core.credentials import Credentials
from services.core.events import TicketEventType
from services.router import service_clocks, tickets_api
from services.router.store import RoutedTickets
from tests import credentials
from tests.conftest import read_topic
from tests.router_apis import routed_ticket, router_apis

DEPARTMENT = "customer_care"
TABLE = """\
fallback_department: customer_care
priority_targets:
  1: {first_response_target: 1h, resolution_target: 8h}
routes:
  - {segment: standard, department: customer_care}
departments:
  customer_care: {}
  business_desk: {}
"""
@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    keys: Credentials
    bootstrap: str

    async def as_role(self, role: str, subject: str | None = None) -> dict[str, str]:
        return await credentials.headers_of(self.keys, role, subject)

    async def routed_ticket(self, *, priority: int = 3,
                            spent: timedelta) -> tuple[str, datetime]:
        return await routed_ticket(self.routed, DEPARTMENT, spent=spent, priority=priority)

    async def report(self, ticket_id: str, event_type: TicketEventType,
                     at: datetime) -> None:
        assert await self.routed.record_report(
            ticket_id, event_type, at, move_clocks=lambda clocks, _department:
            service_clocks.reported(clocks, event_type, at, None))

    async def change(self, ticket_id: str, headers: dict[str, str],
                     **body: Any) -> httpx.Response:
        return await self.client.post(f"/v1/tickets/{ticket_id}/priority",
                                      json={"reason": "outage at the customer", **body},
                                      headers=headers)


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Router]:
    async with router_apis(database_url, kafka_bootstrap, tmp_path, tickets_api.api,
                           table=TABLE) as apis:
        yield Router(apis.client, apis.routed, apis.credentials, kafka_bootstrap)


async def published(router: Router, ticket_id: str) -> list[events.TicketEvent]:
    """The ticket's priority_changed events, as the pipeline reads them (trusted only
    from the router)."""
    found = await read_topic(router.bootstrap, topics.EVENTS, until=1, keep=lambda event: (
        event.ticket_id == ticket_id and event.type == TicketEventType.PRIORITY_CHANGED))
    return [events.read(event) for event, _record in found]


class TestRecomputedDeadlines:
    async def test_the_new_targets_count_from_routing_keeping_the_time_spent(
            self, router: Router) -> None:
        ticket_id, routed_at = await router.routed_ticket(spent=timedelta(minutes=30))
        answer = await router.change(ticket_id, await router.as_role("department", DEPARTMENT),
                                     priority=1)
        assert answer.status_code == 200, answer.text

        # Half an hour spent of the new 1h target: due an hour after routing, not four;
        # the resolution clock takes 8h, the next-response target (not given) stays.
        row = await router.routed.get(ticket_id)
        assert row is not None and row.priority == 1
        assert row.payload["routing"]["priority"] == 1  # a later hand-over's lane
        clocks = service_clocks.from_json(row.service_clocks or {})
        assert clocks.targets == service_clocks.Targets(
            timedelta(hours=1), timedelta(hours=2), timedelta(hours=8))
        assert _utc(row.updated_at) == routed_at  # it has not waited any less
        assert clocks.deadlines() == {"first_response": routed_at + timedelta(hours=1),
                                      "resolution": routed_at + timedelta(hours=8)}
        assert _utc(row.first_response_deadline) == routed_at + timedelta(hours=1)
        assert answer.json() == {"ticket_id": ticket_id, "priority": 1, "deadlines": {
            target: deadline.isoformat() for target, deadline in clocks.deadlines().items()}}
        step = row.trace[-1]
        assert (step["step"], step["from"], step["to"], step["reason"]) == (
            "priority_changed", 3, 1, "outage at the customer")

        [event] = await published(router, ticket_id)
        assert (event.priority, event.department) == (1, DEPARTMENT)
        assert event.deadlines == clocks.deadlines() and event.paused is False

    async def test_a_paused_clock_stays_paused_and_keeps_its_pause(
            self, router: Router) -> None:
        ticket_id, routed_at = await router.routed_ticket(spent=timedelta(minutes=40))
        waiting_at = routed_at + timedelta(minutes=10)
        await router.report(ticket_id, TicketEventType.WAITING_ON_CUSTOMER, waiting_at)

        answer = await router.change(ticket_id, await router.as_role("admin"), priority=1)
        assert answer.status_code == 200, answer.text
        assert answer.json()["deadlines"]["first_response"] is None  # still paused

        replied_at = datetime.now(UTC)
        await router.report(ticket_id, TicketEventType.CUSTOMER_REPLIED, replied_at)
        row = await router.routed.get(ticket_id)
        assert row is not None
        clocks = service_clocks.from_json(row.service_clocks or {})
        # Ten minutes spent before the pause; fifty left of the new hour after the reply.
        assert clocks.deadlines()["first_response"] == replied_at + timedelta(minutes=50)
        first = clocks.current("first_response")
        assert first is not None
        assert first.paused_seconds == pytest.approx((replied_at - waiting_at).total_seconds())
        [event] = await published(router, ticket_id)
        assert event.deadlines is not None and event.deadlines["first_response"] is None
        assert event.paused is True

    async def test_a_priority_the_table_gives_no_targets_for_keeps_the_deadlines(
            self, router: Router) -> None:
        ticket_id, _ = await router.routed_ticket(spent=timedelta(minutes=30))
        before = await router.routed.get(ticket_id)
        assert before is not None
        answer = await router.change(ticket_id, await router.as_role("admin"), priority=5)
        assert answer.status_code == 200, answer.text
        after = await router.routed.get(ticket_id)
        assert after is not None and after.priority == 5
        assert service_clocks.from_json(after.service_clocks or {}).deadlines() == \
            service_clocks.from_json(before.service_clocks or {}).deadlines()


class TestRefused:
    async def test_another_department_is_403_and_nothing_changes(
            self, router: Router) -> None:
        ticket_id, _ = await router.routed_ticket(spent=timedelta(minutes=5))
        answer = await router.change(ticket_id, await router.as_role("department",
                                                                     "business_desk"),
                                     priority=1)
        assert answer.status_code == 403, answer.text
        row = await router.routed.get(ticket_id)
        assert row is not None and row.priority == 3

    async def test_an_unknown_ticket_is_404(self, router: Router) -> None:
        answer = await router.change("no-such-ticket", await router.as_role("admin"),
                                     priority=1)
        assert answer.status_code == 404, answer.text

    async def test_the_same_priority_is_409(self, router: Router) -> None:
        ticket_id, _ = await router.routed_ticket(priority=2, spent=timedelta(minutes=5))
        answer = await router.change(ticket_id, await router.as_role("admin"), priority=2)
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] == "same_priority"

    @pytest.mark.parametrize(("body", "field"), [
        ({"priority": 6}, "priority"), ({"priority": "1"}, "priority"),
        ({"priority": 1, "reason": ""}, "reason"), ({"priority": 1, "reason": " \t "}, "reason"),
        ({"reason": "x"}, "priority"),
        ({"priority": 1, "reason": "a\u0000b"}, "reason")])
    async def test_bad_input_is_422_naming_the_field(self, router: Router,
                                                     body: dict[str, Any], field: str) -> None:
        ticket_id, _ = await router.routed_ticket(spent=timedelta(minutes=5))
        answer = await router.client.post(f"/v1/tickets/{ticket_id}/priority",
                                          json={"reason": "r", **body},
                                          headers=await router.as_role("admin"))
        assert answer.status_code == 422, answer.text
        assert [error["field"] for error in answer.json()["fields"]] == [f"body.{field}"]


class TestDuringAHandOver:
    async def test_a_ticket_a_hand_over_holds_is_409_and_keeps_its_priority(
            self, router: Router) -> None:
        """A transfer claimed the ticket and is publishing it, to be recorded from the
        ticket as it read it: a priority change meanwhile would be published for the
        department it leaves, and lost from the ticket's copy. It is refused as a
        transfer racing a hand-over is; once the hand-over is recorded, it goes
        through."""
        ticket_id, _ = await router.routed_ticket(priority=2, spent=timedelta(minutes=5))
        held = await router.routed.get(ticket_id)
        assert held is not None
        claim = await router.routed.claim_handover(held, hold=timedelta(minutes=5))
        assert claim is not None

        answer = await router.change(ticket_id, await router.as_role("department",
                                                                     DEPARTMENT),
                                     priority=5)
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] == "handover_in_flight"
        row = await router.routed.get(ticket_id)
        assert row is not None and row.priority == 2
        assert row.payload["routing"]["priority"] == 2
        assert [step["step"] for step in row.trace if step.get("step") == "priority_changed"] \
            == []

        await router.routed.record_handover(ticket_id, department="business_desk", steps=[],
                                            ticket=None, now=datetime.now(UTC), claim=claim)
        answer = await router.change(ticket_id, await router.as_role("department",
                                                                     "business_desk"),
                                     priority=5)
        assert answer.status_code == 200, answer.text
        [event] = await published(router, ticket_id)
        assert (event.priority, event.department) == (5, "business_desk")


def _utc(moment: datetime | None) -> datetime:
    assert moment is not None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
