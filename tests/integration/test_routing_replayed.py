"""A ticket's routing replayed after its state was written (exactly once: the batch's
Kafka transaction aborted, so its records were never read), on the real SQL store
(SQLite and PostgreSQL): the ticket as stored is published again, where the store says
it is, and nothing is written, so what was reported or handed over in between stands (a
report followed then is not followed twice; after a transfer only the lifecycle event
goes, the transfer's queue has the ticket)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import envelope, events, faults, kafka, tickets, topics
from services.core.events import TicketEvent, TicketEventType
from services.core.outage import StoreOutage
from services.router import ports, priority, routing, service, service_clocks, worker
from services.router.event_follower import FollowTicketEvent
from services.router.models import RoutedTicketRow
from services.router.store import Dispatch, KeptNotWritten, RoutedBefore, RoutedTickets
from tests.integration.stages.stage_records import TABLE, segmented_event
from tests.unit.test_outage import as_sqlalchemy_raises


async def route_batch(stage: worker.RouteTicket,
                      *batch: envelope.Event) -> list[kafka.Output]:
    """One attempt at a share of the router stage, as its pipeline runs it (in a task of
    its own), up to the store's write."""
    return await asyncio.create_task(batches_of(stage, batch))


async def batches_of(stage: worker.RouteTicket,
                     *batches: Sequence[envelope.Event]) -> list[kafka.Output]:
    outputs = []
    for batch in batches:
        await stage.prefetch(batch)
        outputs += [output for event in batch for output in await stage(event)]
        await stage.finish_batch()
    return outputs


def lanes(outputs: list[kafka.Output]) -> list[str]:
    return [output.topic for output in outputs if output.topic != topics.EVENTS]


def routed_events(outputs: list[kafka.Output]) -> list[TicketEvent]:
    return [events.read(output.event) for output in outputs if output.topic == topics.EVENTS]


def customer_reply(ticket_id: str) -> envelope.Event:
    return events.as_envelope(TicketEvent(
        ticket_id=ticket_id, type=TicketEventType.CUSTOMER_REPLIED,
        occurred_at=datetime.now(UTC)), "corr-1", events.INTAKE_SOURCE)


async def claim_until(sessions: async_sessionmaker[AsyncSession], until: datetime,
                      ticket_id: str = "t-1") -> None:
    """A hand-over's claim on the ticket, standing until `until`
    (RoutedTickets.claim_handover)."""
    async with sessions() as session, session.begin():
        await session.execute(update(RoutedTicketRow)
                              .where(RoutedTicketRow.ticket_id == ticket_id)
                              .values(handover_until=until))


class CountedLookups(RoutedTickets):
    """The store, counting the stage's lookups of tickets routed before."""

    lookups = 0

    async def routed_before(self, ticket_ids: Collection[str]) -> dict[str, RoutedBefore]:
        self.lookups += 1
        return await super().routed_before(ticket_ids)


async def stored(routed: RoutedTickets) -> RoutedTicketRow:
    row = await routed.get("t-1")
    assert row is not None
    return row


First = tuple[worker.RouteTicket, envelope.Event, list[kafka.Output]]


@pytest.fixture
async def first(routed: RoutedTickets) -> First:
    """t-1 routed to public_sector: the stage, its event, and the outputs of that first
    attempt (never committed)."""
    stage = worker.RouteTicket(lambda: TABLE, routed=routed)
    event = segmented_event("government", "t-1")
    return stage, event, await route_batch(stage, event)


