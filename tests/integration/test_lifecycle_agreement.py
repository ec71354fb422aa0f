"""Router and metrics agree on a ticket's lifecycle (services/core/lifecycle.py), read
from the real SQL store (SQLite and PostgreSQL): a ticket resolved without a separate
response has had its first response, is no longer escalated nor in any backlog, and its
first-response target is met; one replied to before any response is still awaited by
both, one waiting on the customer by neither; a resolved one takes no more moves of its
clocks; one escalated after hours and answered before the new department opens is late
for both, and for the simulator's actual side (the escalation published on a real
broker); one transferred just after its deadline is escalated from its first department,
whenever the clock watch runs, and counted missed there; one answered in time but
reported after a pause past its deadline is missed for both (services/core/targets.py);
two deadlines passed before the watch came to them are the first department's, escalated
once; and the same ticket
histories are open, and in a backlog, in each store's counts as lifecycle's rules say."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import access, db, events, kafka, lifecycle, tickets, topics
from services.core.events import TicketEvent, TicketEventType
from services.core.settings import Settings
from services.metrics import service, stats, timeline
from services.metrics.store import TimelineStore
from services.router import ports, priority, service_clocks, table_file, tickets_api
from services.router import service as router_service
from services.router.event_follower import FollowTicketEvent
from services.router.held_store import HeldTickets
from services.router.routing import RoutingTable
from services.router.store import Dispatch, RoutedTickets
from services.simulator import history, summary
from tests.conftest import TEST_ROUTING_TABLE, read_topic, unique
from tests.routing_tables import routing_table_file

ROUTED_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DEADLINE = ROUTED_AT + timedelta(hours=1)
REPORT_EVENT = "e-report"  # the id of the report's event, as the follower records it


@dataclass
class Stores:
    router: RoutedTickets
    metrics: TimelineStore
    sessions: async_sessionmaker[AsyncSession]
    held: HeldTickets


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[Stores]:
    engine = db.engine(database_url)
    try:
        sessions = db.sessions(engine)
        yield Stores(RoutedTickets(sessions), TimelineStore(sessions), sessions,
                     HeldTickets(sessions))
    finally:
        await engine.dispose()


async def route_and_report(stores: Stores, report: TicketEventType,
                           reported_at: datetime) -> timeline.Timeline:
    """The same ticket, routed and reported on, as the router and the metrics see it."""
    await stores.router.record_first_dispatches([Dispatch(
        ticket_id="t-1", department="customer_care", segment="standard", priority=3,
        deadline=DEADLINE, steps=[], payload={}, at=ROUTED_AT,
        clocks=service_clocks.routed(service_clocks.Targets(timedelta(hours=1),
                                                            next_response=timedelta(hours=2)),
                                     ROUTED_AT, None))])
    assert await stores.router.record_report("t-1", report, reported_at,
                                             event_id=REPORT_EVENT)
    events = [
        TicketEvent(ticket_id="t-1", type=TicketEventType.ROUTED, occurred_at=ROUTED_AT,
                    received_at=ROUTED_AT, department="customer_care", segment="standard",
                    first_response_deadline=DEADLINE),
        TicketEvent(ticket_id="t-1", type=report, occurred_at=reported_at)]
    current = timeline.Timeline(ticket_id="t-1")
    for event in events:
        current, _ = service.applied(event, current)  # moments and clocks, as it runs
    async with stores.sessions() as session, session.begin():
        await stores.metrics.save(session, current)
    return current


class TestResolvedWithoutAResponse:
    async def test_both_services_count_it_as_answered_at_its_resolution(
            self, stores: Stores) -> None:
        resolved_at = ROUTED_AT + timedelta(minutes=20)
        seen_by_metrics = await route_and_report(stores, TicketEventType.RESOLVED, resolved_at)

        row = await stores.router.get("t-1")
        assert row is not None and row.status == "resolved"
        assert row.first_response_at is not None
        assert row.first_response_at.replace(tzinfo=UTC) == resolved_at
        assert seen_by_metrics.first_response_at == resolved_at

    async def test_neither_escalates_nor_misses_it_once_the_deadline_passes(
            self, stores: Stores) -> None:
        seen_by_metrics = await route_and_report(
            stores, TicketEventType.RESOLVED, ROUTED_AT + timedelta(minutes=20))
        after_deadline = DEADLINE + timedelta(hours=1)

        assert await stores.router.due_for_escalation(after_deadline) == []
        assert stats.outcome(seen_by_metrics, after_deadline) == "met"
        assert await stores.metrics.past_deadline(after_deadline) == []

    async def test_it_is_in_neither_backlog(self, stores: Stores) -> None:
        await route_and_report(stores, TicketEventType.RESOLVED,
                               ROUTED_AT + timedelta(minutes=20))

        assert await stores.router.backlog() == {}
        assert await stores.metrics.open_per_department(backlog=True) == {}
        assert await stores.metrics.open_per_department() == {}


class TestRespondedNotResolved:
    async def test_answered_and_out_of_the_backlog_but_still_open_for_both(
            self, stores: Stores) -> None:
        seen_by_metrics = await route_and_report(
            stores, TicketEventType.RESPONDED, DEADLINE + timedelta(minutes=5))

        row = await stores.router.get("t-1")
        assert row is not None and row.status == "responded"
        assert await stores.router.backlog() == {}
        assert await stores.metrics.open_per_department(backlog=True) == {}
        assert await stores.metrics.open_per_department() == {"customer_care": 1}
        assert stats.outcome(seen_by_metrics, DEADLINE + timedelta(hours=1)) == "missed"


def routed_step(department: str = "customer_care") -> dict[str, str]:
    return {"at": ROUTED_AT.isoformat(), "step": "routed", "department": department}


def transfer_step(at: datetime, to: str, source: str = "customer_care") -> dict[str, str]:
    return {"at": at.isoformat(), "step": "transferred", "from": source, "to": to}


class TestAnsweredThenHandedOver:
    async def test_the_response_is_credited_to_the_department_that_gave_it(
            self, stores: Stores) -> None:
        """customer_care answered, and the ticket was transferred before the router's
        follower read the answer: customer_care gave the first response, in the router's
        response rate (the load sample overflow predicts by) as in the metrics; the
        department that took the ticket did not."""
        answered_at = ROUTED_AT + timedelta(minutes=20)
        await stores.router.record_first_dispatches([Dispatch(
            ticket_id="t-1", department="customer_care", segment="standard", priority=3,
            deadline=DEADLINE, steps=[routed_step()], payload={}, at=ROUTED_AT)])
        moved_at = answered_at + timedelta(minutes=5)
        await stores.router.record_handover(
            "t-1", department="business_desk", ticket=None, now=moved_at,
            steps=[transfer_step(moved_at, "business_desk")])
        reported = await stores.router.record_report("t-1", TicketEventType.RESPONDED,
                                                     answered_at)
        seen_by_metrics = timeline.Timeline(ticket_id="t-1")
        for event in [
                TicketEvent(ticket_id="t-1", type=TicketEventType.ROUTED,
                            occurred_at=ROUTED_AT, received_at=ROUTED_AT,
                            department="customer_care", segment="standard",
                            first_response_deadline=DEADLINE),
                TicketEvent(ticket_id="t-1", type=TicketEventType.TRANSFERRED,
                            occurred_at=moved_at, department="business_desk",
                            from_department="customer_care"),
                TicketEvent(ticket_id="t-1", type=TicketEventType.RESPONDED,
                            occurred_at=answered_at)]:
            seen_by_metrics, _ = service.applied(event, seen_by_metrics)

        assert reported is not None and reported.held_by == "customer_care"
        now_with = await stores.router.get("t-1")
        assert now_with is not None and now_with.department == "business_desk"
        assert await stores.router.first_responses_since(ROUTED_AT) == {"customer_care": 1}
        assert seen_by_metrics.first_response_at == answered_at
        assert seen_by_metrics.department_at(answered_at) == "customer_care"
        assert seen_by_metrics.department == "business_desk"


class TestTheFollowerOnTheStore:
    async def test_a_batch_followed_again_publishes_the_same_deadlines_and_outcomes(
            self, stores: Stores) -> None:
        """[responded, resolved] followed, their writes committed, then followed again
        (exactly once: the batch's Kafka transaction aborted, so its outputs were never
        read): the same deadlines_changed, under the same ids, the first response's
        outcome in the first, credited to the department that held the ticket then
        (transferred since, before the follower read the reports)."""
        await stores.router.record_first_dispatches([Dispatch(
            ticket_id="t-1", department="customer_care", segment="standard", priority=3,
            deadline=DEADLINE, steps=[routed_step()], payload={}, at=ROUTED_AT,
            clocks=service_clocks.routed(service_clocks.Targets(timedelta(hours=1)),
                                         ROUTED_AT, None))])
        moved_at = ROUTED_AT + timedelta(minutes=40)
        await stores.router.record_handover(
            "t-1", department="business_desk", ticket=None, now=moved_at,
            steps=[transfer_step(moved_at, "business_desk")])
        follow = FollowTicketEvent(stores.router)
        batch = [events.as_envelope(TicketEvent(
            ticket_id="t-1", type=kind, occurred_at=ROUTED_AT + timedelta(minutes=minutes),
            department="customer_care"), "corr-1", events.INTAKE_SOURCE)
            for kind, minutes in ((TicketEventType.RESPONDED, 20),
                                  (TicketEventType.RESOLVED, 30))]
        first = [output for event in batch for output in await follow(event)]
        again = [output for event in batch for output in await follow(event)]

        assert [output.event.id for output in first] == [output.event.id for output in again]
        changed = [events.read(output.event) for output in first]
        assert [(c.type, c.department) for c in changed] == [
            (TicketEventType.DEADLINES_CHANGED, "customer_care")] * 2
        assert changed[0].outcomes == {"first_response#1": "met"}
        assert events.read(again[0].event).outcomes == {"first_response#1": "met"}
        row = await stores.router.get("t-1")
        assert row is not None
        assert [step["step"] for step in row.trace] == [
            "routed", "transferred", "responded", "resolved"]


class TestPausedOrRepliedToBeforeAResponse:
    async def test_replied_to_it_is_still_in_both_backlogs(self, stores: Stores) -> None:
        await route_and_report(stores, TicketEventType.CUSTOMER_REPLIED,
                               ROUTED_AT + timedelta(minutes=10))

        row = await stores.router.get("t-1")
        assert row is not None and row.status == "customer_replied"
        assert await stores.router.backlog() == {"customer_care": 1}
        assert await stores.metrics.open_per_department(backlog=True) == {"customer_care": 1}
        assert set(await stores.router.oldest_open()) == {"customer_care"}

    async def test_waiting_then_replied_to_it_is_back_in_both_backlogs(
            self, stores: Stores) -> None:
        """Paused while it waits on the customer, it is back in the work queued ahead
        once the customer replies (README, lifecycle)."""
        seen_by_metrics = await route_and_report(stores, TicketEventType.WAITING_ON_CUSTOMER,
                                                 ROUTED_AT + timedelta(minutes=10))
        replied = TicketEvent(ticket_id="t-1", type=TicketEventType.CUSTOMER_REPLIED,
                              occurred_at=ROUTED_AT + timedelta(minutes=15))
        assert await stores.router.record_report("t-1", replied.type, replied.occurred_at,
                                                 event_id="e-reply")
        seen_by_metrics, _ = service.applied(replied, seen_by_metrics)
        async with stores.sessions() as session, session.begin():
            await stores.metrics.save(session, seen_by_metrics)

        assert await stores.router.backlog() == {"customer_care": 1}
        assert await stores.metrics.open_per_department(backlog=True) == {"customer_care": 1}

    async def test_waiting_on_the_customer_it_is_in_neither_but_still_open(
            self, stores: Stores) -> None:
        """It waits on the customer, not on the department: no work queued ahead of a
        new ticket, nor the oldest wait the overflow prediction reads."""
        seen_by_metrics = await route_and_report(stores, TicketEventType.WAITING_ON_CUSTOMER,
                                                 ROUTED_AT + timedelta(minutes=10))

        row = await stores.router.get("t-1")
        assert row is not None and row.status == "waiting_on_customer"
        assert seen_by_metrics.first_response_at is None
        assert await stores.router.backlog() == {}
        assert await stores.router.oldest_open() == {}
        assert await stores.metrics.open_per_department(backlog=True) == {}
        assert await stores.metrics.open_per_department() == {"customer_care": 1}


# Ticket histories after their routing: the reports on each, in order.
HISTORIES: tuple[tuple[TicketEventType, ...], ...] = (
    (),
    (TicketEventType.PICKED_UP,),
    (TicketEventType.CUSTOMER_REPLIED,),
    (TicketEventType.WAITING_ON_CUSTOMER,),
    (TicketEventType.PICKED_UP, TicketEventType.WAITING_ON_CUSTOMER,
     TicketEventType.PICKED_UP),
    (TicketEventType.WAITING_ON_CUSTOMER, TicketEventType.CUSTOMER_REPLIED),
    (TicketEventType.RESPONDED,),
    (TicketEventType.RESPONDED, TicketEventType.WAITING_ON_CUSTOMER),
    (TicketEventType.RESPONDED, TicketEventType.WAITING_ON_CUSTOMER,
     TicketEventType.CUSTOMER_REPLIED),
    (TicketEventType.WAITING_ON_CUSTOMER, TicketEventType.RESPONDED),
    (TicketEventType.RESOLVED,),
    (TicketEventType.WAITING_ON_CUSTOMER, TicketEventType.RESOLVED),
    (TicketEventType.PICKED_UP, TicketEventType.RESPONDED, TicketEventType.RESOLVED),
)


def by_the_rule(reports: tuple[TicketEventType, ...]) -> tuple[bool, bool]:
    """Whether a ticket with these reports is open, and in its department's backlog, as
    lifecycle.py's pure rules say."""
    status, answered = lifecycle.Status.ROUTED, False
    for report in reports:
        reported = lifecycle.reported_status(report)
        assert reported is not None
        status = lifecycle.status_after(status, reported)
        answered = answered or lifecycle.counts_as_first_response(report)
    open_ticket = lifecycle.is_open(status)
    return open_ticket, lifecycle.in_backlog(
        open_ticket=open_ticket, answered=answered,
        waiting_on_customer=status is lifecycle.Status.WAITING_ON_CUSTOMER)


