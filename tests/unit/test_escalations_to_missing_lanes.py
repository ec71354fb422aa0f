"""The clock watch's escalations to a department whose lanes the router could not make
(services/router/missing_lanes.py), run with recording fakes wired by the router's own
bootstrap: the escalation waits, checked again CHECK_AGAIN_AFTER_FAILURE later, but the
warnings owed with it go out at once; the check logs the tickets waiting once a
department, with their count, not a line a ticket."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.core import events, topics
from services.core.events import TicketEventType
from services.router import clock_watch, missing_lanes, routing, service
from tests.routing_tables import routing_table_file
from tests.unit.router_fakes import Wired, wired
from tests.unit.test_router_use_cases import ADMIN, NOW, routed_ticket, segmented

FIRST = NOW + timedelta(hours=4)  # public_sector's first response, escalated to key_accounts


def key_accounts_missing() -> missing_lanes.MissingLanes:
    lanes = missing_lanes.MissingLanes()
    made = {"key_accounts": topics.lane_topics("key_accounts")}
    lanes.found(made["key_accounts"], made)
    return lanes


def failed_checks(department: str = "public_sector") -> float:
    return REGISTRY.get_sample_value("routing_router_clock_checks_failed_total",
                                     {"department": department}) or 0.0


async def watch(router: Wired, at: datetime) -> int:
    return await service.escalate_due(  # through the router's publisher: it refuses
        router.routed, router.router.publisher, table=router.router.table.current,
        queue_for=router.router.queue_for, now=at)


def notices(router: Wired) -> list[tuple[str, str | None, str]]:
    return [(e.type, e.target, e.department) for e in (
        events.read(item.event) for item in router.publisher.published
        if item.topic == topics.EVENTS)]


class TestWarningsOwedWithAnEscalationThatWaits:
    """public_sector's ticket, resolution 8h (warned at 75%: 15:00), first seen at 15:30,
    its first response breached at 13:00: the resolution's warning and the first
    response's escalation to key_accounts are owed together; key_accounts' lanes are
    missing. Measured before: the whole notice failed, so the warning was held back with
    the escalation, every CHECK_AGAIN_AFTER_FAILURE, for as long as the lanes were."""

    SEEN = NOW + timedelta(hours=6, minutes=30)

    def router(self, tmp_path: Path, lanes: missing_lanes.MissingLanes) -> Wired:
        router = wired(routing_table_file(
            tmp_path, warning_share=0.75,
            routes={"public_sector": {"resolution_target": "8h"}}), lanes)
        routed_ticket(router)
        return router

    async def test_the_warning_goes_out_the_escalation_waits(self, tmp_path: Path) -> None:
        failed_before = failed_checks()
        router = self.router(tmp_path, key_accounts_missing())
        assert await watch(router, self.SEEN) == 1
        assert notices(router) == [
            (TicketEventType.TARGET_WARNING, "resolution", "public_sector")]
        row = router.routed.rows["t-1"]
        assert row.department == "public_sector" and not row.escalated
        assert row.next_clock_check == self.SEEN + clock_watch.CHECK_AGAIN_AFTER_FAILURE
        assert failed_checks() == failed_before + 1
        assert await watch(router, self.SEEN + timedelta(seconds=5)) == 0  # waits

    async def test_once_the_lanes_are_made_the_escalation_alone_follows(
            self, tmp_path: Path) -> None:
        lanes = key_accounts_missing()
        router = self.router(tmp_path, lanes)
        await watch(router, self.SEEN)
        lanes.found(set(), {"key_accounts": topics.lane_topics("key_accounts")})
        later = self.SEEN + clock_watch.CHECK_AGAIN_AFTER_FAILURE
        assert await watch(router, later) == 1
        assert notices(router) == [
            (TicketEventType.TARGET_WARNING, "resolution", "public_sector"),
            (TicketEventType.ESCALATED, "first_response", "key_accounts")]
        assert router.routed.rows["t-1"].department == "key_accounts"

    async def test_a_transfer_asked_meanwhile_sends_the_warning_first(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A hand-over sends what is owed first (clock_watch.send_owed): the warning, not
        the escalation waiting, logged by its one ticket's id; the transfer then goes
        through."""
        router = self.router(tmp_path, key_accounts_missing())
        with caplog.at_level(logging.ERROR):
            answer = await service.transfer(
                "t-1", to_department="customer_care", reason="theirs",
                from_department=None, principal=ADMIN, routed=router.routed,
                held=router.held, publisher=router.router.publisher,
                table=router.router.table.current, queue_for=router.router.queue_for,
                now=self.SEEN)
        assert [getattr(record, "ticket_id", None) for record in caplog.records
                if record.levelno >= logging.ERROR] == ["t-1"]
        assert answer == service.Transferred("t-1", "customer_care")
        assert notices(router)[0] == (
            TicketEventType.TARGET_WARNING, "resolution", "public_sector")
        assert TicketEventType.ESCALATED not in [notice[0] for notice in notices(router)]


def routed_tickets(router: Wired, count: int) -> Sequence[str]:
    """`count` government tickets routed to public_sector at NOW."""
    table: routing.RoutingTable = router.router.table.current
    for number in range(count):
        first = service.route(segmented(f"t-{number}"), table=table,
                              load=router.router.load, now=NOW, event_id=f"e-{number}",
                              correlation_id=f"t-{number}")
        router.routed.add(first.dispatch)
    return [f"t-{number}" for number in range(count)]


class TestTicketsWaitingForOneDepartment:
    async def test_are_logged_once_a_check_with_their_count_and_each_counted(
            self, caplog: pytest.LogCaptureFixture) -> None:
        """Measured before: an ERROR a ticket, every CHECK_AGAIN_AFTER_FAILURE (10,000
        tickets waiting: 10,000 lines a quarter of an hour)."""
        router = wired(lanes=key_accounts_missing())
        waiting = routed_tickets(router, 3)
        failed_before = failed_checks()
        with caplog.at_level(logging.ERROR):
            assert await watch(router, FIRST + timedelta(minutes=1)) == 0
        [logged] = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert (logged.escalated_to, logged.tickets) == (  # type: ignore[attr-defined]
            "key_accounts", 3)
        assert logged.reason == (  # type: ignore[attr-defined]
            "department key_accounts's lanes do not exist and the router could not make"
            f" them ({', '.join(topics.lane_topics('key_accounts'))}): nothing is handed"
            " on to it until they do")
        assert not hasattr(logged, "ticket_id")
        assert failed_checks() == failed_before + 3
        assert all(router.routed.rows[ticket_id].department == "public_sector"
                   and router.routed.rows[ticket_id].next_clock_check
                   == FIRST + timedelta(minutes=1) + clock_watch.CHECK_AGAIN_AFTER_FAILURE
                   for ticket_id in waiting)