class TestARoutingReplayed:
    async def test_it_publishes_the_ticket_as_first_routed_and_writes_nothing(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, outputs = first
        before = await stored(routed)
        again = await route_batch(stage, event)
        assert lanes(again) == lanes(outputs) == [priority.queue_for("public_sector", 3)]
        assert [o.event.data for o in again] == [o.event.data for o in outputs]
        [replayed], [original] = routed_events(again), routed_events(outputs)
        assert replayed.occurred_at == original.occurred_at  # as first decided
        after = await stored(routed)
        assert (after.updated_at, after.trace, after.payload) == (
            before.updated_at, before.trace, before.payload)

    async def test_a_report_followed_in_between_stands_and_is_not_followed_twice(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, _ = first
        reply = customer_reply("t-1")
        follow = FollowTicketEvent(routed)
        followed = await follow(reply)
        kept = (await stored(routed)).trace

        again = await route_batch(stage, event)
        assert lanes(again) == [priority.queue_for("public_sector", 3)]  # in no queue yet
        assert (await stored(routed)).trace == kept
        assert kept[-1]["event"] == reply.id

        # The reply's batch followed again: it has it, and moves nothing.
        assert [o.event.id for o in await follow(reply)] == [o.event.id for o in followed]
        assert (await stored(routed)).trace == kept

    async def test_a_priority_changed_in_between_takes_its_lane(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, _ = first
        await routed.record_priority_change(
            "t-1", priority=1, step={"at": datetime.now(UTC).isoformat(),
                                     "step": "priority_changed", "priority": 1},
            move_clocks=lambda clocks, _department: clocks)
        again = await route_batch(stage, event)
        assert lanes(again) == [priority.queue_for("public_sector", 1)]
        assert again[0].event.data["routing"]["priority"] == 1
        assert (await stored(routed)).priority == 1

    async def test_after_a_transfer_in_between_only_its_lifecycle_event_goes(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, outputs = first
        await transfer(routed, "business_desk")
        counted = REGISTRY.get_sample_value(HANDED_ON) or 0.0
        before = await stored(routed)

        again = await route_batch(stage, event)
        assert lanes(again) == []
        # As first decided, though the stored copy is the transferred one.
        [replayed], [original] = routed_events(again), routed_events(outputs)
        assert (replayed.department, replayed.reason, replayed.occurred_at) == (
            "public_sector", original.reason, original.occurred_at)
        after = await stored(routed)
        assert (after.department, after.trace, after.payload) == (
            "business_desk", before.trace, before.payload)
        assert REGISTRY.get_sample_value(HANDED_ON) == counted + 1

    async def test_a_resolved_ticket_joins_no_queue_again(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, _ = first
        assert await routed.record_report("t-1", TicketEventType.RESOLVED, datetime.now(UTC))
        again = await route_batch(stage, event)
        assert lanes(again) == []
        assert [e.type for e in routed_events(again)] == [TicketEventType.ROUTED]

    async def test_under_the_ids_of_the_first_attempt(self, first: First) -> None:
        stage, event, outputs = first
        again = await route_batch(stage, event)
        assert [o.event.id for o in again] == [o.event.id for o in outputs]

    async def test_a_hand_over_being_published_is_waited_for(
            self, sessions: async_sessionmaker[AsyncSession], first: First) -> None:
        _, event, _ = first
        counted = CountedLookups(sessions)
        stage = worker.RouteTicket(lambda: TABLE, routed=counted)
        await claim_until(sessions, datetime.now(UTC) + timedelta(seconds=1))
        assert lanes(await route_batch(stage, event)) == [
            priority.queue_for("public_sector", 3)]
        assert counted.lookups == 2  # the batch's, then the ticket's once the claim ended

    async def test_once_an_attempt_at_a_share_however_many_batches_it_makes(
            self, sessions: async_sessionmaker[AsyncSession], first: First,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """A share taken record by record (Batches._one_by_one: a batch of each, in the
        share's one task): t-1's hand-over ends during the wait; t-2's still stands, and
        the attempt, having waited once, is retried at once rather than waiting again
        (each ticket's wait would add up past the stage's transaction timeout)."""
        stage, event, _ = first
        second = segmented_event("government", "t-2")
        await route_batch(stage, second)
        monkeypatch.setattr(worker, "CLAIM_WAIT_SECONDS", 3600.0)
        await claim_until(sessions, datetime.now(UTC) + timedelta(milliseconds=300))
        await claim_until(sessions, datetime.now(UTC) + timedelta(minutes=10), "t-2")
        attempt = asyncio.create_task(batches_of(stage, [event], [second]))
        with pytest.raises(faults.Transient):
            await asyncio.wait_for(attempt, timeout=60)  # not the 10 min of t-2's claim

    async def test_one_standing_past_the_wait_holds_it_back(
            self, sessions: async_sessionmaker[AsyncSession], first: First,
            monkeypatch: pytest.MonkeyPatch) -> None:
        stage, event, _ = first
        monkeypatch.setattr(worker, "CLAIM_WAIT_SECONDS", 0.1)
        await claim_until(sessions, datetime.now(UTC) + timedelta(minutes=1))
        await stage.prefetch([event])
        with pytest.raises(faults.Transient):
            await stage(event)

    async def test_its_clocks_deadlines_are_those_stored(
            self, routed: RoutedTickets, first: First) -> None:
        stage, event, _ = first
        row = await stored(routed)
        assert row.service_clocks is not None
        [replayed] = routed_events(await route_batch(stage, event))
        assert replayed.deadlines == service_clocks.from_json(
            row.service_clocks).deadlines()


HANDED_ON = "routing_router_replays_after_handover_total"
ELSEWHERE = routing.RoutingTable.simple("t2", {"government": "business_desk"},
                                        "customer_care")


async def transfer(routed: RoutedTickets, to: str) -> None:
    """t-1 handed to `to`, as a transfer records it."""
    moved_at = datetime.now(UTC) + timedelta(seconds=1)
    row = await stored(routed)
    handed = tickets.RoutedTicket.model_validate(row.payload).handed_to(
        to, reason="transfer", at=moved_at, queue=priority.queue_for(to, 3))
    await routed.record_handover("t-1", department=to, ticket=handed, now=moved_at, steps=[{
        "at": moved_at.isoformat(), "step": "transferred", "from": row.department, "to": to,
        "reason": "billing question"}])


def kept_routings(prefix: str, count: int, *,
                  event: envelope.Event | None = None) -> list[Dispatch]:
    """`count` routings decided now (of `event`, or of new tickets `<prefix><n>`)."""
    found = [event] if event is not None else [
        segmented_event("government", f"{prefix}{n}") for n in range(count)]
    return [service.route(
        tickets.SegmentedTicket.model_validate(e.data), table=TABLE, load=ports.no_load,
        now=datetime.now(UTC), event_id=e.id, correlation_id=e.correlation_id).dispatch
        for e in found]


class StoreDownForWrites(RoutedTickets):
    """The store unreachable for the stage's writes, until `down` is False."""

    down = True

    async def record_first_dispatches(self, dispatches: Sequence[Dispatch]) -> None:
        if self.down:
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("store down"))
        await super().record_first_dispatches(dispatches)

    async def record_kept_dispatches(self, dispatches: Sequence[Dispatch], *,
                                     chunk: int = 500) -> None:
        if self.down:
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("store down"))
        await super().record_kept_dispatches(dispatches, chunk=chunk)


class StoreDownForLookups(RoutedTickets):
    """The store unreachable when the stage asks which tickets were routed before."""

    writes = 0  # calls that write routings

    async def routed_before(self, ticket_ids: Collection[str]) -> dict[str, RoutedBefore]:
        raise OperationalError("SELECT ...", {}, ConnectionRefusedError("store down"))

    async def record_first_dispatches(self, dispatches: Sequence[Dispatch]) -> None:
        self.writes += 1
        await super().record_first_dispatches(dispatches)

    async def record_kept_dispatches(self, dispatches: Sequence[Dispatch], *,
                                     chunk: int = 500) -> None:
        self.writes += 1
        await super().record_kept_dispatches(dispatches, chunk=chunk)


async def routed_blind(sessions: async_sessionmaker[AsyncSession], table: routing.RoutingTable,
                       event: envelope.Event) -> list[kafka.Output]:
    """`event` routed by `table` past the outage's grace period by a stage that cannot ask
    the store which tickets were routed before, its states (kept) written: what it
    published."""
    blind = worker.RouteTicket(lambda: table, routed=StoreDownForLookups(sessions),
                               outage=StoreOutage(0.0))
    outputs = await route_batch(blind, event)
    await blind.flush_deferred()
    return outputs


class TestDecidedWhileTheStoreWasDown:
    """A replay routed past the outage's grace period, not knowing its ticket stored:
    what it published is written, and what the trace gained since is kept."""

    async def test_the_routing_published_is_stored(
            self, sessions: async_sessionmaker[AsyncSession], routed: RoutedTickets,
            first: First) -> None:
        _, event, outputs = first
        again = await routed_blind(sessions, ELSEWHERE, event)
        assert lanes(again) == [priority.queue_for("business_desk", 3)]
        # Another decision, under other ids than the first attempt's.
        assert not {o.event.id for o in again} & {o.event.id for o in outputs}
        after = await stored(routed)
        assert after.department == "business_desk"
        assert [step.get("department") for step in after.trace
                if step["step"] == "routed"] == ["business_desk"]

    async def test_with_the_reports_since_when_decided_alike(
            self, sessions: async_sessionmaker[AsyncSession], routed: RoutedTickets,
            first: First) -> None:
        _, event, _ = first
        reply = customer_reply("t-1")
        await FollowTicketEvent(routed)(reply)
        clocks = (await stored(routed)).service_clocks
        await routed_blind(sessions, TABLE, event)
        after = await stored(routed)
        assert [(step["step"], step.get("event")) for step in after.trace][2:] == [
            ("routed", None), ("customer_replied", reply.id)]
        assert after.service_clocks == clocks  # as the reply moved them

    async def test_a_ticket_decided_elsewhere_and_reported_on_since_keeps_its_state(
            self, sessions: async_sessionmaker[AsyncSession], routed: RoutedTickets,
            first: First) -> None:
        _, event, _ = first
        await FollowTicketEvent(routed)(customer_reply("t-1"))
        before = await stored(routed)
        await routed_blind(sessions, ELSEWHERE, event)
        after = await stored(routed)
        assert (after.department, after.trace) == ("public_sector", before.trace)

    async def test_an_older_attempt_written_late_leaves_the_newer_routing(
            self, routed: RoutedTickets) -> None:
        event = segmented_event("government", "t-7")
        ticket = tickets.SegmentedTicket.model_validate(event.data)
        older, newer = (service.route(
            ticket, table=table, load=ports.no_load, now=now, event_id=event.id,
            correlation_id=event.correlation_id).dispatch for table, now in (
                (TABLE, datetime.now(UTC)), (ELSEWHERE, datetime.now(UTC) + timedelta(1))))
        await routed.record_kept_dispatches([newer])
        await routed.record_kept_dispatches([older])
        row = await routed.get("t-7")
        assert row is not None and row.department == "business_desk"

    async def test_a_ticket_handed_over_since_keeps_its_state(
            self, sessions: async_sessionmaker[AsyncSession], routed: RoutedTickets,
            first: First) -> None:
        _, event, _ = first
        await transfer(routed, "customer_care")
        before = await stored(routed)
        await routed_blind(sessions, ELSEWHERE, event)
        after = await stored(routed)
        assert (after.department, after.trace, after.payload) == (
            "customer_care", before.trace, before.payload)

    async def test_a_batch_that_met_the_store_down_does_not_ask_it_again_for_its_writes(
            self, sessions: async_sessionmaker[AsyncSession], routed: RoutedTickets) -> None:
        """A store that does not answer holds each call for its statement limit: a batch
        past the grace period meets it once, at its lookup, not again at its writes."""
        down = StoreDownForLookups(sessions)
        stage = worker.RouteTicket(lambda: TABLE, routed=down, outage=StoreOutage(0.0))
        assert lanes(await route_batch(stage, segmented_event("government", "t-10")))
        assert down.writes == 0
        assert stage.awaits_store("t-10") and await routed.get("t-10") is None
        await stage.flush_deferred()
        assert down.writes == 1 and not stage.awaits_store("t-10")
        row = await routed.get("t-10")
        assert row is not None and row.department == "public_sector"

    async def test_one_kept_through_the_outage_is_written_by_the_flush(
            self, sessions: async_sessionmaker[AsyncSession], routed: RoutedTickets) -> None:
        down = StoreDownForWrites(sessions)
        stage = worker.RouteTicket(lambda: TABLE, routed=down, outage=StoreOutage(0.0))
        assert lanes(await route_batch(stage, segmented_event("government", "t-9")))
        assert stage.awaits_store("t-9") and await routed.get("t-9") is None
        down.down = False
        await stage.flush_deferred()
        assert not stage.awaits_store("t-9")
        row = await routed.get("t-9")
        assert row is not None and row.department == "public_sector"

    @pytest.mark.parametrize(("failure", "written"), [
        (ValueError("a bug in this chunk"), [True, True, False, False, True]),
        (OperationalError("INSERT ...", {}, ConnectionRefusedError("store down")),
         [True, True, False, False, False]),
        (as_sqlalchemy_raises(asyncpg.exceptions.DeadlockDetectedError("deadlock")),
         [True, True, False, False, False])])
    async def test_a_chunk_failing_for_a_bug_holds_back_none_of_the_others(
            self, sessions: async_sessionmaker[AsyncSession], failure: Exception,
            written: list[bool]) -> None:
        """The second of three chunks fails as a bug would: the others are written all
        the same, and its tickets are named (the flush's periodic task logs it); an
        outage or a conflict (a deadlock) there holds back the rest, which are retried."""

        class SecondChunkFails(RoutedTickets):
            async def _record_kept(self, dispatches: Sequence[Dispatch]) -> None:
                if dispatches[0].ticket_id == "k-2":
                    raise failure
                await super()._record_kept(dispatches)

        failing = SecondChunkFails(sessions)
        with pytest.raises((KeptNotWritten, DBAPIError)) as raised:
            await failing.record_kept_dispatches(kept_routings("k-", 5), chunk=2)
        if isinstance(failure, ValueError):
            assert raised.type is KeptNotWritten
            assert raised.value.unwritten == {"k-2", "k-3"}
            assert raised.value.__cause__ is failure
        else:
            assert raised.value is failure
        assert [await failing.get(f"k-{n}") is not None for n in range(5)] == written

    async def test_a_flush_failing_for_some_tickets_is_done_with_the_others(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        class OneBad(StoreDownForWrites):
            async def record_kept_dispatches(self, dispatches: Sequence[Dispatch], *,
                                             chunk: int = 500) -> None:
                await super().record_kept_dispatches(dispatches, chunk=1)

            async def _record_kept(self, dispatches: Sequence[Dispatch]) -> None:
                if dispatches[0].ticket_id == "f-1":
                    raise ValueError("a bug")
                await super()._record_kept(dispatches)

        down = OneBad(sessions)
        stage = worker.RouteTicket(lambda: TABLE, routed=down, outage=StoreOutage(0.0))
        names = ("f-0", "f-1", "f-2")
        await route_batch(stage, *(segmented_event("government", name) for name in names))
        assert all(stage.awaits_store(name) for name in names)
        down.down = False
        with pytest.raises(KeptNotWritten):
            await stage.flush_deferred()
        assert [stage.awaits_store(name) for name in names] == [False, True, False]

    async def test_one_reported_on_since_keeps_its_last_change_however_often_written(
            self, routed: RoutedTickets, first: First) -> None:
        """The routing published takes the stored one's place, once: its reports stand,
        with the last change they made, and writing it again changes nothing."""
        _, event, _ = first
        await FollowTicketEvent(routed)(customer_reply("t-1"))
        replied = await stored(routed)
        (again,) = kept_routings("", 1, event=event)
        await routed.record_kept_dispatches([again])
        taken = await stored(routed)
        assert taken.trace[:len(again.steps)] == list(again.steps) != replied.trace
        assert taken.updated_at == replied.updated_at
        await routed.record_kept_dispatches([again])
        assert (await stored(routed)).trace == taken.trace

    async def test_writers_at_once_meet_no_conflict(self, routed: RoutedTickets) -> None:
        """The shares and the flush, when the store is back."""
        event = segmented_event("government", "t-8")
        dispatch = service.route(
            tickets.SegmentedTicket.model_validate(event.data), table=TABLE,
            load=ports.no_load, now=datetime.now(UTC), event_id=event.id,
            correlation_id=event.correlation_id).dispatch
        await asyncio.gather(*(routed.record_kept_dispatches([dispatch]) for _ in range(4)))
        row = await routed.get("t-8")
        assert row is not None and row.routed_event_id == event.id

    async def test_a_copy_routed_then_leaves_the_stored_ticket(
            self, sessions: async_sessionmaker[AsyncSession], routed: RoutedTickets,
            first: First) -> None:
        before = await stored(routed)
        await routed_blind(sessions, TABLE, segmented_event("government", "t-1"))  # another event
        after = await stored(routed)
        assert (after.routed_event_id, after.trace) == (before.routed_event_id, before.trace)


class TestCopies:
    async def test_another_event_of_a_stored_ticket_is_routed_nowhere(
            self, first: First) -> None:
        stage, _, _ = first
        copy = segmented_event("government", "t-1")  # another event id
        assert await route_batch(stage, copy) == []

    async def test_the_same_event_twice_in_one_batch_is_routed_once(
            self, routed: RoutedTickets) -> None:
        stage = worker.RouteTicket(lambda: TABLE, routed=routed)
        event = segmented_event("government", "t-2")
        outputs = await route_batch(stage, event, event)
        assert len(lanes(outputs)) == 1

    async def test_and_in_one_share_taken_record_by_record(
            self, routed: RoutedTickets) -> None:
        """Batches._one_by_one: a batch of each record, in the share's one task."""
        stage = worker.RouteTicket(lambda: TABLE, routed=routed)
        event = segmented_event("government", "t-3")
        outputs = await asyncio.create_task(batches_of(stage, [event], [event]))
        assert len(lanes(outputs)) == 1