class TestOneBacklogRule:
    async def test_both_stores_count_open_and_backlog_tickets_as_lifecycle_says(
            self, stores: Stores) -> None:
        """Each history in a department of its own, stored as the router and the metrics
        store it: each store's open tickets and backlog per department are the ones
        lifecycle's rules name, so a store's SQL cannot drift from the rule."""
        departments = [f"dept_{number}" for number in range(len(HISTORIES))]
        seen_by_metrics = []
        for department, reports in zip(departments, HISTORIES, strict=True):
            ticket_id = f"t-{department}"
            await stores.router.record_first_dispatches([Dispatch(
                ticket_id=ticket_id, department=department, segment="standard",
                priority=3, deadline=DEADLINE, steps=[], payload={}, at=ROUTED_AT)])
            current = timeline.Timeline(ticket_id=ticket_id)
            current, _ = service.applied(TicketEvent(
                ticket_id=ticket_id, type=TicketEventType.ROUTED, occurred_at=ROUTED_AT,
                received_at=ROUTED_AT, department=department, segment="standard",
                first_response_deadline=DEADLINE), current)
            for minutes, report in enumerate(reports, start=1):
                at = ROUTED_AT + timedelta(minutes=minutes)
                await stores.router.record_report(ticket_id, report, at,
                                                  event_id=f"e-{ticket_id}-{minutes}")
                current, _ = service.applied(
                    TicketEvent(ticket_id=ticket_id, type=report, occurred_at=at), current)
            seen_by_metrics.append(current)
        async with stores.sessions() as session, session.begin():
            await stores.metrics.save_many(session, seen_by_metrics)
        ruled = {department: by_the_rule(reports)
                 for department, reports in zip(departments, HISTORIES, strict=True)}
        open_ones = {department: 1 for department, (open_ticket, _) in ruled.items()
                     if open_ticket}
        backlog = {department: 1 for department, (_, in_backlog) in ruled.items()
                   if in_backlog}

        assert 0 < len(backlog) < len(open_ones) < len(HISTORIES)  # each kind is there
        assert await stores.router.open_tickets(departments) == open_ones
        assert await stores.metrics.open_per_department() == open_ones
        assert await stores.router.backlog() == backlog
        assert await stores.metrics.open_per_department(backlog=True) == backlog
        assert set(await stores.router.oldest_open()) == set(backlog)


