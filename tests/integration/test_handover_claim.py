"""A hand-over's claim on a routed ticket in a real SQL store (SQLite and PostgreSQL):
one claim at a time, only on the ticket as the claimant read it (department, priority,
last change) and open; it expires, is released by its holder only, and the hand-over's
record ends it, keeping a priority changed since the claimant read the ticket. A
priority change takes the same claim: a transfer meanwhile is refused, and the reverse."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import access, kafka, tickets
from services.core.events import TicketEventType
from services.router import ports, priority, service, table_file
from services.router.held_store import HeldTickets
from services.router.models import RoutedTicketRow
from services.router.service import verdicts
from services.router.store import Dispatch, RoutedTickets
from tests.conftest import TEST_ROUTING_TABLE

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HOLD = timedelta(minutes=5)


@pytest.fixture
async def routed(sessions: async_sessionmaker[AsyncSession]) -> RoutedTickets:
    store = RoutedTickets(sessions)
    await store.record_first_dispatches([Dispatch(
        ticket_id="t-1", department="care", segment="standard", priority=3,
        deadline=NOW + timedelta(hours=1), steps=[], payload={}, at=NOW)])
    return store


def copy_at(priority: int) -> tickets.RoutedTicket:
    """The routed ticket's copy, as a hand-over builds it from the ticket it read."""
    ticket = tickets.Ticket(ticket_id="t-1", customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=NOW, platform="helpdesk")
    return ticket.with_segmentation(tickets.Segmentation(
        segment="standard", rule="r", rules_version="r1", customer_known=True,
        tier="existing")).with_routing(tickets.Routing(
            department="billing", reason="transfer", table_version="v1", routed_at=NOW,
            priority=priority))


async def read(routed: RoutedTickets) -> RoutedTicketRow:
    row = await routed.get("t-1")
    assert row is not None
    return row


async def test_of_hand_overs_racing_exactly_one_claims_the_ticket(
        routed: RoutedTickets) -> None:
    row = await read(routed)
    won = await asyncio.gather(*(routed.claim_handover(row, hold=HOLD) for _ in range(6)))
    assert sum(claim is not None for claim in won) == 1


async def test_a_claim_needs_the_ticket_as_read_and_open(routed: RoutedTickets) -> None:
    before = await read(routed)
    assert await routed.record_report("t-1", TicketEventType.PICKED_UP, NOW)
    assert await routed.claim_handover(before, hold=HOLD) is None  # a report since
    claim = await routed.claim_handover(await read(routed), hold=HOLD)
    assert claim is not None
    # Its record ends the claim: only the resolution refuses the claims below.
    await routed.record_handover("t-1", department="billing", steps=[], ticket=None,
                                 now=NOW + timedelta(minutes=1), claim=claim)
    moved = await read(routed)
    assert await routed.record_report("t-1", TicketEventType.RESOLVED, NOW)
    assert await routed.claim_handover(moved, hold=HOLD) is None  # closed (and changed)
    assert await routed.claim_handover(await read(routed), hold=HOLD) is None  # closed


async def test_a_claim_expires_is_released_by_its_holder_and_ends_with_its_record(
        routed: RoutedTickets) -> None:
    row = await read(routed)
    expired = await routed.claim_handover(row, hold=timedelta(0))  # its holder died
    assert expired is not None
    taken = await routed.claim_handover(row, hold=HOLD)  # taken over
    assert taken is not None and taken != expired
    await routed.release_handover("t-1", expired)  # the late holder's: no effect
    assert await routed.claim_handover(row, hold=HOLD) is None
    await routed.record_handover("t-1", department="billing", steps=[], ticket=None,
                                 now=NOW + timedelta(minutes=1), claim=taken)
    after = await read(routed)
    assert (after.department, after.handover_until) == ("billing", None)
    assert await routed.claim_handover(after, hold=HOLD) is not None


