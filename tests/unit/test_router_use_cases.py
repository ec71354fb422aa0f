"""The router's use cases on routed tickets (services/router/service/): routing, transfer,
priority, reports and escalation, run with recording fakes wired by the router's own
bootstrap: no broker, no database, no sockets. Accepting a ticket: test_router_accept.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import IntegrityError

from services.core import access, events, kafka, moments, refusals, tickets, topics
from services.core.events import TicketEventType
from services.metrics import service as metrics_service
from services.metrics import stats
from services.metrics import timeline as metrics_timeline
from services.router import (
    clock_notices,
    clock_sending,
    clock_watch,
    escalation_targets,
    held_tickets,
    intake,
    intake_policy,
    ports,
    service,
    service_clocks,
    table_file,
    ticket_ids,
    tickets_api,
)
from services.router.intake_policy import REPORT_CLOCK_SKEW
from services.router.models import RoutedTicketRow
from services.router.service import Refusal, Refused, verdicts
from services.router.service.verdicts import HANDOVER_IN_FLIGHT, RESOLVED, TRACE_FULL
from services.router.store import Dispatch
from services.simulator import history
from services.webhooks import catalog, payloads
from tests.routing_tables import routing_table_file
from tests.unit import test_callbacks_openapi
from tests.unit.router_fakes import Wired, wired
from tests.unit.test_outage import as_sqlalchemy_raises

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ADMIN = access.Principal("cred-admin", access.Role.ADMIN, None)
PUBLIC_SECTOR = access.Principal("cred-ps", access.Role.DEPARTMENT, "public_sector")
DESK = access.Principal("cred-desk", access.Role.PLATFORM, "helpdesk")
WEBSHOP = access.Principal("cred-shop", access.Role.PLATFORM, "webshop")


def segmented(ticket_id: str = "t-1", segment: str = "government") -> tickets.SegmentedTicket:
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=NOW, platform="helpdesk")
    return ticket.with_segmentation(tickets.Segmentation(
        segment=segment, rule="gov", rules_version="r1", customer_known=True,
        tier="existing"))


def routed_ticket(router: Wired, *, clocks: bool = True) -> Dispatch:
    """A government ticket routed (to public_sector, first response within 4h) and
    recorded as the router's store would."""
    first = service.route(segmented(), table=router.router.table.current,
                          load=router.router.load, now=NOW, event_id="e-1",
                          correlation_id="corr-platform-1")
    dispatch = first.dispatch if clocks else Dispatch(**{**first.dispatch.__dict__,
                                                         "clocks": None})
    router.routed.add(dispatch)
    return dispatch


def as_the_metrics_read_it(deadlines: dict[str, datetime],
                           later: Sequence[events.TicketEvent],
                           ) -> tuple[metrics_timeline.Timeline,
                                      list[metrics_timeline.Observation]]:
    """routed_ticket's ticket through the metrics service: routed to public_sector at NOW
    with `deadlines` (first_response among them), then the `later` events. Its timeline
    and every observation made on the way."""
    timeline = metrics_timeline.Timeline("t-1")
    observed: list[metrics_timeline.Observation] = []
    for event in [events.TicketEvent(
            ticket_id="t-1", type=TicketEventType.ROUTED, occurred_at=NOW, received_at=NOW,
            department="public_sector", segment="government",
            first_response_deadline=deadlines["first_response"], deadlines=deadlines),
            *later]:
        timeline, observations = metrics_service.applied(event, timeline)
        observed += observations
    return timeline, observed


def public_sectors_failed_checks() -> float | None:
    """routing_router_clock_checks_failed_total for public_sector, as it stands."""
    return REGISTRY.get_sample_value("routing_router_clock_checks_failed_total",
                                     {"department": "public_sector"})


async def refused_back_to_public_sector(router: Wired, principal: access.Principal,
                                        asked: datetime) -> None:
    """`principal`'s transfer of t-1 to public_sector, where it is, asked at `asked` and
    again 10 s later: each refused as to the department it is in."""
    for again in (0, 10):
        answer = await service.transfer(
            "t-1", to_department="public_sector", reason="mine", from_department=None,
            principal=principal, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=asked + timedelta(seconds=again))
        assert answer == Refused(Refusal.CONFLICT, "the ticket is already with"
                                 " 'public_sector': transfer it to another department",
                                 "same_department")


class TestRoute:
    def test_a_government_ticket_goes_to_public_sector_within_its_target(self) -> None:
        router = wired()
        first = service.route(segmented(), table=router.router.table.current,
                              load=router.router.load, now=NOW, event_id="e-1",
                              correlation_id="corr-1")
        assert (first.dispatch.department, first.dispatch.priority,
                first.dispatch.deadline) == ("public_sector", 2, NOW + timedelta(hours=4))
        assert [output.topic for output in first.outputs] == [
            "dept.public_sector.high", topics.EVENTS]
        assert {output.event.correlation_id for output in first.outputs} == {"corr-1"}

    @pytest.mark.parametrize("segment", ["government", "business", "growth", "other"])
    @pytest.mark.parametrize("now", [NOW, datetime(2026, 12, 5, 20, tzinfo=UTC)],
                             ids=["open", "saturday_evening"])
    def test_the_first_response_clock_runs_to_the_decisions_deadline(
            self, segment: str, now: datetime) -> None:
        """One deadline, the decision's, on the ticket, its routed event and its clock,
        in business time (config/routing.yaml's departments' hours) as in elapsed."""
        table = table_file.load(Path(__file__).parents[2] / "config" / "routing.yaml")
        first = service.route(segmented(segment=segment), table=table, load=ports.no_load,
                              now=now, event_id="e-1", correlation_id="corr-1")
        routed = events.TicketEvent.model_validate(first.outputs[1].event.data)
        assert first.dispatch.clocks is not None
        assert {first.dispatch.clocks.deadlines()["first_response"],
                routed.first_response_deadline, (routed.deadlines or {})["first_response"]} \
            == {first.dispatch.deadline}

    def test_the_routed_copy_is_the_segmented_ticket_with_its_routing(self) -> None:
        router = wired()
        ticket = segmented()
        first = service.route(ticket, table=router.router.table.current,
                              load=router.router.load, now=NOW, event_id="e-1",
                              correlation_id="corr-1")
        routed = tickets.RoutedTicket.model_validate(first.dispatch.payload)
        expected = ticket.with_routing(routed.routing).model_dump(mode="json")
        assert list(first.dispatch.payload.items()) == list(expected.items())  # in order
        assert first.outputs[0].event.data == first.dispatch.payload

    def test_the_store_is_told_whose_ticket_and_when_it_was_received(self) -> None:
        """What an erasure of its customer is weighed against (services/router/erasures.py):
        a ticket received before it is not kept, though routed after it."""
        router = wired()
        first = service.route(segmented(), table=router.router.table.current,
                              load=router.router.load, now=NOW + timedelta(minutes=5),
                              event_id="e-1", correlation_id="corr-1")

        assert (first.dispatch.customer_id, first.dispatch.received_at) == ("c-1", NOW)


class TestTransfer:
    async def transfer(self, router: Wired, to_department: str,
                       principal: access.Principal = ADMIN) -> service.Transferred | Refused:
        return await service.transfer(
            "t-1", to_department=to_department, reason="needs the desk",
            from_department=None, principal=principal, routed=router.routed, held=router.held,
            publisher=router.publisher, table=router.router.table.current,
            queue_for=router.router.queue_for, now=NOW + timedelta(hours=1))

    async def refused(self, router: Wired, to_department: str) -> Refused:
        """A transfer of a ticket just routed to public_sector, which must be refused."""
        routed_ticket(router)
        answer = await self.transfer(router, to_department)
        assert isinstance(answer, Refused)
        return answer

    async def test_an_unknown_department_is_refused_naming_the_field(self) -> None:
        router = wired()
        refused = await self.refused(router, "no_such_department")
        assert (refused.refusal, refused.field) == (Refusal.INVALID, "body.to_department")
        assert router.publisher.published == [] and router.routed.recorded == []

    async def test_an_unknown_department_is_answered_with_the_tables_departments(
            self) -> None:
        """A typo is told what is accepted, as a department credential's subject is."""
        router = wired()
        refused = await self.refused(router, "publc_sector")
        departments = sorted(router.router.table.current.departments)
        assert refused.detail == (
            "no department 'publc_sector' in the routing table in force; its departments: "
            + ", ".join(departments))
        assert "public_sector" in departments

    async def test_the_deadline_is_kept_and_the_correlation_id_travels(self) -> None:
        router = wired()
        dispatch = routed_ticket(router)
        transferred = await self.transfer(router, "business_desk")
        assert transferred == service.Transferred("t-1", "business_desk")
        queue, lifecycle = router.publisher.published
        assert queue.topic == "dept.business_desk.high"  # priority 2 stays
        handed = tickets.RoutedTicket.model_validate(queue.event.data)
        assert handed.routing.first_response_deadline == dispatch.deadline
        assert lifecycle.event.type == TicketEventType.TRANSFERRED
        assert events.read(lifecycle.event).deadlines == {
            "first_response": dispatch.deadline}
        assert {queue.event.correlation_id, lifecycle.event.correlation_id} == {
            "corr-platform-1"}
        row = router.routed.rows["t-1"]
        assert row.department == "business_desk"
        assert row.first_response_deadline == dispatch.deadline
        assert router.routed.recorded == [("handover", "t-1")]

    async def test_its_reason_is_kept_in_the_trace(self) -> None:
        router = wired()
        routed_ticket(router)
        assert isinstance(await self.transfer(router, "business_desk"), service.Transferred)
        step = router.routed.rows["t-1"].trace[-1]
        assert (step["step"], step["to"], step["reason"]) == (
            "transferred", "business_desk", "needs the desk")

    async def test_the_lane_record_is_due_as_the_clock_counts_in_the_new_hours(
            self, tmp_path: Path) -> None:
        """Routed at 09:00 to public_sector (24/7, 4h: due 13:00), handed at 10:00 to
        business_desk, open from 12:00: the 3h left count from 12:00, due 15:00, on the
        lane record as on the event and the router's row."""
        router = wired(routing_table_file(tmp_path, departments={"business_desk": {
            "calendar": {"time_zone": "UTC", "hours": {"mon-fri": "12:00-17:00"}}}}))
        routed_ticket(router)
        await self.transfer(router, "business_desk")
        queue, lifecycle = router.publisher.published
        due = NOW + timedelta(hours=6)
        handed = tickets.RoutedTicket.model_validate(queue.event.data)
        assert handed.routing.first_response_deadline == due
        assert events.read(lifecycle.event).deadlines == {"first_response": due}
        assert router.routed.rows["t-1"].first_response_deadline == due

    async def test_a_department_transfers_only_its_own_tickets(self) -> None:
        router = wired()
        routed_ticket(router)
        await self.transfer(router, "business_desk")
        refused = await self.transfer(router, "customer_care", principal=PUBLIC_SECTOR)
        assert isinstance(refused, Refused) and refused.refusal is Refusal.FORBIDDEN

    async def test_a_from_department_the_ticket_is_not_with_is_a_conflict(self) -> None:
        """`from_department`, when given, is checked: a transfer by someone who read the
        ticket in another department is refused, and nothing is published."""
        router = wired()
        routed_ticket(router)
        refused = await service.transfer(
            "t-1", to_department="business_desk", reason="r", from_department="customer_care",
            principal=ADMIN, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=NOW + timedelta(hours=1))
        assert isinstance(refused, Refused)
        assert (refused.refusal, refused.error) == (Refusal.CONFLICT, "not_yours")
        assert router.publisher.published == [] and router.routed.recorded == []

    async def test_to_where_it_is_already_is_a_conflict(self) -> None:
        refused = await self.refused(wired(), "public_sector")
        assert (refused.refusal, refused.error) == (Refusal.CONFLICT, "same_department")

    async def test_kafka_unavailable_records_nothing(self) -> None:
        router = wired()
        routed_ticket(router)
        router.publisher.fail = True
        assert await self.transfer(router, "business_desk") == Refused(Refusal.UNAVAILABLE)
        assert router.routed.rows["t-1"].department == "public_sector"
        assert router.routed.recorded == []


class TestChangePriority:
    async def change(self, router: Wired, priority: int) -> service.Reprioritised | Refused:
        return await service.change_priority(
            "t-1", priority=priority, reason="outage", principal=PUBLIC_SECTOR,
            routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, now=NOW + timedelta(minutes=10))

    async def test_the_same_priority_is_a_conflict(self) -> None:
        router = wired()
        routed_ticket(router)
        refused = await self.change(router, 2)
        assert isinstance(refused, Refused)
        assert (refused.refusal, refused.error) == (Refusal.CONFLICT, "same_priority")

    async def test_a_new_priority_is_published_then_recorded(self) -> None:
        router = wired()
        routed_ticket(router)
        changed = await self.change(router, 1)
        assert isinstance(changed, service.Reprioritised) and changed.priority == 1
        assert router.publisher.types() == [TicketEventType.PRIORITY_CHANGED]
        assert router.publisher.published[0].event.correlation_id == "corr-platform-1"
        assert router.routed.rows["t-1"].priority == 1

    async def test_a_later_transfer_joins_the_new_prioritys_lane(self) -> None:
        """Not re-queued where it waits; handed on, it joins the lane of the priority it
        has now (5: low), not of the one it was routed with (2: high)."""
        router = wired()
        routed_ticket(router)
        assert isinstance(await self.change(router, 5), service.Reprioritised)
        transferred = await service.transfer(
            "t-1", to_department="business_desk", reason="r", from_department=None,
            principal=ADMIN, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=NOW + timedelta(minutes=20))
        assert isinstance(transferred, service.Transferred)
        [lane] = [item.topic for item in router.publisher.published
                  if item.topic.startswith("dept.")]
        assert lane == "dept.business_desk.low"