class TestAfterTheResolution:
    async def test_a_report_in_flight_moves_neither_status_nor_clocks(
            self, stores: Stores) -> None:
        """The API refuses reports on a resolved ticket; one accepted just before the
        resolution was recorded (another customer reply, or the same resolution sent
        twice without an Idempotency-Key) starts no next-response clock on the closed
        ticket, and has no clocks to publish (no deadlines_changed after the
        resolution). The resolution's own event, followed again (a batch replayed after
        its reports were written), has its clocks as they stand, so it publishes the
        same deadlines again."""
        resolved_at = ROUTED_AT + timedelta(minutes=20)
        await route_and_report(stores, TicketEventType.RESOLVED, resolved_at)
        before = await stores.router.get("t-1")

        def move(clocks: service_clocks.TicketClocks,
                 _department: str) -> service_clocks.TicketClocks:
            return service_clocks.reported(clocks, TicketEventType.CUSTOMER_REPLIED,
                                           ROUTED_AT + timedelta(minutes=30), None)

        late = [await stores.router.record_report(
            "t-1", TicketEventType.CUSTOMER_REPLIED, ROUTED_AT + timedelta(minutes=30),
            move_clocks=move, event_id="e-reply"), await stores.router.record_report(
            "t-1", TicketEventType.RESOLVED, resolved_at, move_clocks=move,
            event_id="e-resolved-again")]
        replayed = await stores.router.record_report("t-1", TicketEventType.RESOLVED,
                                                     resolved_at, move_clocks=move,
                                                     event_id=REPORT_EVENT)
        after = await stores.router.get("t-1")
        assert before is not None and after is not None
        assert before.service_clocks is not None
        assert [reported is not None and reported.clocks for reported in late] == [None] * 2
        assert replayed is not None
        assert replayed.clocks == service_clocks.from_json(before.service_clocks)
        assert (after.status, after.service_clocks, after.trace, after.next_clock_check) \
            == ("resolved", before.service_clocks, before.trace, before.next_clock_check)