async def test_a_record_tried_again_applies_only_what_its_first_attempt_did_not(
        routed: RoutedTickets) -> None:
    """A record whose first attempt was committed though its caller saw an error (a
    connection dropped on COMMIT) is tried again: its step in the trace says so, and
    nothing is applied twice (the trace's step, the escalation mark); a record tried
    again whose first attempt was not committed applies, even once another hand-over
    has claimed the ticket (its publish went out)."""
    claim = await routed.claim_handover(await read(routed), hold=HOLD)
    assert claim is not None
    step = {"step": "escalated", "to": "billing"}
    for again in (False, True):  # committed, then tried again
        await routed.record_handover("t-1", department="billing", steps=[step],
                                     ticket=None, now=NOW + timedelta(minutes=1),
                                     claim=claim, escalated=True, again=again)
    after = await read(routed)
    assert (after.department, after.trace, after.escalated, after.handover_until) == (
        "billing", [step], True, None)
    change = {"step": "priority_changed"}
    # Its first attempt not committed, and its claim taken over meanwhile.
    changing = await routed.claim_handover(await read(routed), hold=timedelta(0))
    assert changing is not None
    taken = await routed.claim_handover(await read(routed), hold=HOLD)
    assert taken is not None
    await routed.record_priority_change("t-1", priority=1, step=change,
                                        move_clocks=lambda clocks, _department: clocks,
                                        claim=changing, again=True)
    after = await read(routed)
    assert (after.priority, after.trace, after.handover_until) == (1, [step, change], taken)


async def test_a_claim_needs_the_priority_as_read(routed: RoutedTickets) -> None:
    """A priority change does not touch the last change (the backlog's age): a hand-over
    that read the ticket before it would publish to the old priority's lane."""
    before = await read(routed)
    changing = await routed.claim_handover(before, hold=HOLD)
    assert changing is not None
    await routed.record_priority_change("t-1", priority=1, step={"step": "priority_changed"},
                                        move_clocks=lambda clocks, _department: clocks,
                                        claim=changing)
    assert (await read(routed)).handover_until is None  # its record ended the claim
    assert await routed.claim_handover(before, hold=HOLD) is None
    assert await routed.claim_handover(await read(routed), hold=HOLD) is not None


async def test_a_claim_needs_no_priority_change_since_even_one_changed_back(
        routed: RoutedTickets) -> None:
    """Two changes, 3 -> 1 -> 3, between a hand-over's read and its claim: the priority
    is as read, but the clocks were rebased twice since, and the hand-over would
    publish the deadlines it read."""
    before = await read(routed)
    for new_priority in (1, 3):
        changing = await routed.claim_handover(await read(routed), hold=HOLD)
        assert changing is not None
        await routed.record_priority_change(
            "t-1", priority=new_priority, step={"step": "priority_changed"},
            move_clocks=lambda clocks, _department: clocks, claim=changing)
    after = await read(routed)
    assert (after.priority, after.updated_at) == (before.priority, before.updated_at)
    assert await routed.claim_handover(before, hold=HOLD) is None
    assert await routed.claim_handover(after, hold=HOLD) is not None


async def test_a_hand_over_recorded_after_a_priority_change_keeps_the_new_priority(
        routed: RoutedTickets) -> None:
    """A transfer's claim expired during its publish, and a priority change claimed the
    ticket and was recorded meanwhile: the transfer's late record, built from the
    ticket at priority 3, keeps priority 1 on the copy a later hand-over joins the lane
    of."""
    claim = await routed.claim_handover(await read(routed), hold=timedelta(0))
    assert claim is not None
    changing = await routed.claim_handover(await read(routed), hold=HOLD)
    assert changing is not None
    await routed.record_priority_change("t-1", priority=1, step={"step": "priority_changed"},
                                        move_clocks=lambda clocks, _department: clocks,
                                        claim=changing)
    await routed.record_handover("t-1", department="billing", steps=[], ticket=copy_at(3),
                                 now=NOW + timedelta(minutes=1), claim=claim)
    after = await read(routed)
    assert (after.department, after.priority) == ("billing", 1)
    assert after.payload["routing"]["priority"] == 1
    assert tickets.RoutedTicket.model_validate(after.payload).routing.department == "billing"


ADMIN = access.Principal("cred-admin", access.Role.ADMIN, None)


class HeldPublisher:
    """Holds its first publish until `let_go` is set (`holding` says it began); what
    it published, by topic."""

    def __init__(self) -> None:
        self.holding, self.let_go = asyncio.Event(), asyncio.Event()
        self.topics: list[str] = []

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        if not self.holding.is_set():
            self.holding.set()
            await self.let_go.wait()
        self.topics.extend(output.topic for output in kafka.records(outputs))