class TestATransferJustAfterADeadline:
    """Due at 13:00 in public_sector (escalation_to key_accounts; a second level 2h later
    to sales_support), handed on at 13:00:03 to customer_care (escalation_to
    business_desk): the clock watch, every ESCALATION_CHECK_SECONDS, may have run at
    13:00:02 or may run at 13:00:05. Either way the breach is public_sector's, escalated
    to key_accounts at once, and the transfer is judged after it: an admin's goes
    through (the ticket stays in customer_care, and the second level still comes), the
    department's is refused (the ticket is key_accounts' now), and the metrics count the
    miss once, for public_sector."""

    MISSED = NOW + timedelta(hours=4)

    def router(self, tmp_path: Path, *, clocks: bool = True) -> Wired:
        router = wired(routing_table_file(tmp_path, departments={"public_sector": {
            "second_escalation": {"after": "2h", "to": "sales_support"}}}))
        routed_ticket(router, clocks=clocks)
        return router

    async def watch(self, router: Wired, at: datetime) -> None:
        await TestEscalateDue().escalate(router, at)

    @staticmethod
    def its_breach_fails(monkeypatch: pytest.MonkeyPatch) -> None:
        """The breach's notice fails for the ticket's own reason."""
        def cannot(*args: object, **kwargs: object) -> bool:
            raise ValueError("the calendar does not open within ten years")

        monkeypatch.setattr(clock_notices, "escalation", cannot)

    async def transfer(self, router: Wired, principal: access.Principal
                       ) -> service.Transferred | Refused:
        return await service.transfer(
            "t-1", to_department="customer_care", reason="theirs", from_department=None,
            principal=principal, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=self.MISSED + timedelta(seconds=3))

    async def in_either_order(self, router: Wired, watch_first: bool,
                              principal: access.Principal) -> service.Transferred | Refused:
        if watch_first:
            await self.watch(router, self.MISSED + timedelta(seconds=2))
        answer = await self.transfer(router, principal)
        await self.watch(router, self.MISSED + timedelta(seconds=5))
        return answer

    def outcome(self, router: Wired) -> tuple[object, ...]:
        """Where the ticket is, its hand-overs, its clock, and what the metrics count."""
        row = router.routed.rows["t-1"]
        [clock] = tickets_api._clocks(row.service_clocks)["clocks"]
        handed = [(step["step"], step.get("level"), step["from"], step["to"])
                  for step in row.trace if step["step"] in ("escalated", "transferred")]
        timeline, observed = as_the_metrics_read_it(
            {"first_response": self.MISSED},
            [events.read(item.event) for item in router.publisher.published
             if item.topic == topics.EVENTS])
        counted = [(type(o).__name__, o.department) for o in observed
                   if isinstance(o, metrics_timeline.TargetDecided
                                 | metrics_timeline.ServiceTarget
                                 | metrics_timeline.ClockEscalated)]
        return (row.department, handed, clock["level"], clock["outcome"], counted,
                timeline.department)

    @pytest.mark.parametrize("watch_first", [True, False])
    async def test_an_admins_transfer_comes_after_the_breach(
            self, tmp_path: Path, watch_first: bool) -> None:
        router = self.router(tmp_path)
        answer = await self.in_either_order(router, watch_first, ADMIN)
        assert answer == service.Transferred("t-1", "customer_care")
        charged = [("ClockEscalated", "public_sector"), ("ServiceTarget", "public_sector"),
                   ("TargetDecided", "public_sector")]
        assert self.outcome(router) == (
            "customer_care",
            [("escalated", 1, "public_sector", "key_accounts"),
             ("transferred", None, "key_accounts", "customer_care")],
            1, "missed", charged, "customer_care")
        # Not escalated out of customer_care on that breach; its second level comes.
        await self.watch(router, self.MISSED + timedelta(hours=3))
        assert router.routed.rows["t-1"].department == "sales_support"
        assert [step.get("level") for step in router.routed.rows["t-1"].trace
                if step["step"] == "escalated"] == [1, 2]

    @pytest.mark.parametrize("watch_first", [True, False])
    async def test_the_departments_transfer_is_refused_the_ticket_escalated(
            self, tmp_path: Path, watch_first: bool) -> None:
        router = self.router(tmp_path)
        answer = await self.in_either_order(router, watch_first, PUBLIC_SECTOR)
        # Told where its ticket went, whether its own request or the watch sent the breach
        # (403 alike, escalated_away).
        assert answer == (self.escalated_before if watch_first else self.escalated_away)
        assert self.outcome(router) == (
            "key_accounts", [("escalated", 1, "public_sector", "key_accounts")],
            1, "missed", [("ClockEscalated", "public_sector"),
                          ("ServiceTarget", "public_sector"),
                          ("TargetDecided", "public_sector")], "key_accounts")

    @pytest.mark.parametrize("watch_first", [True, False])
    async def test_a_warning_due_before_a_transfer_is_sent_for_the_first_department(
            self, tmp_path: Path, watch_first: bool) -> None:
        """Warned at 75% of 4h (12:00), handed on at 12:00:03: the warning is
        public_sector's, sent once, whether the watch ran at 12:00:02 or not (the
        transfer's rebase would drop a warning past due, as one sent)."""
        router = wired(routing_table_file(tmp_path, warning_share=0.75))
        routed_ticket(router)
        warned = NOW + timedelta(hours=3)
        if watch_first:
            await self.watch(router, warned + timedelta(seconds=2))
        answer = await service.transfer(
            "t-1", to_department="customer_care", reason="theirs", from_department=None,
            principal=PUBLIC_SECTOR, routed=router.routed, held=router.held,
            publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=warned + timedelta(seconds=3))
        await self.watch(router, warned + timedelta(seconds=5))
        assert answer == service.Transferred("t-1", "customer_care")
        assert [item.event.data["department"] for item in router.publisher.published
                if item.event.type == TicketEventType.TARGET_WARNING] == ["public_sector"]

    @property
    def escalated_away(self) -> Refused:
        return verdicts.escalated_away([clock_notices.Escalated(
            "first_response", 1, self.MISSED, "public_sector", "key_accounts")],
            asked_at=self.MISSED + timedelta(seconds=3), department="key_accounts")

    @property
    def escalated_before(self) -> Refused:
        """The answer to public_sector, its ticket escalated by the watch at 13:00:02."""
        return verdicts.escalated_away_before([clock_notices.Escalated(
            "first_response", 1, self.MISSED, "public_sector", "key_accounts")],
            escalated_at=self.MISSED + timedelta(seconds=2), department="key_accounts")

    def test_the_refusal_after_the_watchs_breach_says_which_deadline_when_and_where(
            self) -> None:
        assert self.escalated_before == Refused(
            Refusal.FORBIDDEN,
            f"the ticket was escalated at {(self.MISSED + timedelta(seconds=2)).isoformat()},"
            " before this request: its first_response deadline passed at"
            f" {self.MISSED.isoformat()}, unanswered, escalating it (level 1) from"
            " 'public_sector' to 'key_accounts'. The ticket is with 'key_accounts' now, and"
            " a department credential acts for its own department only: ask 'key_accounts'"
            " or an admin", "escalated_away")

    async def test_a_retry_after_its_own_requests_breach_is_told_alike(
            self, tmp_path: Path) -> None:
        """The request that sent the breach is told so; asked again, the ticket escalated
        before it: told where it went all the same, not a plain `forbidden`."""
        router = self.router(tmp_path)
        assert await self.transfer(router, PUBLIC_SECTOR) == self.escalated_away
        again = await service.transfer(
            "t-1", to_department="customer_care", reason="theirs", from_department=None,
            principal=PUBLIC_SECTOR, routed=router.routed, held=router.held,
            publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=self.MISSED + timedelta(seconds=9))
        assert again == verdicts.escalated_away_before(
            self.escalated_away_clocks, escalated_at=self.MISSED + timedelta(seconds=3),
            department="key_accounts")

    async def test_a_report_after_the_watchs_breach_is_told_alike(
            self, tmp_path: Path) -> None:
        """public_sector reporting its response after the watch escalated the ticket to
        key_accounts: refused as its transfer is, told where the ticket went (a report
        by the department holding it, or by an admin, goes through)."""
        router = self.router(tmp_path)
        await self.watch(router, self.MISSED + timedelta(seconds=2))

        async def report(principal: access.Principal) -> service.Recorded | Refused:
            return await service.record_report(
                "t-1", TicketEventType.RESPONDED, department=None, occurred_at=None,
                principal=principal, correlation_id=None, routed=router.routed, held=router.held,
                publisher=router.publisher,
                table=router.router.table.current, now=self.MISSED + timedelta(seconds=3))

        assert await report(PUBLIC_SECTOR) == self.escalated_before
        assert await report(access.Principal("cred-cc", access.Role.DEPARTMENT, "customer_care")) \
            == verdicts.ACTS_FOR_OWN
        assert isinstance(await report(
            access.Principal("cred-ka", access.Role.DEPARTMENT, "key_accounts")), service.Recorded)

    @property
    def escalated_away_clocks(self) -> list[clock_notices.Escalated]:
        return [clock_notices.Escalated("first_response", 1, self.MISSED, "public_sector",
                                        "key_accounts")]

    @pytest.mark.parametrize("asked", ["transfer", "priority"])
    async def test_a_department_that_never_held_it_is_told_nothing_of_it(
            self, tmp_path: Path, asked: str) -> None:
        """customer_care (never its holder) asks after the watch escalated public_sector's
        ticket to key_accounts: the plain 403, nothing of where another department's
        ticket went."""
        router = self.router(tmp_path)
        await self.watch(router, self.MISSED + timedelta(seconds=2))
        care = access.Principal("cred-care", access.Role.DEPARTMENT, "customer_care")
        at = self.MISSED + timedelta(seconds=3)
        answer = await service.transfer(
            "t-1", to_department="business_desk", reason="theirs", from_department=None,
            principal=care, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=at) if asked == "transfer" else await service.change_priority(
            "t-1", priority=1, reason="outage", principal=care, routed=router.routed,
            held=router.held, publisher=router.publisher, table=router.router.table.current, now=at)
        assert answer == verdicts.ACTS_FOR_OWN

    async def test_a_department_it_was_escalated_from_is_told_nothing_once_it_moved_on(
            self, tmp_path: Path) -> None:
        """Escalated from public_sector to key_accounts, then transferred by an admin to
        customer_care: public_sector is not told where the ticket is now (it was not
        escalated there from public_sector)."""
        router = self.router(tmp_path)
        await self.watch(router, self.MISSED + timedelta(seconds=2))
        assert await self.transfer(router, ADMIN) == service.Transferred("t-1",
                                                                         "customer_care")
        assert await service.change_priority(
            "t-1", priority=1, reason="outage", principal=PUBLIC_SECTOR,
            routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current,
            now=self.MISSED + timedelta(seconds=4)) == verdicts.ACTS_FOR_OWN

    async def test_a_second_level_is_told_to_the_department_it_left(
            self, tmp_path: Path) -> None:
        """Escalated (level 1) public_sector -> key_accounts at 13:00:02; still unanswered
        at 15:00 (business time: key_accounts is open 24/7), its second level to
        sales_support: key_accounts is told that one, public_sector nothing."""
        router = self.router(tmp_path)
        await self.watch(router, self.MISSED + timedelta(seconds=2))
        second = self.MISSED + timedelta(seconds=2, hours=2)
        await self.watch(router, second + timedelta(seconds=1))
        assert router.routed.rows["t-1"].department == "sales_support"
        at = second + timedelta(seconds=2)
        keys = access.Principal("cred-keys", access.Role.DEPARTMENT, "key_accounts")
        answers = [await service.change_priority(
            "t-1", priority=1, reason="outage", principal=principal, routed=router.routed,
            held=router.held, publisher=router.publisher, table=router.router.table.current, now=at)
            for principal in (keys, PUBLIC_SECTOR)]
        assert answers == [verdicts.escalated_away_before(
            [clock_notices.Escalated("first_response", 2, second, "key_accounts",
                                     "sales_support")],
            escalated_at=second + timedelta(seconds=1), department="sales_support"),
            verdicts.ACTS_FOR_OWN]

    def test_an_escalation_recorded_before_steps_kept_when_it_fell_due(self) -> None:
        """A ticket without clocks escalated before its trace steps kept `due`: told
        which deadline and where all the same, when it fell due as unknown."""
        at = self.MISSED + timedelta(seconds=2)
        row = RoutedTicketRow(ticket_id="t-1", department="key_accounts", trace=[
            {"at": NOW.isoformat(), "step": "routed", "department": "public_sector"},
            {"at": at.isoformat(), "step": "escalated", "from": "public_sector",
             "to": "key_accounts", "reason": f"no first response by {self.MISSED}"}])
        assert verdicts.acts_for_own(row, PUBLIC_SECTOR) == verdicts.escalated_away_before(
            [clock_notices.Escalated("first_response", 1, None, "public_sector",
                                     "key_accounts")], escalated_at=at,
            department="key_accounts")
        assert "deadline passed at an unknown moment" in verdicts.acts_for_own(
            row, PUBLIC_SECTOR).detail

    def test_the_refusal_says_which_deadline_this_request_sent_and_where_it_went(
            self) -> None:
        assert self.escalated_away == Refused(
            Refusal.FORBIDDEN,
            f"this request, at {(self.MISSED + timedelta(seconds=3)).isoformat()}, first"
            " sent the breach the ticket owed (the clock watch had not sent it yet): its"
            f" first_response deadline passed at {self.MISSED.isoformat()}, unanswered,"
            " escalating it (level 1) from 'public_sector' to 'key_accounts'. The ticket"
            " is with 'key_accounts' now, and a department credential acts for its own"
            " department only: ask 'key_accounts' or an admin", "escalated_away")

    @pytest.mark.parametrize(("verdict", "code"), [("escalated_away", "escalated_away"),
                                                   ("escalated_before", "escalated_away"),
                                                   ("acts_for_own", "forbidden")])
    def test_the_answer_is_a_403_with_its_code(self, verdict: str, code: str) -> None:
        refusal = {"escalated_away": self.escalated_away,
                   "escalated_before": self.escalated_before,
                   "acts_for_own": verdicts.ACTS_FOR_OWN}[verdict]
        with pytest.raises(refusals.Refused) as raised:
            intake.refused(refusal, wired().router, "transfer")
        assert (raised.value.status, raised.value.error, raised.value.detail) == (
            403, code, refusal.detail)

    @pytest.mark.parametrize("clocks", [True, False], ids=["clocks", "no clocks"])
    async def test_a_transfer_before_the_deadline_sends_nothing_first(
            self, tmp_path: Path, clocks: bool) -> None:
        router = self.router(tmp_path, clocks=clocks)
        answer = await service.transfer(
            "t-1", to_department="customer_care", reason="theirs", from_department=None,
            principal=PUBLIC_SECTOR, routed=router.routed, held=router.held,
            publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=self.MISSED)  # the deadline itself is in time
        assert answer == service.Transferred("t-1", "customer_care")
        assert TicketEventType.ESCALATED not in router.publisher.types()
        assert router.routed.rows["t-1"].trace[-1]["at"] == self.MISSED.isoformat()

    async def test_a_priority_change_comes_after_the_breach_too(
            self, tmp_path: Path) -> None:
        """As a transfer: the department that missed the deadline no longer holds the
        ticket, whether the watch ran before its priority change or not."""
        router = self.router(tmp_path)
        changed = await service.change_priority(
            "t-1", priority=1, reason="outage", principal=PUBLIC_SECTOR,
            routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, now=self.MISSED + timedelta(seconds=3))
        assert changed == self.escalated_away
        assert router.routed.rows["t-1"].department == "key_accounts"
        assert router.routed.rows["t-1"].priority == 2

    async def test_a_breach_that_fails_for_the_tickets_own_reason_holds_up_no_transfer(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """As the watch treats it (checked again later, counted): the transfer is made on
        the ticket as it is, not refused or failed for a notice it could not send."""
        router = self.router(tmp_path)
        self.its_breach_fails(monkeypatch)
        failed = public_sectors_failed_checks() or 0.0
        assert await self.transfer(router, ADMIN) == service.Transferred("t-1",
                                                                         "customer_care")
        assert router.routed.rows["t-1"].department == "customer_care"
        assert public_sectors_failed_checks() == failed + 1

    async def test_a_breach_that_failed_before_a_refused_transfer_waits_as_the_watchs(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A breach failing for the ticket's own reason before a transfer that is then
        refused (to where the ticket is) is counted once and checked again
        CHECK_AGAIN_AFTER_FAILURE later, as the watch would have it: the transfer asked
        again, and the watch meanwhile, do not try it (nor count it) again before."""
        router = self.router(tmp_path)
        self.its_breach_fails(monkeypatch)
        failed = public_sectors_failed_checks() or 0.0
        asked = self.MISSED + timedelta(seconds=3)
        await refused_back_to_public_sector(router, PUBLIC_SECTOR, asked)
        await self.watch(router, asked + timedelta(seconds=15))
        row = router.routed.rows["t-1"]
        assert row.next_clock_check == asked + clock_watch.CHECK_AGAIN_AFTER_FAILURE
        assert public_sectors_failed_checks() == failed + 1

    async def test_kafka_unavailable_for_the_breach_is_unavailable(
            self, tmp_path: Path) -> None:
        router = self.router(tmp_path)
        router.publisher.fail = True
        assert await self.transfer(router, ADMIN) == Refused(Refusal.UNAVAILABLE)
        assert router.routed.rows["t-1"].department == "public_sector"
        assert router.routed.rows["t-1"].handover_until is None


class TestATicketWithoutClocksJustAfterItsDeadline:
    """A ticket routed before migration 0010 has no clocks (none were given it since):
    its first-response deadline is escalated by the older check (escalation.escalate),
    under the same claim. A transfer asked just after that deadline, before the check
    came to it, comes after its escalation too (clock_watch.send_owed), as one of a
    ticket with clocks does: the breach is public_sector's, escalated to key_accounts
    once, whether the check ran first or not. It was transferred first, then escalated
    out of the department it went to (moved twice, the breach charged to a department
    that never held it when its deadline passed); a department's transfer went
    through."""

    MISSED = TestATransferJustAfterADeadline.MISSED

    def router(self) -> Wired:
        router = wired()
        routed_ticket(router, clocks=False)
        return router

    async def asked(self, router: Wired, check_first: bool, principal: access.Principal,
                    asked: str) -> object:
        if check_first:
            await TestEscalateDue().escalate(router, self.MISSED + timedelta(seconds=2))
        at = self.MISSED + timedelta(seconds=3)
        answer: object
        if asked == "transfer":
            answer = await service.transfer(
                "t-1", to_department="customer_care", reason="theirs",
                from_department=None, principal=principal, routed=router.routed, held=router.held,
                publisher=router.publisher, table=router.router.table.current,
                queue_for=router.router.queue_for, now=at)
        else:
            answer = await service.change_priority(
                "t-1", priority=1, reason="outage", principal=principal,
                routed=router.routed, held=router.held, publisher=router.publisher,
                table=router.router.table.current, now=at)
        await TestEscalateDue().escalate(router, self.MISSED + timedelta(seconds=5))
        return answer

    @staticmethod
    def its_escalation_fails(monkeypatch: pytest.MonkeyPatch) -> None:
        """The escalation fails for the ticket's own reason."""
        def cannot(*args: object, **kwargs: object) -> object:
            raise ValueError("the table in force cannot say where it goes")

        monkeypatch.setattr(escalation_targets, "on_breach", cannot)

    @staticmethod
    def handed(router: Wired) -> list[tuple[str, str, str]]:
        return [(step["step"], step["from"], step["to"])
                for step in router.routed.rows["t-1"].trace
                if step["step"] in ("escalated", "transferred")]

    @pytest.mark.parametrize("check_first", [True, False])
    async def test_an_admins_transfer_comes_after_the_escalation(
            self, check_first: bool) -> None:
        router = self.router()
        answer = await self.asked(router, check_first, ADMIN, "transfer")
        assert answer == service.Transferred("t-1", "customer_care")
        assert self.handed(router) == [("escalated", "public_sector", "key_accounts"),
                                       ("transferred", "key_accounts", "customer_care")]
        assert router.routed.rows["t-1"].department == "customer_care"
        assert router.publisher.types().count(TicketEventType.ESCALATED) == 1

    @pytest.mark.parametrize("asked", ["transfer", "priority"])
    @pytest.mark.parametrize("check_first", [True, False])
    async def test_the_departments_request_is_refused_the_ticket_escalated(
            self, check_first: bool, asked: str) -> None:
        router = self.router()
        answer = await self.asked(router, check_first, PUBLIC_SECTOR, asked)
        assert answer == (TestATransferJustAfterADeadline().escalated_before if check_first
                          else TestATransferJustAfterADeadline().escalated_away)
        assert self.handed(router) == [("escalated", "public_sector", "key_accounts")]
        row = router.routed.rows["t-1"]
        assert (row.department, row.priority, row.escalated) == ("key_accounts", 2, True)

    @pytest.mark.parametrize("asked", ["transfer", "priority"])
    async def test_the_request_whose_escalation_failed_goes_through_itself(
            self, monkeypatch: pytest.MonkeyPatch, asked: str) -> None:
        """The admin's request that tried the escalation (failed, postponed: its next
        check moved on) is made on the ticket as it is then, in the same request, not
        refused as changed since it was read."""
        router = self.router()
        self.its_escalation_fails(monkeypatch)
        answer = await self.asked(router, False, ADMIN, asked)
        assert answer == (service.Transferred("t-1", "customer_care") if asked == "transfer"
                          else service.Reprioritised("t-1", 1, None))
        assert TicketEventType.ESCALATED not in router.publisher.types()

    async def test_an_escalation_that_fails_for_the_tickets_own_reason_holds_up_no_transfer(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """As a ticket with clocks has it (clock_watch.checked_again_later): counted, the
        transfer made on the ticket as it is, not failed (a 5xx) for an escalation it
        could not send, and the escalation tried again CHECK_AGAIN_AFTER_FAILURE later,
        not by the check meanwhile nor a hand-over asked again."""
        router = self.router()
        self.its_escalation_fails(monkeypatch)
        failed = public_sectors_failed_checks() or 0.0
        asked = self.MISSED + timedelta(seconds=3)
        await refused_back_to_public_sector(router, ADMIN, asked)
        assert await TestEscalateDue().escalate(router, asked + timedelta(seconds=15)) == 0
        assert router.routed.rows["t-1"].next_clock_check == \
            asked + clock_watch.CHECK_AGAIN_AFTER_FAILURE
        assert public_sectors_failed_checks() == failed + 1
        answer = await service.transfer(
            "t-1", to_department="customer_care", reason="theirs", from_department=None,
            principal=ADMIN, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=asked + timedelta(seconds=20))
        assert answer == service.Transferred("t-1", "customer_care")
        assert self.handed(router) == [("transferred", "public_sector", "customer_care")]
        assert TicketEventType.ESCALATED not in router.publisher.types()


class TestDeadlinesPassedTogether:
    """public_sector's ticket (escalation_to key_accounts, a second level 2h later to
    sales_support; key_accounts escalates to account_development) due 13:00 (first
    response, 4h) and 15:00 (resolution, 6h), 75% warnings, first seen past both
    deadlines while public_sector still holds it: the clock watch's lease holder down
    for a while, or a transfer asked then. Both deadlines passed while public_sector held
    it: both breaches are public_sector's, escalated at once to key_accounts (each clock
    level 1, its second level from public_sector's second_escalation; the resolution's
    warning, due 13:30, superseded by its breach); key_accounts is not charged with a
    breach it never held the ticket for, and the ticket is moved once, whenever the watch
    comes to it and whether a hand-over sent them first."""

    FIRST = NOW + timedelta(hours=4)
    RESOLUTION = NOW + timedelta(hours=6)

    def router(self, tmp_path: Path, resolution: str = "6h") -> Wired:
        router = wired(routing_table_file(
            tmp_path, warning_share=0.75,
            departments={"public_sector": {
                "second_escalation": {"after": "2h", "to": "sales_support"}}},
            routes={"public_sector": {"resolution_target": resolution}}))
        routed_ticket(router)
        return router

    async def watch(self, router: Wired, at: datetime) -> int:
        return await TestEscalateDue().escalate(router, at)

    def outcome(self, router: Wired) -> tuple[object, ...]:
        """Where the ticket is, its escalations, its clocks, the notices published and
        what the metrics count for whom."""
        row = router.routed.rows["t-1"]
        shown = [(clock["target"], clock["level"], clock["outcome"])
                 for clock in tickets_api._clocks(row.service_clocks)["clocks"]]
        handed = [(step["step"], step.get("level"), step.get("target"), step["from"],
                   step["to"]) for step in row.trace
                  if step["step"] in ("escalated", "transferred")]
        published = [events.read(item.event) for item in router.publisher.published
                     if item.topic == topics.EVENTS]
        notices = [(e.type, e.target, e.level, e.from_department, e.department)
                   for e in published]
        _, observed = as_the_metrics_read_it(
            {"first_response": self.FIRST, "resolution": self.RESOLUTION}, published)
        counted = [(type(o).__name__, getattr(o, "target", None), o.department)
                   for o in observed
                   if isinstance(o, metrics_timeline.ServiceTarget
                                 | metrics_timeline.ClockEscalated
                                 | metrics_timeline.ClockWarning
                                 | metrics_timeline.HandedOver)]
        return row.department, handed, shown, notices, sorted(counted)

    ESCALATED_ONCE = (
        "key_accounts",
        [("escalated", 1, "first_response", "public_sector", "key_accounts"),
         ("escalated", 1, "resolution", "public_sector", "key_accounts")],
        [("first_response", 1, "missed"), ("resolution", 1, "missed")],
        [(TicketEventType.ESCALATED, "first_response", 1, "public_sector", "key_accounts"),
         (TicketEventType.ESCALATED, "resolution", 1, "public_sector", "key_accounts")],
        sorted([("ClockEscalated", "first_response", "public_sector"),
                ("ClockEscalated", "resolution", "public_sector"),
                ("ServiceTarget", "first_response", "public_sector"),
                ("ServiceTarget", "resolution", "public_sector"),
                ("HandedOver", None, "key_accounts")]))

    @pytest.mark.parametrize("first_check", [
        RESOLUTION + timedelta(seconds=2),  # the first check after both deadlines
        RESOLUTION + timedelta(hours=1, minutes=30),  # the lease holder down 2.5h
    ])
    async def test_the_watch_escalates_both_breaches_once_for_the_department_that_held_it(
            self, tmp_path: Path, first_check: datetime) -> None:
        router = self.router(tmp_path)
        # The first response's warning (12:00) was sent in time; then the watch stopped.
        assert await self.watch(router, NOW + timedelta(hours=3, seconds=1)) == 1
        del router.publisher.published[:]
        await self.watch(router, first_check)
        for later in (5, 10):  # the next checks move nothing on
            assert await self.watch(router, first_check + timedelta(seconds=later)) == 0
        assert self.outcome(router) == self.ESCALATED_ONCE
        # Both second levels come together, once: one move to sales_support.
        assert await self.watch(router, first_check + timedelta(hours=2)) == 2
        assert await self.watch(router, first_check + timedelta(hours=2, seconds=5)) == 0
        row = router.routed.rows["t-1"]
        assert row.department == "sales_support"
        assert [(step["level"], step["to"]) for step in row.trace
                if step["step"] == "escalated"] == [
            (1, "key_accounts"), (1, "key_accounts"), (2, "sales_support"),
            (2, "sales_support")]

    async def test_a_transfer_then_sends_them_once_before_it(self, tmp_path: Path) -> None:
        """An admin's transfer to customer_care at 16:30, the watch down since 12:00: the
        two breaches go to key_accounts together, then the transfer moves the ticket on
        from there, and it stays in customer_care."""
        router = self.router(tmp_path)
        assert await self.watch(router, NOW + timedelta(hours=3, seconds=1)) == 1
        del router.publisher.published[:]
        at = self.RESOLUTION + timedelta(minutes=30)
        answer = await service.transfer(
            "t-1", to_department="customer_care", reason="theirs", from_department=None,
            principal=ADMIN, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for, now=at)
        assert answer == service.Transferred("t-1", "customer_care")
        assert await self.watch(router, at + timedelta(seconds=5)) == 0
        department, handed, shown, notices, counted = self.outcome(router)
        want = self.ESCALATED_ONCE
        assert (department, handed, shown, notices[:2]) == (
            "customer_care",
            [*want[1], ("transferred", None, None, "key_accounts", "customer_care")],
            want[2], want[3])
        assert counted == sorted([*want[4], ("HandedOver", None, "customer_care")])

    async def test_another_clocks_warning_due_with_a_breach_is_sent_before_it(
            self, tmp_path: Path) -> None:
        """The resolution given 8h (warned 15:00, due 17:00), first seen at 15:30: its
        warning is public_sector's, sent before the first response's escalation (whose
        rebase would drop a warning past due, as one sent), and not sent again."""
        router = self.router(tmp_path, resolution="8h")
        seen = NOW + timedelta(hours=6, minutes=30)
        # The first response's own warning (12:00) is superseded by its breach.
        assert await self.watch(router, seen) == 2
        assert await self.watch(router, seen + timedelta(seconds=5)) == 0
        assert [(e.type, e.target, e.department) for e in (
            events.read(item.event) for item in router.publisher.published
            if item.topic == topics.EVENTS)] == [
            (TicketEventType.TARGET_WARNING, "resolution", "public_sector"),
            (TicketEventType.ESCALATED, "first_response", "key_accounts")]

    async def test_a_platform_tells_the_callbacks_of_one_hand_over_apart(
            self, tmp_path: Path) -> None:
        """Both breaches sent before a transfer asked at 15:30: one hand-over, and a
        `ticket.escalated` callback per target, as documented (README, "Service-level
        lifecycle"). The platform is told so, in each callback's OpenAPI description: the
        fields that tell the two apart, and those that say they are one hand-over."""
        router = self.router(tmp_path)
        at = self.RESOLUTION + timedelta(minutes=30)
        assert await service.transfer(
            "t-1", to_department="customer_care", reason="theirs", from_department=None,
            principal=ADMIN, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, queue_for=router.router.queue_for,
            now=at) == service.Transferred("t-1", "customer_care")
        sent = [(item.event.id, payloads.callback_of(
            events.read(item.event), correlation_id=item.event.correlation_id))
            for item in router.publisher.published if item.topic == topics.EVENTS
            and item.event.type == TicketEventType.ESCALATED]
        [(first_id, first), (second_id, second)] = sent
        assert catalog.delivery_id(first_id) != catalog.delivery_id(second_id)
        one, other = (body.data.model_dump(exclude_none=True) for body in (first, second))
        apart = sorted(name for name in one | other if one.get(name) != other.get(name))
        together = ["department", "from_department", "occurred_at"]
        assert (apart, [one[name] for name in together]) == (
            ["target"], ["key_accounts", "public_sector", at])
        told = test_callbacks_openapi.operation("ticket.escalated")["description"]
        assert all(f"data.{name}" in told for name in [*apart, "level", *together])

    async def test_a_deadline_passed_after_the_escalation_is_the_next_departments(
            self, tmp_path: Path) -> None:
        """The rule's other side: the watch escalated the first response at 13:00:02;
        the resolution deadline passed at 15:00 while key_accounts held the ticket, so
        that breach is key_accounts', escalated to account_development (at 15:00:01,
        before the first response's second level)."""
        router = self.router(tmp_path)
        await self.watch(router, self.FIRST + timedelta(seconds=2))
        await self.watch(router, self.RESOLUTION + timedelta(seconds=1))
        row = router.routed.rows["t-1"]
        assert row.department == "account_development"
        assert [(step["target"], step["from"], step["to"]) for step in row.trace
                if step["step"] == "escalated"] == [
            ("first_response", "public_sector", "key_accounts"),
            ("resolution", "key_accounts", "account_development")]


class TestEscalationsDueTogether:
    """A breach and a second level, or second levels naming different departments, due
    at one check are one hand-over, to where service_clocks.escalation says: the second
    level due first leads; each clock is escalated at its own level, charged to the
    department holding the ticket, which is moved once, not on again at the next check
    out of a department that never held it when those notices fell due."""

    FIRST = NOW + timedelta(hours=4)
    RESOLUTION = NOW + timedelta(hours=6)

    def router(self, tmp_path: Path) -> Wired:
        """public_sector (escalation_to key_accounts, a second level 2h later to
        sales_support), key_accounts (escalation_to account_development, a second level
        1h later to business_desk); first response 4h (13:00), resolution 6h (15:00)."""
        router = wired(routing_table_file(
            tmp_path,
            departments={
                "public_sector": {"second_escalation": {"after": "2h", "to": "sales_support"}},
                "key_accounts": {"second_escalation": {"after": "1h", "to": "business_desk"}}},
            routes={"public_sector": {"resolution_target": "6h"}}))
        routed_ticket(router)
        return router

    async def watch(self, router: Wired, at: datetime) -> int:
        return await TestEscalateDue().escalate(router, at)

    def escalations(self, router: Wired) -> list[tuple[object, ...]]:
        """Each escalation event: its target, level, from and to."""
        return [(e.target, e.level, e.from_department, e.department) for e in (
            events.read(item.event) for item in router.publisher.published
            if item.topic == topics.EVENTS) if e.type == TicketEventType.ESCALATED]

    async def test_a_breach_and_a_second_level_go_once_to_the_second_level(
            self, tmp_path: Path) -> None:
        """The first response breached 13:00:02 (to key_accounts, its second level due
        15:00:02 to sales_support); the resolution's deadline passes at 15:00 in
        key_accounts; the watch comes at 15:00:05: one hand-over, key_accounts to
        sales_support, the breach at level 1 and the second level at 2."""
        router = self.router(tmp_path)
        assert await self.watch(router, self.FIRST + timedelta(seconds=2)) == 1
        before = escalations("key_accounts", 2)
        assert await self.watch(router, self.RESOLUTION + timedelta(seconds=5)) == 2
        assert await self.watch(router, self.RESOLUTION + timedelta(seconds=10)) == 0
        assert self.escalations(router) == [
            ("first_response", 1, "public_sector", "key_accounts"),
            ("resolution", 1, "key_accounts", "sales_support"),
            ("first_response", 2, "key_accounts", "sales_support")]
        assert router.routed.rows["t-1"].department == "sales_support"
        assert [item.topic for item in router.publisher.published
                if item.topic.startswith("dept.")] == [
            "dept.key_accounts.high", "dept.sales_support.high"]
        assert escalations("key_accounts", 2) == before + 1

    async def test_second_levels_naming_different_departments_go_once_to_the_first_due(
            self, tmp_path: Path) -> None:
        """The watch at 13:00:02 (first response to key_accounts, level 2 due 15:00:02 to
        sales_support) and 15:00:01 (resolution, key_accounts' breach, to
        account_development, level 2 due 16:00:01 to business_desk), then down till
        16:30: both second levels go in one hand-over to sales_support, due first."""
        router = self.router(tmp_path)
        await self.watch(router, self.FIRST + timedelta(seconds=2))
        await self.watch(router, self.RESOLUTION + timedelta(seconds=1))
        assert router.routed.rows["t-1"].department == "account_development"
        seen = self.RESOLUTION + timedelta(hours=1, minutes=30)
        assert await self.watch(router, seen) == 2
        assert await self.watch(router, seen + timedelta(seconds=5)) == 0
        assert self.escalations(router)[2:] == [
            ("first_response", 2, "account_development", "sales_support"),
            ("resolution", 2, "account_development", "sales_support")]
        assert router.routed.rows["t-1"].department == "sales_support"

    @pytest.mark.parametrize("watched", [
        (),  # both breaches (and the resolution's warning, superseded) at 15:30
        (FIRST + timedelta(seconds=2),),  # a breach with a second level
        (FIRST + timedelta(seconds=2), RESOLUTION + timedelta(seconds=1)),  # two levels 2
    ])
    async def test_what_one_sending_leaves_is_nothing_owed_then(
            self, tmp_path: Path, watched: tuple[datetime, ...]) -> None:
        """What send_owed's bound of two turns stands on: the first sends all that is
        owed at the moment, and its marks and rebase leave nothing due by then."""
        router = self.router(tmp_path)
        for at in watched:
            await self.watch(router, at)
        at = self.RESOLUTION + timedelta(hours=1, minutes=30)
        row = router.routed.rows["t-1"]
        assert service_clocks.owes_notice(service_clocks.from_json(row.service_clocks), at)
        sent = await clock_watch.send_owed(
            router.routed, router.publisher, row, table=router.router.table.current,
            queue_for=router.router.queue_for, now=at)
        assert sent is not None and sent.count
        after = router.routed.rows["t-1"]
        assert not service_clocks.owes_notice(
            service_clocks.from_json(after.service_clocks), at)


class TestRecordReport:
    async def report(self, router: Wired, occurred_at: datetime | None,
                     principal: access.Principal = PUBLIC_SECTOR,
                     ) -> service.Recorded | Refused:
        return await service.record_report(
            "t-1", TicketEventType.RESPONDED, department=None, occurred_at=occurred_at,
            principal=principal, correlation_id=None, routed=router.routed, held=router.held,
            publisher=router.publisher,
            table=router.router.table.current, now=NOW + timedelta(hours=1))

    @pytest.mark.parametrize("occurred_at", [NOW - REPORT_CLOCK_SKEW - timedelta(seconds=1),
                                             NOW + timedelta(hours=2)])
    async def test_an_implausible_time_is_refused_naming_the_field(
            self, occurred_at: datetime) -> None:
        router = wired()
        routed_ticket(router)
        refused = await self.report(router, occurred_at)
        assert isinstance(refused, Refused)
        assert (refused.refusal, refused.field) == (Refusal.INVALID, "body.occurred_at")
        assert router.publisher.published == []

    async def test_a_report_is_published_for_the_credentials_department(self) -> None:
        router = wired()
        routed_ticket(router)
        recorded = await self.report(router, NOW + timedelta(minutes=30))
        assert isinstance(recorded, service.Recorded)
        (published,) = router.publisher.published
        report = events.read(published.event)
        assert (report.type, report.department, published.event.id) == (
            TicketEventType.RESPONDED, "public_sector", recorded.event_id)

    async def test_a_report_dated_before_the_ticket_came_to_the_department_is_refused(
            self) -> None:
        """Routed to public_sector at NOW, handed to business_desk an hour later: its
        response may not be dated while public_sector held it (that would credit
        public_sector's target)."""
        router = wired()
        routed_ticket(router)
        await TestTransfer().transfer(router, "business_desk")
        desk = access.Principal("cred-bd", access.Role.DEPARTMENT, "business_desk")
        refused = await self.report(router, NOW + timedelta(minutes=30), principal=desk)
        assert isinstance(refused, Refused)
        assert (refused.refusal, refused.field) == (Refusal.INVALID, "body.occurred_at")
        assert "before the ticket came to business_desk" in refused.detail
        recorded = await self.report(router, NOW + timedelta(hours=1), principal=desk)
        assert isinstance(recorded, service.Recorded)

    async def test_an_admin_names_the_department_holding_the_ticket_at_its_date(
            self) -> None:
        """An admin's report naming business_desk, a department of the table, on a ticket
        it never held is refused naming `body.department` and the departments that
        held it (recorded, it would say business_desk answered; the router and the
        metrics credit public_sector). Once handed there (at NOW + 1 h), a report naming
        business_desk is taken; one naming public_sector, which held the ticket before,
        is refused dated now, saying who held it then, and taken dated while
        public_sector held it: each event names the department the router credits."""
        router = wired()
        routed_ticket(router)

        async def report(department: str, occurred_at: datetime | None = None
                         ) -> service.Recorded | Refused:
            return await service.record_report(
                "t-1", TicketEventType.RESPONDED, department=department,
                occurred_at=occurred_at, principal=ADMIN, correlation_id=None,
                routed=router.routed, held=router.held, publisher=router.publisher,
                table=router.router.table.current, now=NOW + timedelta(hours=2))

        refused = await report("business_desk")
        assert isinstance(refused, Refused)
        assert (refused.refusal, refused.field, refused.detail) == (
            Refusal.INVALID, "body.department",
            "ticket 't-1' never came to 'business_desk'; an admin reports for a department"
            " that held it: public_sector")
        assert router.publisher.published == []
        await TestTransfer().transfer(router, "business_desk")
        published = len(router.publisher.published)
        refused = await report("public_sector")
        assert isinstance(refused, Refused)
        now = (NOW + timedelta(hours=2)).astimezone(UTC).isoformat()
        assert (refused.refusal, refused.field, refused.detail) == (
            Refusal.INVALID, "body.department",
            f"ticket 't-1' was with 'business_desk' at {now}, not 'public_sector'; an admin"
            " reports for the department holding it at the report's date: name"
            " 'business_desk', or date it (occurred_at) while 'public_sector' held it")
        assert len(router.publisher.published) == published
        before = NOW + timedelta(minutes=30)  # before the transfer (TestTransfer)
        for department, dated in (("business_desk", None), ("public_sector", before)):
            assert isinstance(await report(department, dated), service.Recorded)
        sent = [events.read(each.event) for each in router.publisher.published[published:]]
        assert [event.department for event in sent] == ["business_desk", "public_sector"]
        row = await router.routed.get("t-1")
        assert row is not None
        assert [intake_policy.held_at(row.trace, event.occurred_at) for event in sent] == [
            "business_desk", "public_sector"]

    async def test_one_dated_by_a_clock_a_little_behind_ours_is_dated_at_its_arrival(
            self) -> None:
        """business_desk's clock runs 2 s behind: its report, a second after the ticket
        came to it, is dated a second before that. It stands, dated at the arrival, so it
        credits business_desk, not public_sector which held the ticket before."""
        router = wired()
        routed_ticket(router)
        await TestTransfer().transfer(router, "business_desk")
        arrived = NOW + timedelta(hours=1)  # the transfer's time (TestTransfer)
        desk = access.Principal("cred-bd", access.Role.DEPARTMENT, "business_desk")
        recorded = await self.report(router, arrived - timedelta(seconds=1), principal=desk)
        assert isinstance(recorded, service.Recorded)
        report = events.read(router.publisher.published[-1].event)
        assert (report.type, report.occurred_at) == (TicketEventType.RESPONDED, arrived)
        assert intake_policy.held_at(router.routed.rows["t-1"].trace,
                                     report.occurred_at) == "business_desk"

    async def test_one_dated_by_a_clock_a_little_ahead_is_dated_now(self) -> None:
        router = wired()
        routed_ticket(router)
        now = NOW + timedelta(hours=1)  # self.report's
        recorded = await self.report(router, now + timedelta(minutes=1))
        assert isinstance(recorded, service.Recorded)
        (published,) = router.publisher.published
        assert events.read(published.event).occurred_at == now

    async def test_an_admins_report_is_taken_as_dated_and_published_in_utc(self) -> None:
        """An admin's report is not bounded to the ticket's time in its department (here
        dated while public_sector held it, before the transfer to business_desk), but
        it is published in UTC as every other report, so that a retry's publish is the
        first one's to the letter."""
        router = wired()
        routed_ticket(router)
        await TestTransfer().transfer(router, "business_desk")  # at NOW + 1 h
        dated = (NOW + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=2)))
        recorded = await self.report(router, dated, principal=ADMIN)
        assert isinstance(recorded, service.Recorded)
        occurred_at = events.read(router.publisher.published[-1].event).occurred_at
        assert (occurred_at, occurred_at.utcoffset()) == (dated, timedelta(0))

    @pytest.mark.parametrize(("occurred_at", "said"), [
        (datetime(9999, 1, 1, tzinfo=UTC), "in the future"),
        (NOW - REPORT_CLOCK_SKEW - timedelta(seconds=1), "before the ticket was received")])
    async def test_an_admins_report_outside_the_tickets_time_is_refused_naming_the_field(
            self, occurred_at: datetime, said: str) -> None:
        """Dated in year 9999, it would have the event follower count business time up
        to then and set the ticket's first response there."""
        router = wired()
        routed_ticket(router)  # received at NOW, reported on at NOW + 1 h
        refused = await self.report(router, occurred_at, principal=ADMIN)
        assert isinstance(refused, Refused)
        assert (refused.refusal, refused.field) == (Refusal.INVALID, "body.occurred_at")
        assert said in refused.detail
        assert router.publisher.published == []

    async def test_another_departments_ticket_is_refused(self) -> None:
        router = wired()
        routed_ticket(router)
        other = access.Principal("cred-bd", access.Role.DEPARTMENT, "business_desk")
        refused = await self.report(router, None, principal=other)
        assert isinstance(refused, Refused) and refused.refusal is Refusal.FORBIDDEN

    async def test_an_unknown_ticket_is_not_found(self) -> None:
        refused = await self.report(wired(), None)
        assert isinstance(refused, Refused) and refused.refusal is Refusal.NOT_FOUND


async def reply(router: Wired, ticket_id: str, *, platform: access.Principal = DESK,
                now: datetime = NOW) -> service.Recorded | Refused:
    return await service.customer_replied(
        ticket_id, occurred_at=None, platform=platform, correlation_id=None,
        routed=router.routed, held=router.held, publisher=router.publisher, now=now)


class TestCustomerReplied:
    async def test_only_the_platform_that_posted_it_reports_a_reply(self) -> None:
        router = wired()
        routed_ticket(router)
        refused = await reply(router, "t-1", platform=WEBSHOP)
        assert isinstance(refused, Refused) and refused.refusal is Refusal.NOT_FOUND
        recorded = await reply(router, "t-1")
        assert isinstance(recorded, service.Recorded)
        assert router.publisher.types() == [TicketEventType.CUSTOMER_REPLIED]

    async def test_another_platforms_ticket_is_answered_as_an_unknown_id(self) -> None:
        """Whether it was issued lately (not routed yet, to another platform) or not: the
        same answer as for an id of no ticket issued then, so no platform learns which
        ids are another's tickets."""
        router = wired()
        issued = ticket_ids.issue(NOW - timedelta(seconds=1))
        router.routed.add(service.route(
            segmented(ticket_id=issued), table=router.router.table.current,
            load=router.router.load, now=NOW, event_id="e-2", correlation_id=None).dispatch)
        routed_ticket(router)  # t-1, DESK's
        for ticket_id, unknown in (("t-1", "t-never"),
                                   (issued, ticket_ids.issue(NOW - timedelta(seconds=1)))):
            others = await reply(router, ticket_id, platform=WEBSHOP)
            nobodys = await reply(router, unknown, platform=WEBSHOP)
            assert isinstance(others, Refused) and isinstance(nobodys, Refused)
            assert others == Refused(nobodys.refusal, nobodys.detail.replace(
                unknown, ticket_id), nobodys.error)
        assert router.publisher.published == []


async def died_before_its_key_was_marked(key: str, *, correlation_id: str) -> None:
    """Keys.accepted, as a request that published and died before marking its key meets
    it."""
    raise RuntimeError("the router died here")


class TestAReportsCorrelationId:
    """A report or a customer's reply goes out under the correlation id the router keeps
    with its ticket (the platform's, from the intake), so that the platform's callbacks
    carry the id it gave; under the request's own X-Correlation-ID if it gives one."""

    @staticmethod
    async def sent(router: Wired, *, reply: bool, given: str | None,
                   key: str | None) -> str:
        report_key = None if key is None else service.ReportKey(key, router.keys,
                                                                router.router.claim_hold)
        if reply:
            recorded = await service.customer_replied(
                "t-1", occurred_at=None, platform=DESK, correlation_id=given,
                routed=router.routed, held=router.held, publisher=router.publisher, now=NOW,
                key=report_key)
        else:
            recorded = await service.record_report(
                "t-1", TicketEventType.PICKED_UP, department=None, occurred_at=None,
                principal=PUBLIC_SECTOR, correlation_id=given, routed=router.routed,
                held=router.held, publisher=router.publisher,
                table=router.router.table.current, now=NOW, key=report_key)
        assert isinstance(recorded, service.Recorded), recorded
        (published,) = router.publisher.published
        return published.event.correlation_id

    @pytest.mark.parametrize("key", [None, "k-1"])
    @pytest.mark.parametrize("reply", [False, True])
    async def test_without_a_header_it_is_the_tickets(self, reply: bool,
                                                      key: str | None) -> None:
        router = wired()
        routed_ticket(router)  # posted with corr-platform-1
        assert await self.sent(router, reply=reply, given=None, key=key) == "corr-platform-1"

    @pytest.mark.parametrize("reply", [False, True])
    async def test_a_header_given_is_the_events(self, reply: bool) -> None:
        router = wired()
        routed_ticket(router)
        assert await self.sent(router, reply=reply, given="corr-agent", key="k-1") \
            == "corr-agent"

    async def test_a_ticket_routed_before_its_correlation_id_was_kept_has_its_id(
            self) -> None:
        router = wired()
        routed_ticket(router)
        router.routed.rows["t-1"].correlation_id = None  # routed before migration 0011
        assert await self.sent(router, reply=False, given=None, key=None) == "t-1"

    async def test_a_retry_taking_over_publishes_it_as_it_was_judged_to_go(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The first request died after its publish: its retry, under another header,
        publishes the same event under the same correlation id."""
        router = wired()
        routed_ticket(router)

        monkeypatch.setattr(router.keys, "accepted", died_before_its_key_was_marked)
        with pytest.raises(RuntimeError):
            await self.sent(router, reply=True, given=None, key="k-1")
        monkeypatch.undo()
        retry = await service.customer_replied(
            "t-1", occurred_at=None, platform=DESK, correlation_id="corr-retry",
            routed=router.routed, held=router.held, publisher=router.publisher,
            now=NOW + router.router.claim_hold,
            key=service.ReportKey("k-1", router.keys, router.router.claim_hold))
        assert isinstance(retry, service.Recorded)
        assert [p.event.correlation_id for p in router.publisher.published] == [
            "corr-platform-1", "corr-platform-1"]


class TestATicketHeldAsADeadLetter:
    """A ticket a stage dead-lettered waits for an operator's replay (known.routed_ticket):
    an admin, and its platform, are told so, without a retry; a department and another
    platform are answered as on an id of no ticket. Nothing is published."""

    def held(self, router: Wired) -> held_tickets.Held:
        holding = held_tickets.Held(
            ticket_id=ticket_ids.issue(NOW), dead_letter_id="0:9", stage="router",
            error_class="Unprocessable", held_at=NOW, platform=DESK.subject)
        router.held.hold(holding)
        return holding

    async def asked(self, router: Wired, ticket_id: str, principal: access.Principal,
                    asked: str) -> object:
        """`principal`'s report, transfer or priority change of the ticket."""
        if asked == "report":
            return await service.record_report(
                ticket_id, TicketEventType.RESPONDED, department=None, occurred_at=None,
                principal=principal, correlation_id=None, routed=router.routed,
                held=router.held, publisher=router.publisher,
                table=router.router.table.current, now=NOW)
        if asked == "transfer":
            return await service.transfer(
                ticket_id, to_department="business_desk", reason="r", from_department=None,
                principal=principal, routed=router.routed, held=router.held,
                publisher=router.publisher, table=router.router.table.current,
                queue_for=router.router.queue_for, now=NOW)
        return await service.change_priority(
            ticket_id, priority=1, reason="r", principal=principal, routed=router.routed,
            held=router.held, publisher=router.publisher, table=router.router.table.current,
            now=NOW)

    async def test_its_platform_is_told_it_is_held(self) -> None:
        router = wired()
        holding = self.held(router)
        refused = await reply(router, holding.ticket_id)
        assert refused == service.held(holding, operator=False)
        assert (refused.refusal, refused.error) == (Refusal.CONFLICT, "held")
        assert router.publisher.published == []

    async def test_another_platform_is_answered_as_on_an_id_of_no_ticket(self) -> None:
        router = wired()
        holding = self.held(router)
        refused = await reply(router, holding.ticket_id, platform=WEBSHOP)
        assert refused == await reply(wired(), holding.ticket_id, platform=WEBSHOP)
        assert isinstance(refused, Refused) and refused.refusal is Refusal.NOT_ROUTED_YET

    @pytest.mark.parametrize("asked", ["report", "transfer", "priority"])
    async def test_an_admin_is_told_it_is_held_in_an_operators_words(
            self, asked: str) -> None:
        router = wired()
        holding = self.held(router)
        refused = await self.asked(router, holding.ticket_id, ADMIN, asked)
        assert refused == service.held(holding, operator=True)
        assert router.publisher.published == []

    @pytest.mark.parametrize("asked", ["report", "transfer", "priority"])
    async def test_a_department_is_answered_as_on_an_id_of_no_ticket(
            self, asked: str) -> None:
        router = wired()
        holding = self.held(router)
        refused = await self.asked(router, holding.ticket_id, PUBLIC_SECTOR, asked)
        assert refused == verdicts.not_found(holding.ticket_id) == await self.asked(
            wired(), holding.ticket_id, PUBLIC_SECTOR, asked)
        assert router.publisher.published == []


class TestAReplyBeforeTheTicketIsRouted:
    """A platform has its ticket's id from the 202, before the ticket is routed: a reply
    by an id the intake issued lately is to be retried; by any other id, not found."""

    async def test_an_id_issued_lately_is_not_routed_yet(self) -> None:
        router = wired()
        issued_at = NOW - timedelta(seconds=1)
        ticket_id = ticket_ids.issue(issued_at)
        refused = await reply(router, ticket_id)
        assert refused == Refused(
            Refusal.NOT_ROUTED_YET,
            f"ticket {ticket_id!r} is not routed yet: the intake issued its id at"
            f" {issued_at.replace(microsecond=0).isoformat()}, and a ticket it accepted is"
            " on its way to its department; retry after Retry-After", "not_routed_yet")
        assert router.publisher.published == []

    @pytest.mark.parametrize(("issued_at", "answer"), [
        (NOW - verdicts.ON_ITS_WAY_FOR, Refusal.NOT_ROUTED_YET),
        (NOW - verdicts.ON_ITS_WAY_FOR - timedelta(seconds=1), Refusal.NOT_FOUND),
        (NOW + moments.CLOCK_SKEW, Refusal.NOT_ROUTED_YET),  # another instance's clock
        (NOW + moments.CLOCK_SKEW + timedelta(seconds=1), Refusal.NOT_FOUND)])
    async def test_on_its_way_as_long_as_kafka_keeps_it(self, issued_at: datetime,
                                                        answer: Refusal) -> None:
        refused = await reply(wired(), ticket_ids.issue(issued_at))
        assert isinstance(refused, Refused) and refused.refusal is answer

    @pytest.mark.parametrize("ticket_id", [
        "5c0e2f4e-8d1a-4b7c-9e3f-2a1b0c9d8e7f",  # issued before: version 4, no time
        "t-never", "01a24b56-c687-7bd7-b533-d21e20a09b4b"])  # an issued id, one digit off
    async def test_an_id_the_intake_did_not_issue_is_not_found(self, ticket_id: str) -> None:
        refused = await reply(wired(), ticket_id, now=datetime(2026, 12, 6, 12, 32, tzinfo=UTC))
        assert refused == Refused(Refusal.NOT_FOUND, f"no routed ticket {ticket_id!r}",
                                  "not_found")

    async def test_once_routed_the_reply_is_recorded(self) -> None:
        router = wired()
        ticket_id = ticket_ids.issue(NOW)
        router.routed.add(service.route(
            segmented(ticket_id=ticket_id), table=router.router.table.current,
            load=router.router.load, now=NOW, event_id="e-1", correlation_id=None).dispatch)
        assert isinstance(await reply(router, ticket_id), service.Recorded)

    async def test_a_reply_dated_a_little_before_the_receipt_is_dated_at_it(self) -> None:
        """The platform's clock runs behind the intake's: the customer's reply, dated a
        few seconds before the ticket was received, is dated at its receipt; one dated
        before that by more than the allowed skew is refused."""
        router = wired()
        routed_ticket(router)  # received at NOW

        async def reply(occurred_at: datetime) -> service.Recorded | Refused:
            return await service.customer_replied(
                "t-1", occurred_at=occurred_at, platform=DESK, correlation_id=None,
                routed=router.routed, held=router.held, publisher=router.publisher,
                now=NOW + timedelta(minutes=1))

        assert isinstance(await reply(NOW - timedelta(seconds=3)), service.Recorded)
        (published,) = router.publisher.published
        assert events.read(published.event).occurred_at == NOW
        refused = await reply(NOW - REPORT_CLOCK_SKEW - timedelta(seconds=1))
        assert isinstance(refused, Refused) and refused.field == "body.occurred_at"
        assert "before the ticket was received" in refused.detail


class TestReportsUnderAnIdempotencyKey:
    """A report retried under its `Idempotency-Key` gets the first one's answer, and
    nothing is published twice: a retried `resolved` made a second webhook callback."""

    async def report(self, router: Wired, key: str, *,
                     report: TicketEventType = TicketEventType.RESOLVED,
                     principal: access.Principal = PUBLIC_SECTOR,
                     occurred_at: datetime | None = None,
                     now: datetime = NOW + timedelta(hours=1)) -> service.Recorded | Refused:
        return await service.record_report(
            "t-1", report, department=None, occurred_at=occurred_at, principal=principal,
            correlation_id=None, routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, now=now,
            key=service.ReportKey(key, router.keys, router.router.claim_hold))

    async def test_a_retry_once_the_ticket_is_resolved_answers_the_first_event(
            self) -> None:
        router = wired()
        routed_ticket(router)
        first = await self.report(router, "k-1")
        router.routed.rows["t-1"].status = "resolved"  # the follower recorded it
        retry = await self.report(router, "k-1", now=NOW + timedelta(hours=1, seconds=5))
        assert isinstance(first, service.Recorded) and retry == first
        (published,) = router.publisher.published
        assert published.event.id == first.event_id
        # Without a key, the same retry is the closed ticket's refusal.
        assert await self.report(router, "k-2") == RESOLVED

    async def test_published_it_is_recorded_though_its_key_met_a_store_conflict(
            self) -> None:
        """The report is in Kafka: a deadlock marking its key accepted leaves the key
        pending (a retry publishes it again under the same event id), and the answer
        says it was recorded."""
        router = wired()
        routed_ticket(router)

        async def deadlocked(*_args: object, **_options: object) -> None:
            raise as_sqlalchemy_raises(asyncpg.exceptions.DeadlockDetectedError(
                "deadlock detected"))

        router.keys.accepted = deadlocked  # type: ignore[method-assign]
        recorded = await self.report(router, "k-1")
        assert isinstance(recorded, service.Recorded)
        (published,) = router.publisher.published
        assert published.event.id == recorded.event_id

    async def test_another_report_under_a_used_key_is_refused_naming_the_header(
            self) -> None:
        router = wired()
        routed_ticket(router)
        await self.report(router, "k-1", report=TicketEventType.PICKED_UP)
        refused = await self.report(router, "k-1", report=TicketEventType.RESPONDED)
        assert isinstance(refused, Refused)
        assert (refused.refusal, refused.field) == (Refusal.INVALID, "header.Idempotency-Key")
        assert router.publisher.types() == [TicketEventType.PICKED_UP]

    async def test_keys_are_their_reporters_own(self) -> None:
        """Another department's key, the admins' key and a platform's reply under the key
        it used for the ticket itself are keys of their own."""
        router = wired()
        routed_ticket(router)
        router.routed.add(service.route(
            segmented("t-2", segment="business"), table=router.router.table.current,
            load=router.router.load, now=NOW, event_id="e-2", correlation_id="c-2").dispatch)
        desk_ticket = await service.accept_ticket(
            tickets.TicketContent(customer_id="c-1", subject="s", body="b", channel="web"),
            platform=DESK.subject, correlation_id=None, idempotency_key="k-1",
            keys=router.keys, publisher=router.publisher,
            in_flight_for=router.router.claim_hold, now=NOW)
        assert desk_ticket.verdict is service.Verdict.ACCEPTED
        business = access.Principal("cred-bd", access.Role.DEPARTMENT, "business_desk")
        answers = [
            await self.report(router, "k-1", report=TicketEventType.PICKED_UP),
            await service.record_report(
                "t-2", TicketEventType.PICKED_UP, department=None, occurred_at=None,
                principal=business, correlation_id=None, routed=router.routed, held=router.held,
                publisher=router.publisher,
                table=router.router.table.current, now=NOW + timedelta(hours=1),
                key=service.ReportKey("k-1", router.keys, router.router.claim_hold)),
            await self.report(router, "k-1", report=TicketEventType.RESPONDED,
                              principal=ADMIN),
            await service.customer_replied(
                "t-1", occurred_at=None, platform=DESK, correlation_id=None,
                routed=router.routed, held=router.held, publisher=router.publisher, now=NOW,
                key=service.ReportKey("k-1", router.keys, router.router.claim_hold))]
        assert all(isinstance(answer, service.Recorded) for answer in answers), answers
        assert router.publisher.types()[2:] == [
            TicketEventType.PICKED_UP, TicketEventType.PICKED_UP,
            TicketEventType.RESPONDED, TicketEventType.CUSTOMER_REPLIED]

    async def test_a_retry_after_the_ticket_moved_away_answers_the_first_report(
            self) -> None:
        """Picked up, then transferred: the department's retry of its report is answered
        as the first was, not refused as another department's ticket."""
        router = wired()
        routed_ticket(router)
        first = await self.report(router, "k-1", report=TicketEventType.PICKED_UP)
        router.routed.rows["t-1"].department = "business_desk"
        retry = await self.report(router, "k-1", report=TicketEventType.PICKED_UP)
        assert isinstance(first, service.Recorded) and retry == first
        assert router.publisher.types() == [TicketEventType.PICKED_UP]

    async def test_a_report_published_but_left_unanswered_is_published_again_on_retry(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The request died after its publish, before its key was marked: a retry (the
        ticket resolved since by that very report) publishes it again under the same
        event id, without judging it again, and is answered 202."""
        router = wired()
        routed_ticket(router)

        monkeypatch.setattr(router.keys, "accepted", died_before_its_key_was_marked)
        with pytest.raises(RuntimeError):
            await self.report(router, "k-1")
        monkeypatch.undo()
        router.routed.rows["t-1"].status = "resolved"
        (claim,) = router.keys.rows.values()
        later = NOW + timedelta(hours=1) + router.router.claim_hold
        retry = await self.report(router, "k-1", now=later)
        assert retry == service.Recorded("t-1", claim.event_id or "")
        first, again = router.publisher.published
        assert first.event.id == again.event.id == claim.event_id
        # Undated, the report is dated at the first request's claim, not at the retry.
        assert first.event.data == again.event.data
        assert claim.status == "accepted"

    async def test_published_again_at_the_date_it_was_judged_to_stand_at(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Dated a second before the ticket's arrival (the department's clock behind
        ours), the report stood at the arrival; the retry after its request died
        publishes it at that date, not at the one given."""
        router = wired()
        routed_ticket(router)  # routed to public_sector at NOW

        given = NOW - timedelta(seconds=1)
        monkeypatch.setattr(router.keys, "accepted", died_before_its_key_was_marked)
        with pytest.raises(RuntimeError):
            await self.report(router, "k-1", occurred_at=given)
        monkeypatch.undo()
        later = NOW + timedelta(hours=1) + router.router.claim_hold
        assert isinstance(await self.report(router, "k-1", occurred_at=given, now=later),
                          service.Recorded)
        first, again = (events.read(p.event) for p in router.publisher.published)
        assert first.occurred_at == again.occurred_at == NOW

    async def test_a_refused_report_leaves_its_key_free(self) -> None:
        router = wired()
        routed_ticket(router)
        dated = NOW + timedelta(hours=3)  # after `now`: in the future
        refused = await self.report(router, "k-1", occurred_at=dated)
        assert isinstance(refused, Refused) and refused.field == "body.occurred_at"
        assert router.keys.rows == {}
        recorded = await self.report(router, "k-1", occurred_at=dated,
                                     now=NOW + timedelta(hours=4))
        assert isinstance(recorded, service.Recorded)

    async def test_kafka_unavailable_keeps_the_event_id_for_the_retry_at_once(
            self) -> None:
        """Answered 503, the key is released: its retry publishes the report under the
        same event id then and there, not a 409 in_progress while the claim runs."""
        router = wired()
        routed_ticket(router)
        router.publisher.fail = True
        assert await self.report(router, "k-1") == service.Refused(Refusal.UNAVAILABLE)
        (claim,) = router.keys.rows.values()
        assert claim.status == "unpublished"
        router.publisher.fail = False
        recorded = await self.report(router, "k-1", now=NOW + timedelta(hours=1, seconds=1))
        assert isinstance(recorded, service.Recorded) and recorded.event_id == claim.event_id
        assert [p.event.id for p in router.publisher.published] == [claim.event_id]
        assert claim.status == "accepted"


class TestAResolvedTicketIsClosed:
    """lifecycle.py: a resolved ticket takes no more reports, customer replies, transfers
    or priority changes; each is refused as `resolved` and nothing is published."""

    def resolved(self) -> Wired:
        router = wired()
        routed_ticket(router)
        router.routed.rows["t-1"].status = "resolved"
        return router

    async def test_each_change_is_refused_and_nothing_is_published(self) -> None:
        router = self.resolved()
        table, later = router.router.table.current, NOW + timedelta(minutes=30)
        answers: list[object] = [
            await service.record_report(
                "t-1", TicketEventType.RESPONDED, department=None, occurred_at=None,
                principal=principal, correlation_id=None, routed=router.routed, held=router.held,
                publisher=router.publisher, table=router.router.table.current, now=later)
            for principal in (PUBLIC_SECTOR, ADMIN)]
        answers.append(await service.customer_replied(
            "t-1", occurred_at=None, platform=DESK, correlation_id=None,
            routed=router.routed, held=router.held, publisher=router.publisher, now=later))
        answers.append(await service.transfer(
            "t-1", to_department="business_desk", reason="r", from_department=None,
            principal=ADMIN, routed=router.routed, held=router.held,
            publisher=router.publisher, table=table,
            queue_for=router.router.queue_for, now=later))
        answers.append(await service.change_priority(
            "t-1", priority=1, reason="r", principal=ADMIN, routed=router.routed, held=router.held,
            publisher=router.publisher, table=table, now=later))
        assert answers == [RESOLVED] * 5
        assert router.publisher.published == [] and router.routed.recorded == []

    async def test_an_admins_report_on_an_unknown_ticket_is_not_found(self) -> None:
        router = wired()
        refused = await service.record_report(
            "t-unknown", TicketEventType.RESOLVED, department="public_sector",
            occurred_at=None, principal=ADMIN, correlation_id=None, routed=router.routed,
            held=router.held, publisher=router.publisher, table=router.router.table.current,
            now=NOW)
        assert isinstance(refused, Refused) and refused.refusal is Refusal.NOT_FOUND


class TestATicketsTraceIsBounded:
    """intake_policy.TRACE_STEPS_MAX: a ticket whose trace is full takes only what moves
    its service level (TAKEN_PAST_FULL), and past TRACE_STEPS_CEILING no transfer or
    priority change; anything else is refused as `trace_full`, nothing published. The
    government ticket routed here has its first-response clock counting."""

    def with_steps(self, count: int, *, answered: bool = False,
                   waiting: bool = False) -> Wired:
        router = wired()
        routed_ticket(router)
        row = router.routed.rows["t-1"]
        clocks = service_clocks.from_json(row.service_clocks or {})
        for happened, report, status in ((answered, TicketEventType.RESPONDED, "responded"),
                                          (waiting, TicketEventType.WAITING_ON_CUSTOMER,
                                           "waiting_on_customer")):
            if happened:
                clocks = service_clocks.reported(clocks, report, NOW, None)
                row.status = status
        row.first_response_at = NOW if answered else None
        row.service_clocks = service_clocks.to_json(clocks)
        row.trace = [*row.trace, *[{"at": NOW.isoformat(), "step": "picked_up"}]
                     * (count - len(row.trace))]
        return router

    async def change(self, router: Wired, change: str) -> object:
        table, later = router.router.table.current, NOW + timedelta(minutes=30)
        if change == "customer replied":
            return await service.customer_replied(
                "t-1", occurred_at=None, platform=DESK, correlation_id=None,
                routed=router.routed, held=router.held, publisher=router.publisher, now=later)
        if change == "transferred":
            return await service.transfer(
                "t-1", to_department="business_desk", reason="r", from_department=None,
                principal=PUBLIC_SECTOR, routed=router.routed, held=router.held,
                publisher=router.publisher,
                table=table, queue_for=router.router.queue_for, now=later)
        if change.startswith("priority changed"):
            return await service.change_priority(
                "t-1", priority=1, reason="r",
                principal=ADMIN if "admin" in change else PUBLIC_SECTOR,
                routed=router.routed, held=router.held,
                publisher=router.publisher, table=table, now=later)
        report = TicketEventType(f"ticket.{change.split()[0]}")
        return await service.record_report(
            "t-1", report, department=None, occurred_at=None,
            principal=ADMIN if "admin" in change else PUBLIC_SECTOR, correlation_id=None,
            routed=router.routed, held=router.held, publisher=router.publisher,
            table=router.router.table.current, now=later)

    NEEDLESS = ("picked_up", "customer replied", "priority changed",
                "picked_up by an admin")
    NEEDED = ("resolved", "responded", "responded by an admin", "waiting_on_customer",
              "transferred", "priority changed by an admin")

    @pytest.mark.parametrize("change", NEEDLESS)
    async def test_full_what_moves_no_clock_is_refused(self, change: str) -> None:
        router = self.with_steps(intake_policy.TRACE_STEPS_MAX)
        assert await self.change(router, change) == TRACE_FULL
        assert router.publisher.published == [] and router.routed.recorded == []

    @pytest.mark.parametrize("change", NEEDED)
    async def test_full_what_its_service_level_needs_is_taken(self, change: str) -> None:
        router = self.with_steps(intake_policy.TRACE_STEPS_MAX)
        assert not isinstance(await self.change(router, change), Refused)
        assert router.publisher.published

    async def test_full_a_response_once_no_response_clock_counts_is_refused(self) -> None:
        router = self.with_steps(intake_policy.TRACE_STEPS_MAX, answered=True)
        assert await self.change(router, "responded") == TRACE_FULL
        assert not isinstance(await self.change(router, "resolved"), Refused)

    async def test_full_the_customers_reply_resumes_a_ticket_waiting_on_them(self) -> None:
        """Its first-response clock paused: the reply is taken, so that no department can
        keep a ticket's clocks paused for good by pausing it as the trace fills up; a
        second pause is refused."""
        router = self.with_steps(intake_policy.TRACE_STEPS_MAX, waiting=True)
        assert await self.change(router, "waiting_on_customer") == TRACE_FULL
        assert not isinstance(await self.change(router, "customer replied"), Refused)
        assert [p.event.type for p in router.publisher.published] == [
            "ticket.customer_replied"]

    async def test_full_a_reply_that_would_only_start_a_clock_is_refused(self) -> None:
        """Answered, then waiting on the customer with no clock paused: the reply would
        only start a next-response clock, as each reply could."""
        router = self.with_steps(intake_policy.TRACE_STEPS_MAX, answered=True, waiting=True)
        assert await self.change(router, "customer replied") == TRACE_FULL

    @pytest.mark.parametrize("change", ["transferred", "priority changed by an admin"])
    async def test_at_its_ceiling_no_transfer_or_priority_change_is_taken(
            self, change: str) -> None:
        router = self.with_steps(intake_policy.TRACE_STEPS_CEILING)
        assert await self.change(router, change) == TRACE_FULL

    @pytest.mark.parametrize("change", ["resolved", "responded"])
    async def test_at_its_ceiling_what_moves_its_clocks_is_still_taken(
            self, change: str) -> None:
        """Its step is not kept (intake_policy.with_report), but the report moves the
        ticket's state and clocks: no department is locked out of its response."""
        router = self.with_steps(intake_policy.TRACE_STEPS_CEILING)
        assert not isinstance(await self.change(router, change), Refused)

    async def test_at_its_ceiling_no_pause_is_taken_and_a_paused_ticket_resumes(
            self) -> None:
        """A pause and a reply would start one more response clock each time: no pause
        past the ceiling; the reply to a ticket paused before is still taken."""
        router = self.with_steps(intake_policy.TRACE_STEPS_CEILING)
        assert await self.change(router, "waiting_on_customer") == TRACE_FULL
        paused = self.with_steps(intake_policy.TRACE_STEPS_CEILING, waiting=True)
        assert not isinstance(await self.change(paused, "customer replied"), Refused)

    @pytest.mark.parametrize("change", [*NEEDLESS, *NEEDED])
    async def test_one_step_short_of_it_each_change_is_taken(self, change: str) -> None:
        router = self.with_steps(intake_policy.TRACE_STEPS_MAX - 1)
        assert not isinstance(await self.change(router, change), Refused)
        assert router.publisher.published

    @pytest.mark.parametrize("change", [*NEEDLESS, *NEEDED])
    async def test_a_resolved_ticket_is_refused_as_resolved_however_long_its_trace(
            self, change: str) -> None:
        router = self.with_steps(intake_policy.TRACE_STEPS_MAX)
        router.routed.rows["t-1"].status = "resolved"
        assert await self.change(router, change) == RESOLVED


def escalations(department: str, level: int) -> float:
    return REGISTRY.get_sample_value("routing_router_target_escalations_total", {
        "department": department, "target": "first_response", "level": str(level)}) or 0.0


class TestEscalateDue:
    async def escalate(self, router: Wired, now: datetime) -> int:
        return await service.escalate_due(
            router.routed, router.publisher, table=router.router.table.current,
            queue_for=router.router.queue_for, now=now)

    async def test_nothing_is_due_before_the_deadline(self) -> None:
        router = wired()
        routed_ticket(router)
        assert await self.escalate(router, NOW + timedelta(minutes=30)) == 0
        assert router.publisher.published == []

    async def test_a_ticket_without_clocks_past_its_deadline_is_escalated_once(
            self) -> None:
        router = wired()
        routed_ticket(router, clocks=False)
        late = NOW + timedelta(hours=5)
        assert await self.escalate(router, late) == 1
        queue, lifecycle = router.publisher.published
        assert queue.topic == "dept.key_accounts.high"  # public_sector escalates there
        assert lifecycle.event.type == TicketEventType.ESCALATED
        assert lifecycle.event.correlation_id == "corr-platform-1"
        # Its one escalation, its callback without target or level (README, "Webhooks").
        told = payloads.callback_of(events.read(lifecycle.event), correlation_id="c").data
        assert (told.target, told.level) == (None, None)
        assert router.routed.rows["t-1"].escalated
        assert await self.escalate(router, late) == 0

    @pytest.mark.parametrize(("second_to", "at_level_2"), [
        ("customer_care", "customer_care"), (None, "key_accounts")])
    async def test_still_unanswered_after_the_breach_it_goes_to_the_second_level(
            self, tmp_path: Path, second_to: str | None, at_level_2: str) -> None:
        """public_sector: a breach (4h) hands the ticket to key_accounts; 2h later, still
        unanswered, to the second level's department, or flagged where it is."""
        second = {"after": "2h", "to": second_to} if second_to else {"after": "2h"}
        router = wired(routing_table_file(
            tmp_path, departments={"public_sector": {"second_escalation": second}}))
        routed_ticket(router)

        def outcome_shown() -> object:  # as GET /v1/tickets/{id} shows the clock
            [clock] = tickets_api._clocks(router.routed.rows["t-1"].service_clocks)["clocks"]
            return clock["outcome"]

        assert outcome_shown() is None  # running within its target
        before = escalations("key_accounts", 2)  # counted where the second level found it
        assert await self.escalate(router, NOW + timedelta(hours=5)) == 1
        assert router.routed.rows["t-1"].department == "key_accounts"
        # Missed from the breach on, as the metrics service counts it then.
        assert outcome_shown() == "missed"
        assert await self.escalate(router, NOW + timedelta(hours=6, minutes=59)) == 0
        published = len(router.publisher.published)
        assert await self.escalate(router, NOW + timedelta(hours=7)) == 1
        escalated = [item.event for item in router.publisher.published[published:]
                     if item.event.type == TicketEventType.ESCALATED]
        assert [(e.data["level"], e.data["department"]) for e in escalated] == [
            (2, at_level_2)]
        assert router.routed.rows["t-1"].department == at_level_2
        assert escalations("key_accounts", 2) == before + 1
        # The trace quotes the deadline missed at the breach, not one moved on since.
        reasons = [step["reason"] for step in router.routed.rows["t-1"].trace
                   if step["step"] == "escalated"]
        missed = (NOW + timedelta(hours=4)).isoformat()
        assert reasons == [f"first_response not answered by {missed}",
                           "first_response still not answered after its escalation"]
        assert await self.escalate(router, NOW + timedelta(hours=30)) == 0  # once

    async def test_a_breached_clock_is_escalated_and_published(self) -> None:
        router = wired()
        routed_ticket(router)
        assert await self.escalate(router, NOW + timedelta(hours=5)) == 1
        assert TicketEventType.ESCALATED in router.publisher.types()
        assert router.routed.rows["t-1"].department == "key_accounts"
        assert router.routed.recorded[-1] == ("escalated", "t-1")

    async def test_an_escalation_counts_what_is_left_in_the_new_hours(
            self, tmp_path: Path) -> None:
        """Routed Monday 09:00 to public_sector (24/7: the resolution due 17:00), breached
        at 13:00 and escalated at 14:00 to key_accounts, open 12:00-15:00: the 3h left
        of the resolution count 14:00-15:00 and Tuesday 12:00-14:00, as a transfer's do."""
        router = wired(routing_table_file(
            tmp_path, routes={"public_sector": {"resolution_target": "8h"}},
            departments={"key_accounts": {
                "calendar": {"time_zone": "UTC", "hours": {"mon-fri": "12:00-15:00"}}}}))
        routed_ticket(router)
        assert await self.escalate(router, NOW + timedelta(hours=5)) == 1
        due = NOW + timedelta(days=1, hours=5)
        [escalated] = [item.event for item in router.publisher.published
                       if item.event.type == TicketEventType.ESCALATED
                       and not item.topic.startswith("dept.")]
        assert (events.read(escalated).deadlines or {})["resolution"] == due
        row = router.routed.rows["t-1"]
        assert service_clocks.from_json(row.service_clocks or {}).deadlines()[
            "resolution"] == due


    async def test_an_escalation_after_hours_keeps_the_deadline_missed_everywhere(
            self, tmp_path: Path) -> None:
        """Due Monday 13:00 at public_sector, breached and escalated to key_accounts,
        open 09:00-12:00 (closed: what is left would start Tuesday 09:00), then answered
        Tuesday 08:00, before key_accounts opens: the deadline stays 13:00 on the event, the
        lane's copy and the ticket's clocks, so the metrics (counter, stats) and the
        simulator's actual side all count the first response late."""
        router = wired(routing_table_file(tmp_path, departments={"key_accounts": {
            "calendar": {"time_zone": "UTC", "hours": {"mon-fri": "09:00-12:00"}}}}))
        routed_ticket(router)
        missed = NOW + timedelta(hours=4)
        assert await self.escalate(router, missed + timedelta(seconds=1)) == 1
        [escalated] = [events.read(item.event) for item in router.publisher.published
                       if item.event.type == TicketEventType.ESCALATED
                       and not item.topic.startswith("dept.")]
        [lane_copy] = [tickets.RoutedTicket.model_validate(item.event.data)
                       for item in router.publisher.published
                       if item.topic.startswith("dept.key_accounts")]
        assert (escalated.deadlines or {})["first_response"] == missed
        assert lane_copy.routing.first_response_deadline == missed
        row = router.routed.rows["t-1"]
        assert service_clocks.from_json(row.service_clocks or {}).deadlines()[
            "first_response"] == missed
        answered = NOW + timedelta(days=1, hours=-1)  # Tuesday 08:00
        timeline, observed = as_the_metrics_read_it({"first_response": missed}, [
            escalated, events.TicketEvent(ticket_id="t-1", occurred_at=answered,
                                          type=TicketEventType.RESPONDED)])
        counted = [o.outcome for o in observed if isinstance(o, metrics_timeline.TargetDecided)]
        assert counted == ["missed"]  # routing_first_response_target_total, once
        later = answered + timedelta(days=1)
        assert stats.outcome(timeline, later) == "missed"
        assert timeline.first_response_deadline == missed
        assert history.first_response_late(timeline, later)


    async def test_a_ticket_whose_notice_fails_holds_up_no_other(self) -> None:
        """A ticket whose stored clocks cannot be read (a copy edited by hand) is due
        first: the other ticket is escalated all the same, and the failing one is checked
        again CHECK_AGAIN_AFTER_FAILURE later, not at every check before it."""
        router = wired()
        first = service.route(segmented("t-0"), table=router.router.table.current,
                              load=router.router.load, now=NOW, event_id="e-0",
                              correlation_id="corr-0")
        router.routed.add(first.dispatch)
        router.routed.rows["t-0"].service_clocks = {"clocks": []}  # its targets lost
        routed_ticket(router)
        late = NOW + timedelta(hours=5)
        failed = public_sectors_failed_checks() or 0.0
        assert await self.escalate(router, late) == 1
        assert router.routed.rows["t-1"].department == "key_accounts"
        assert router.routed.rows["t-0"].next_clock_check == \
            late + clock_watch.CHECK_AGAIN_AFTER_FAILURE
        assert public_sectors_failed_checks() == failed + 1
        assert await self.escalate(router, late + timedelta(minutes=1)) == 0
        assert router.routed.recorded.count(("postponed", "t-0")) == 1


    async def test_a_ticket_without_clocks_whose_escalation_fails_holds_up_no_other(
            self) -> None:
        """A ticket routed before migration 0010 (no clocks) whose escalation fails for
        a reason of its own (a lane its stored priority cannot be given) is due first: it
        is counted and checked again CHECK_AGAIN_AFTER_FAILURE later, as a ticket with
        clocks is, and the check goes on to the others (it ended there, at every check,
        holding up every escalation and notice after it)."""
        router = wired()
        first = service.route(segmented("t-0"), table=router.router.table.current,
                              load=router.router.load, now=NOW - timedelta(minutes=1),
                              event_id="e-0", correlation_id="corr-0")
        router.routed.add(Dispatch(**{**first.dispatch.__dict__, "clocks": None}))
        router.routed.rows["t-0"].payload["routing"]["priority"] = 1
        routed_ticket(router)

        def no_lane(department: str, priority: int | None) -> str:
            if priority == 1:
                raise ValueError("no lane for this priority")
            return router.router.queue_for(department, priority)

        late = NOW + timedelta(hours=5)
        failed = public_sectors_failed_checks() or 0.0
        assert await service.escalate_due(router.routed, router.publisher,
                                          table=router.router.table.current,
                                          queue_for=no_lane, now=late) == 1
        assert router.routed.rows["t-1"].department == "key_accounts"
        row = router.routed.rows["t-0"]
        assert (row.department, row.escalated) == ("public_sector", False)
        assert row.next_clock_check == late + clock_watch.CHECK_AGAIN_AFTER_FAILURE
        assert public_sectors_failed_checks() == failed + 1
        assert await self.escalate(router, late + timedelta(minutes=1)) == 0
        assert await self.escalate(router, late + clock_watch.CHECK_AGAIN_AFTER_FAILURE) == 1
        assert router.routed.rows["t-0"].department == "key_accounts"

    def test_each_department_is_at_0_failed_notices_once_its_table_is_in_force(
            self, tmp_path: Path) -> None:
        """On every router, before any check: after a lease takeover, the first failed
        notice is an increase from 0, which RoutingServiceLevelNoticesFailing sees."""
        table = tmp_path / "routing.yaml"
        table.write_text("fallback_department: exported_at_0\nroutes:\n"
                         "  - {segment: standard, department: exported_at_0}\n"
                         "departments:\n  exported_at_0: {}\n", encoding="utf-8")
        wired(table)
        assert REGISTRY.get_sample_value("routing_router_clock_checks_failed_total",
                                         {"department": "exported_at_0"}) == 0.0

    async def test_a_store_conflict_ends_the_check_to_be_run_again(self) -> None:
        """A deadlock (the store rolling the hand-over back for another transaction) is
        no fault of the ticket: the check ends, raised to be run again at the next one,
        and the ticket is neither postponed nor counted as failed."""
        router = wired()
        routed_ticket(router)
        conflict = as_sqlalchemy_raises(asyncpg.exceptions.DeadlockDetectedError(
            "deadlock detected"))

        async def deadlocked(*_args: object, **_options: object) -> None:
            raise conflict

        router.routed.claim_handover = deadlocked  # type: ignore[method-assign]
        failed = public_sectors_failed_checks() or 0.0
        with pytest.raises(type(conflict)):
            await self.escalate(router, NOW + timedelta(hours=5))
        assert ("postponed", "t-1") not in router.routed.recorded
        assert public_sectors_failed_checks() == failed


class TestOneHandOverAtATime:
    """A transfer and an escalation (or two transfers) at the same moment: the ticket is
    claimed, as it was read, before it is published, so it joins one queue, not two."""

    async def transfer(self, router: Wired, now: datetime) -> service.Transferred | Refused:
        return await service.transfer(
            "t-1", to_department="business_desk", reason="needs the desk",
            from_department=None, principal=ADMIN, routed=router.routed, held=router.held,
            publisher=router.publisher, table=router.router.table.current,
            queue_for=router.router.queue_for, now=now, claim_for=timedelta(seconds=10))

    async def claimed(self, router: Wired) -> datetime:
        """Another hand-over's claim, standing."""
        claim = await router.routed.claim_handover(router.routed.rows["t-1"],
                                                   hold=timedelta(hours=1))
        assert claim is not None
        return claim

    async def test_a_transfer_finds_an_escalation_under_way_and_is_refused(self) -> None:
        router = wired()
        routed_ticket(router)
        await self.claimed(router)
        assert await self.transfer(router, NOW) == HANDOVER_IN_FLIGHT
        assert router.publisher.published == []
        # The claim's holder died: once it expired, the transfer goes through.
        router.routed.rows["t-1"].handover_until = datetime.now(UTC) - timedelta(seconds=1)
        assert await self.transfer(router, NOW) == service.Transferred("t-1", "business_desk")
        assert router.routed.rows["t-1"].handover_until is None  # ended by the record

    async def test_an_escalation_finds_a_transfer_under_way_and_waits(self) -> None:
        router = wired()
        routed_ticket(router)
        await self.claimed(router)
        assert await TestEscalateDue().escalate(router, NOW + timedelta(hours=5)) == 0
        assert router.publisher.published == []
        assert router.routed.rows["t-1"].department == "public_sector"

    async def test_a_priority_change_finds_a_hand_over_under_way_and_is_refused(
            self) -> None:
        router = wired()
        routed_ticket(router)
        await self.claimed(router)
        changed = await TestChangePriority().change(router, 5)
        assert changed == HANDOVER_IN_FLIGHT
        assert router.publisher.published == []
        assert router.routed.rows["t-1"].priority == 2
        # The claim's holder died: once it expired, the change goes through.
        router.routed.rows["t-1"].handover_until = datetime.now(UTC) - timedelta(seconds=1)
        changed = await TestChangePriority().change(router, 5)
        assert isinstance(changed, service.Reprioritised) and changed.priority == 5

    async def test_a_transfer_kafka_refused_releases_its_claim(self) -> None:
        router = wired()
        routed_ticket(router)
        router.publisher.fail = True
        assert await self.transfer(router, NOW) == Refused(Refusal.UNAVAILABLE)
        assert router.routed.rows["t-1"].handover_until is None
        router.publisher.fail = False
        assert await self.transfer(router, NOW) == service.Transferred("t-1", "business_desk")


DEADLOCK = as_sqlalchemy_raises(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))


def turned_back(router: Wired, method: str, error: Exception, times: int) -> list[int]:
    """The store turns the first `times` calls of the fake store's `method` back with
    `error`; the list counts the calls."""
    real, calls = getattr(router.routed, method), [0]

    async def at_times_refused(*args: object, **options: object) -> object:
        calls[0] += 1
        if calls[0] <= times:
            raise error
        return await real(*args, **options)

    setattr(router.routed, method, at_times_refused)
    return calls


def committed_then_failed(router: Wired, method: str, error: Exception) -> list[int]:
    """The first call of the fake store's `method` is recorded, then raises `error` (a
    connection dropped on COMMIT); the list counts the calls."""
    real, calls = getattr(router.routed, method), [0]

    async def recorded_then_failed(*args: object, **options: object) -> object:
        calls[0] += 1
        done = await real(*args, **options)
        if calls[0] == 1:
            raise error
        return done

    setattr(router.routed, method, recorded_then_failed)
    return calls


class TestPublishedThenRecorded:
    """A hand-over (transfer, escalation) or a priority change is published, then
    recorded. A record the store turns back for a moment (a conflict with another
    transaction, a short outage) is tried again while the hand-over's claim stands: the
    ticket is not left in its new queue while the store holds it where it was, for a
    retry to publish it there a second time."""

    async def test_a_transfer_whose_record_met_a_conflict_is_published_once(self) -> None:
        router = wired()
        routed_ticket(router)
        calls = turned_back(router, "record_handover", DEADLOCK, times=2)
        transferred = await TestOneHandOverAtATime().transfer(router, NOW)
        assert transferred == service.Transferred("t-1", "business_desk")
        assert calls == [3]
        assert router.publisher.types() == [TicketEventType.ROUTED,
                                            TicketEventType.TRANSFERRED]
        row = router.routed.rows["t-1"]
        assert (row.department, row.handover_until) == ("business_desk", None)

    async def test_a_priority_change_whose_record_met_a_conflict_stands(self) -> None:
        router = wired()
        routed_ticket(router)
        calls = turned_back(router, "record_priority_change", DEADLOCK, times=1)
        changed = await TestChangePriority().change(router, 1)
        assert isinstance(changed, service.Reprioritised) and changed.priority == 1
        assert calls == [2]
        assert router.publisher.types() == [TicketEventType.PRIORITY_CHANGED]
        assert router.routed.rows["t-1"].priority == 1

    @pytest.mark.parametrize("clocks", [True, False], ids=["by its clock", "no clocks"])
    async def test_an_escalation_whose_record_met_an_outage_is_counted_once(
            self, clocks: bool) -> None:
        router = wired()
        routed_ticket(router, clocks=clocks)
        calls = turned_back(router, "record_handover", ConnectionRefusedError(), times=1)
        assert await TestEscalateDue().escalate(router, NOW + timedelta(hours=5)) == 1
        assert calls == [2]
        assert router.publisher.types().count(TicketEventType.ESCALATED) == 1
        assert router.routed.rows["t-1"].department == "key_accounts"

    async def test_a_transfer_recorded_before_its_error_is_recorded_once(self) -> None:
        router = wired()
        routed_ticket(router)
        calls = committed_then_failed(router, "record_handover", ConnectionResetError())
        transferred = await TestOneHandOverAtATime().transfer(router, NOW)
        assert transferred == service.Transferred("t-1", "business_desk")
        assert calls == [2]
        steps = [step["step"] for step in router.routed.rows["t-1"].trace]
        assert steps.count("transferred") == 1
        assert router.routed.recorded == [("handover", "t-1")]

    async def test_a_priority_change_recorded_before_its_error_is_recorded_once(
            self) -> None:
        router = wired()
        routed_ticket(router)
        calls = committed_then_failed(router, "record_priority_change", DEADLOCK)
        changed = await TestChangePriority().change(router, 1)
        assert isinstance(changed, service.Reprioritised)
        assert calls == [2]
        steps = [step["step"] for step in router.routed.rows["t-1"].trace]
        assert steps.count("priority_changed") == 1

    async def test_a_store_down_past_the_claim_is_raised_for_a_503(self) -> None:
        """The claim, short here, ends before the store is back: the error is raised
        (the API answers 503), after more than one try."""
        router = wired()
        routed_ticket(router)
        calls = turned_back(router, "record_handover", ConnectionRefusedError(), times=1000)
        with pytest.raises(ConnectionRefusedError):
            # wait_for only bounds a loop that would not stop at the claim.
            await asyncio.wait_for(service.transfer(
                "t-1", to_department="business_desk", reason="needs the desk",
                from_department=None, principal=ADMIN, routed=router.routed, held=router.held,
                publisher=router.publisher, table=router.router.table.current,
                queue_for=router.router.queue_for, now=NOW,
                claim_for=timedelta(milliseconds=300)), 60)
        assert 1 < calls[0] < 1000
        assert router.publisher.types() == [TicketEventType.ROUTED,
                                            TicketEventType.TRANSFERRED]

    async def test_a_store_error_not_temporary_is_raised_at_once(self) -> None:
        router = wired()
        routed_ticket(router)
        broken = IntegrityError("UPDATE ...", {}, ValueError("a constraint"))
        calls = turned_back(router, "record_handover", broken, times=1000)
        with pytest.raises(IntegrityError):
            await TestOneHandOverAtATime().transfer(router, NOW)
        assert calls == [1]


class TestWarningsSentOnce:
    """A warning is published under a claim of the ticket as read (its clocks' next check
    too) and marked with that claim, as an escalation is: the watch and a hand-over's
    send_owed (another router) sending the same warning at once publish it once, whether
    the second claims after the first's record or while its publish is under way. It
    was published, then marked, unclaimed: twice on tickets.events and its callbacks."""

    WARNED = NOW + timedelta(hours=3)  # 75% of public_sector's 4h

    def router(self, tmp_path: Path) -> Wired:
        router = wired(routing_table_file(tmp_path, warning_share=0.75))
        routed_ticket(router)
        return router

    @staticmethod
    def as_read(row: RoutedTicketRow) -> RoutedTicketRow:
        # The fake keeps the row it hands out; a second router read its own copy.
        return RoutedTicketRow(**{column.key: getattr(row, column.key)
                                  for column in RoutedTicketRow.__table__.columns})

    async def send_owed(self, router: Wired, row: RoutedTicketRow,
                        ) -> clock_sending.Sent | None:
        return await clock_watch.send_owed(
            router.routed, router.publisher, row, table=router.router.table.current,
            queue_for=router.router.queue_for, now=self.WARNED + timedelta(seconds=1))

    def warnings(self, router: Wired) -> list[str]:
        return [item.event.data["target"] for item in router.publisher.published
                if item.event.type == TicketEventType.TARGET_WARNING]

    async def test_a_sending_after_the_others_record_publishes_nothing(
            self, tmp_path: Path) -> None:
        router = self.router(tmp_path)
        read_by_the_second = self.as_read(router.routed.rows["t-1"])
        first = await self.send_owed(router, self.as_read(router.routed.rows["t-1"]))
        second = await self.send_owed(router, read_by_the_second)
        assert (first, second) == (clock_sending.Sent(1), None)
        assert self.warnings(router) == ["first_response"]
        assert {item.event.correlation_id for item in router.publisher.published} == {
            "corr-platform-1"}  # the ticket's, as every event about it
        assert router.routed.rows["t-1"].handover_until is None  # the claim ended

    async def test_a_sending_during_the_others_publish_publishes_nothing(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        router = self.router(tmp_path)
        read_by_the_second = self.as_read(router.routed.rows["t-1"])
        publish = router.publisher.publish
        during: list[clock_sending.Sent | None] = []

        async def publishing(outputs: Sequence[kafka.Publishable]) -> None:
            if not during:  # the first sending's publish: the second sends meanwhile
                during.append(await self.send_owed(router, read_by_the_second))
            await publish(outputs)

        monkeypatch.setattr(router.publisher, "publish", publishing)
        first = await self.send_owed(router, self.as_read(router.routed.rows["t-1"]))
        assert (first, during) == (clock_sending.Sent(1), [None])
        assert self.warnings(router) == ["first_response"]
        # Marked: the watch after finds nothing owed.
        assert await clock_watch.watch_clocks(
            router.routed, router.publisher, table=router.router.table.current,
            queue_for=router.router.queue_for, now=self.WARNED + timedelta(seconds=2)) == 0
        assert self.warnings(router) == ["first_response"]