class TestAReportFollowedAgain:
    async def test_it_moves_nothing_and_gets_the_clocks_as_they_stand(
            self, stores: Stores) -> None:
        """A customer reply's event followed a second time (a batch replayed after its
        writes, or published again under its id after its request died) neither
        restarts the next-response clock from its time nor adds a step."""
        await route_and_report(stores, TicketEventType.RESPONDED,
                               ROUTED_AT + timedelta(minutes=10))
        replied_at = ROUTED_AT + timedelta(minutes=20)

        def move(clocks: service_clocks.TicketClocks,
                 _department: str) -> service_clocks.TicketClocks:
            return service_clocks.reported(clocks, TicketEventType.CUSTOMER_REPLIED,
                                           replied_at, None)

        first = await stores.router.record_report(
            "t-1", TicketEventType.CUSTOMER_REPLIED, replied_at, move_clocks=move,
            event_id="e-reply")
        await stores.router.record_report("t-1", TicketEventType.RESPONDED,
                                          replied_at + timedelta(minutes=5),
                                          event_id="e-answer")
        before = await stores.router.get("t-1")
        again = await stores.router.record_report(
            "t-1", TicketEventType.CUSTOMER_REPLIED, replied_at, move_clocks=move,
            event_id="e-reply")
        after = await stores.router.get("t-1")
        assert first is not None and again is not None and before is not None
        assert after is not None and before.service_clocks is not None
        assert again.clocks == service_clocks.from_json(before.service_clocks)
        assert (after.status, after.trace, after.service_clocks) == (
            "responded", before.trace, before.service_clocks)