Act = Callable[[RoutedTickets, ports.Publisher], Coroutine[Any, Any, object]]


class TestAPriorityChangeAndAHandOverAtOnce:
    """Through the use cases: whichever of a priority change and a transfer claims the
    ticket first publishes and records; the other, while that publish is held, is
    refused as `handover_in_flight` and publishes nothing."""

    @pytest.fixture
    async def ticket(self, sessions: async_sessionmaker[AsyncSession]) -> RoutedTickets:
        """A government ticket routed to public_sector at priority 2 (the high lane),
        with its copy."""
        table = table_file.load(TEST_ROUTING_TABLE)
        ticket = tickets.Ticket(ticket_id="t-2", customer_id="c-1", subject="s", body="b",
                                channel="web", received_at=NOW, platform="helpdesk")
        first = service.route(ticket.with_segmentation(tickets.Segmentation(
            segment="government", rule="gov", rules_version="r1", customer_known=True,
            tier="existing")), table=table, load=ports.no_load, now=NOW, event_id="e-1",
            correlation_id="corr-1")
        store = RoutedTickets(sessions)
        await store.record_first_dispatches([first.dispatch])
        self.held = HeldTickets(sessions)  # the test's instance (pytest binds it)
        return store

    async def change(self, routed: RoutedTickets,
                     publisher: ports.Publisher) -> service.Reprioritised | service.Refused:
        return await service.change_priority(
            "t-2", priority=4, reason="outage", principal=ADMIN, routed=routed,
            held=self.held, publisher=publisher, table=table_file.load(TEST_ROUTING_TABLE),
            now=NOW + timedelta(minutes=10))

    async def transfer(self, routed: RoutedTickets,
                       publisher: ports.Publisher) -> service.Transferred | service.Refused:
        return await service.transfer(
            "t-2", to_department="business_desk", reason="r", from_department=None,
            principal=ADMIN, routed=routed, held=self.held, publisher=publisher,
            table=table_file.load(TEST_ROUTING_TABLE), queue_for=priority.queue_for,
            now=NOW + timedelta(minutes=10))

    @staticmethod
    async def one_during_the_other(first: Act, second: Act, routed: RoutedTickets,
                                   publisher: HeldPublisher) -> tuple[object, object]:
        """`second` while `first`'s publish is held; both outcomes."""
        running = asyncio.create_task(first(routed, publisher))
        await publisher.holding.wait()
        try:
            during = await second(routed, publisher)
        finally:
            publisher.let_go.set()  # a failed act leaves nothing held
        return await running, during

    async def test_a_transfer_during_a_priority_change_is_refused(
            self, ticket: RoutedTickets) -> None:
        publisher = HeldPublisher()
        changed, transferred = await self.one_during_the_other(
            self.change, self.transfer, ticket, publisher)
        assert isinstance(changed, service.Reprioritised)
        assert transferred == verdicts.HANDOVER_IN_FLIGHT
        row = await ticket.get("t-2")
        assert row is not None
        assert (row.department, row.priority, row.handover_until) == ("public_sector", 4, None)
        assert publisher.topics == ["tickets.events"]  # the priority change only

        # Once recorded, a transfer takes the new priority's lane (low, not high).
        assert isinstance(await self.transfer(ticket, publisher), service.Transferred)
        assert publisher.topics[1:] == [priority.queue_for("business_desk", 4),
                                        "tickets.events"]

    async def test_a_priority_change_during_a_transfer_is_refused(
            self, ticket: RoutedTickets) -> None:
        publisher = HeldPublisher()
        transferred, changed = await self.one_during_the_other(
            self.transfer, self.change, ticket, publisher)
        assert isinstance(transferred, service.Transferred)
        assert changed == verdicts.HANDOVER_IN_FLIGHT
        row = await ticket.get("t-2")
        assert row is not None
        assert (row.department, row.priority, row.handover_until) == ("business_desk", 2, None)
        assert publisher.topics == [priority.queue_for("business_desk", 2), "tickets.events"]