async def first_responses_attained(stores: Stores, seen_by_metrics: timeline.Timeline,
                                   departments: Sequence[str], *, as_of: datetime
                                   ) -> dict[str, tuple[int, int]]:
    """The metrics' timeline saved, then each department's first-response target, (met,
    missed), as its stats count it over the week before `as_of`."""
    async with stores.sessions() as session, session.begin():
        await stores.metrics.save(session, seen_by_metrics)
    attained = {}
    for department in departments:
        target = (await service.department_stats(
            stores.metrics, department, timedelta(days=7), now=as_of)).first_response_target
        attained[department] = (target.met, target.missed)
    return attained


async def routed_to_public_sector(stores: Stores, table: RoutingTable, *, clocks: bool = True
                                  ) -> tuple[str, router_service.FirstRouting]:
    """A government ticket routed by `table` at ROUTED_AT (to public_sector), stored as
    the router stores its first dispatch; without clocks, as one routed before migration
    0010 was."""
    ticket_id = unique("t")
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=ROUTED_AT, platform="helpdesk")
    first = router_service.route(ticket.with_segmentation(tickets.Segmentation(
        segment="government", rule="gov", rules_version="r1", customer_known=True,
        tier="existing")), table=table, load=ports.no_load, now=ROUTED_AT,
        event_id="e-1", correlation_id="corr-1")
    await stores.router.record_first_dispatches(
        [first.dispatch if clocks else dataclasses.replace(first.dispatch, clocks=None)])
    return ticket_id, first


class TestEscalatedAfterHours:
    async def test_answered_before_the_new_department_opens_it_is_late_everywhere(
            self, stores: Stores, kafka_bootstrap: str, tmp_path: Path) -> None:
        """Due Monday 13:00 at public_sector, escalated on its breach to key_accounts, open
        09:00-12:00 (closed: nothing left to count there would start Tuesday 09:00), and
        answered Tuesday 08:00: the deadline stays 13:00 on the escalation, the lane's
        copy and the ticket's state, and the first response is missed, once, in the
        router, the metrics' counter and stats, and the simulator's actual side."""
        table = table_file.load(routing_table_file(tmp_path, departments={"key_accounts": {
            "calendar": {"time_zone": "UTC", "hours": {"mon-fri": "09:00-12:00"}}}}))
        ticket_id, first = await routed_to_public_sector(stores, table)
        missed = ROUTED_AT + timedelta(hours=4)
        settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
        await kafka.ensure_topics(settings, [topics.EVENTS,
                                             *priority.lane_topics("key_accounts")])
        publisher = kafka.Publisher(settings, client_id="lifecycle-agreement")
        try:
            assert await router_service.escalate_due(
                stores.router, publisher, table=table, queue_for=priority.queue_for,
                now=missed + timedelta(seconds=1)) == 1
        finally:
            await publisher.close()
        [(published, _)] = await read_topic(
            kafka_bootstrap, topics.EVENTS, until=1,
            keep=lambda event: event.ticket_id == ticket_id
            and event.type == TicketEventType.ESCALATED)
        escalated = events.read(published)
        assert (escalated.deadlines or {})["first_response"] == missed
        answered = ROUTED_AT + timedelta(days=1, hours=-1)  # Tuesday 08:00
        responded = events.as_envelope(TicketEvent(
            ticket_id=ticket_id, type=TicketEventType.RESPONDED, occurred_at=answered,
            department="key_accounts"), "corr-1", events.INTAKE_SOURCE)
        [changed] = await FollowTicketEvent(stores.router, current_table=lambda: table)(
            responded)

        row = await stores.router.get(ticket_id)
        assert row is not None and row.department == "key_accounts"
        assert row.first_response_deadline is not None
        assert row.first_response_deadline.replace(tzinfo=UTC) == missed
        assert tickets.RoutedTicket.model_validate(
            row.payload).routing.first_response_deadline == missed
        [clock] = tickets_api._clocks(row.service_clocks)["clocks"]
        assert clock["outcome"] == "missed"
        seen_by_metrics, decided = timeline.Timeline(ticket_id=ticket_id), []
        routed_event = next(events.read(output.event) for output in first.outputs
                            if output.topic == topics.EVENTS)
        for event in [routed_event, escalated, events.read(responded),
                      events.read(changed.event)]:
            seen_by_metrics, observations = service.applied(event, seen_by_metrics)
            decided += [(type(o).__name__, o.outcome) for o in observations
                        if isinstance(o, timeline.TargetDecided | timeline.ServiceTarget)]
        # routing_first_response_target_total and routing_service_target_total: once each.
        assert decided == [("ServiceTarget", "missed"), ("TargetDecided", "missed")]
        later = answered + timedelta(days=1)
        assert await first_responses_attained(stores, seen_by_metrics, ("public_sector",),
                                              as_of=later) == {"public_sector": (0, 1)}
        window = await history.HistoryReader(stores.sessions).window(
            ROUTED_AT - timedelta(hours=1), ROUTED_AT + timedelta(hours=1),
            with_customers=False)
        [actual] = [ticket.actual for ticket in window.tickets]
        assert actual.escalated
        outcome = summary.outcome([[actual]], as_of=later)
        assert (outcome.met, outcome.missed) == (0, 1)


class TestAnsweredInTimeReportedAfterAPausePastTheDeadline:
    @pytest.mark.parametrize("pause_published_first", [True, False])
    async def test_it_is_missed_by_the_router_and_the_metrics(
            self, stores: Stores, pause_published_first: bool) -> None:
        """Due Monday 13:00 at public_sector; reported waiting on the customer at 13:30
        (the clock watch not come to it: no breach), then its response, dated 12:00: the
        router's clock takes the response at the pause, its deadline passed (services/
        core/targets.py), and says so in its deadlines_changed; the metrics, reading the
        response before or after the pause's deadlines_changed, count it missed too,
        once, for public_sector, from the stored timeline."""
        table = table_file.load(TEST_ROUTING_TABLE)
        ticket_id, first = await routed_to_public_sector(stores, table)
        follow = FollowTicketEvent(stores.router, current_table=lambda: table)
        reports = [events.as_envelope(TicketEvent(
            ticket_id=ticket_id, type=kind, occurred_at=ROUTED_AT + timedelta(hours=hours),
            department="public_sector"), "corr-1", events.INTAKE_SOURCE)
            for kind, hours in ((TicketEventType.WAITING_ON_CUSTOMER, 4.5),
                                (TicketEventType.RESPONDED, 3))]
        [paused] = [events.read(output.event) for output in await follow(reports[0])]
        [answered] = [events.read(output.event) for output in await follow(reports[1])]

        assert answered.outcomes == {"first_response#1": "missed"}
        row = await stores.router.get(ticket_id)
        assert row is not None
        [clock] = [c for c in tickets_api._clocks(row.service_clocks)["clocks"]
                   if c["target"] == "first_response"]
        assert clock["outcome"] == "missed"
        routed_event = next(events.read(output.event) for output in first.outputs
                            if output.topic == topics.EVENTS)
        waiting, responded = (events.read(report) for report in reports)
        topic = [routed_event, waiting, paused, responded, answered] \
            if pause_published_first else [routed_event, waiting, responded, paused, answered]
        seen_by_metrics, decided = timeline.Timeline(ticket_id=ticket_id), []
        for event in topic:
            seen_by_metrics, observations = service.applied(event, seen_by_metrics)
            decided += [o.outcome for o in observations
                        if isinstance(o, timeline.TargetDecided)]
        assert decided == ["missed"]
        assert await first_responses_attained(
            stores, seen_by_metrics, ("public_sector",),
            as_of=ROUTED_AT + timedelta(days=1)) == {"public_sector": (0, 1)}
        async with stores.sessions() as session:
            stored = (await stores.metrics.get_many(session, {ticket_id}))[ticket_id]
        assert stored.clock_moved_at == waiting.occurred_at  # kept (migration 0031)


class TestTransferredJustAfterTheDeadline:
    @pytest.mark.parametrize("watch_first", [True, False])
    async def test_the_breach_is_the_first_departments_and_the_ticket_stays(
            self, stores: Stores, kafka_bootstrap: str, watch_first: bool) -> None:
        """Due Monday 13:00 at public_sector (escalation_to key_accounts), handed by an
        admin at 13:00:03 to customer_care (escalation_to business_desk), the clock watch
        running at 13:00:02 or at 13:00:05: either way the breach is escalated from
        public_sector to key_accounts before the transfer moves the ticket on, it stays
        in customer_care (not escalated out of it to business_desk on that breach), and
        the metrics' counter and stats count the miss once, for public_sector."""
        table = table_file.load(TEST_ROUTING_TABLE)
        ticket_id, first = await routed_to_public_sector(stores, table)
        missed = ROUTED_AT + timedelta(hours=4)
        settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
        await kafka.ensure_topics(settings, [topics.EVENTS, *(
            topic for department in ("key_accounts", "customer_care", "business_desk")
            for topic in priority.lane_topics(department))])
        publisher = kafka.Publisher(settings, client_id="lifecycle-agreement")

        async def watch(at: datetime) -> None:
            await router_service.escalate_due(stores.router, publisher, table=table,
                                              queue_for=priority.queue_for, now=at)

        try:
            if watch_first:
                await watch(missed + timedelta(seconds=2))
            transferred = await router_service.transfer(
                ticket_id, to_department="customer_care", reason="theirs",
                from_department=None, principal=access.Principal(
                    "cred-admin", access.Role.ADMIN, None), routed=stores.router,
                held=stores.held, publisher=publisher, table=table, queue_for=priority.queue_for,
                now=missed + timedelta(seconds=3))
            await watch(missed + timedelta(seconds=5))
        finally:
            await publisher.close()
        assert transferred == router_service.Transferred(ticket_id, "customer_care")
        published = [events.read(event) for event, _ in await read_topic(
            kafka_bootstrap, topics.EVENTS, until=2,
            keep=lambda event: event.ticket_id == ticket_id
            and event.type in (TicketEventType.ESCALATED, TicketEventType.TRANSFERRED))]
        assert [(e.type, e.level, e.from_department, e.department) for e in published] == [
            (TicketEventType.ESCALATED, 1, "public_sector", "key_accounts"),
            (TicketEventType.TRANSFERRED, None, "key_accounts", "customer_care")]
        row = await stores.router.get(ticket_id)
        assert row is not None and row.department == "customer_care"
        [clock] = tickets_api._clocks(row.service_clocks)["clocks"]
        assert (clock["level"], clock["outcome"]) == (1, "missed")
        seen_by_metrics = timeline.Timeline(ticket_id=ticket_id)
        routed_event = next(events.read(output.event) for output in first.outputs
                            if output.topic == topics.EVENTS)
        for event in [routed_event, *published]:
            seen_by_metrics, _ = service.applied(event, seen_by_metrics)
        assert await first_responses_attained(
            stores, seen_by_metrics, ("public_sector", "customer_care"),
            as_of=missed + timedelta(days=1)) == {"public_sector": (0, 1),
                                                  "customer_care": (0, 0)}


class TestDeadlinesPassedTogether:
    async def test_both_breaches_are_the_first_departments_escalated_once(
            self, stores: Stores, kafka_bootstrap: str, tmp_path: Path) -> None:
        """Due 13:00 (first response) and 15:00 (resolution) at public_sector (escalation_to
        key_accounts, which escalates to account_development), first checked at 15:00:02
        (the clock watch's lease holder down meanwhile), then at 15:00:07: both breaches
        are public_sector's, escalated at once to key_accounts (one record on its lane, an
        escalation per target), not on to account_development at the next check; the
        metrics count both misses for public_sector, the hand-over once."""
        table = table_file.load(routing_table_file(
            tmp_path, routes={"public_sector": {"resolution_target": "6h"}}))
        ticket_id, first = await routed_to_public_sector(stores, table)
        seen = ROUTED_AT + timedelta(hours=6, seconds=2)
        settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
        lanes = [topic for department in ("key_accounts", "account_development")
                 for topic in priority.lane_topics(department)]
        await kafka.ensure_topics(settings, [topics.EVENTS, *lanes])
        publisher = kafka.Publisher(settings, client_id="lifecycle-agreement")
        try:
            for at in (seen, seen + timedelta(seconds=5)):
                await router_service.escalate_due(stores.router, publisher, table=table,
                                                  queue_for=priority.queue_for, now=at)
        finally:
            await publisher.close()
        published = [events.read(event) for event, _ in await read_topic(
            kafka_bootstrap, topics.EVENTS, until=2,
            keep=lambda event: event.ticket_id == ticket_id
            and event.type == TicketEventType.ESCALATED)]
        assert [(e.target, e.level, e.from_department, e.department) for e in published] == [
            ("first_response", 1, "public_sector", "key_accounts"),
            ("resolution", 1, "public_sector", "key_accounts")]
        queued = [record.topic for _, record in await read_topic(  # type: ignore[attr-defined]
            kafka_bootstrap, *lanes, until=1, keep=lambda event: event.ticket_id == ticket_id)]
        assert queued == [priority.queue_for("key_accounts", 2)]
        row = await stores.router.get(ticket_id)
        assert row is not None and row.department == "key_accounts"
        assert [(clock["target"], clock["level"], clock["outcome"])
                for clock in tickets_api._clocks(row.service_clocks)["clocks"]] == [
            ("first_response", 1, "missed"), ("resolution", 1, "missed")]
        seen_by_metrics = timeline.Timeline(ticket_id=ticket_id)
        routed_event = next(events.read(output.event) for output in first.outputs
                            if output.topic == topics.EVENTS)
        charged = []
        for event in [routed_event, *published]:
            seen_by_metrics, observations = service.applied(event, seen_by_metrics)
            charged += [(type(o).__name__, o.department) for o in observations
                        if isinstance(o, timeline.ServiceTarget | timeline.HandedOver)]
        assert sorted(charged) == [("HandedOver", "key_accounts"),
                                   ("ServiceTarget", "public_sector"),
                                   ("ServiceTarget", "public_sector")]
        assert await first_responses_attained(
            stores, seen_by_metrics, ("public_sector", "key_accounts"),
            as_of=seen + timedelta(days=1)) == {"public_sector": (0, 1),
                                                "key_accounts": (0, 0)}
