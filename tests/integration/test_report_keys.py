"""Reports under an `Idempotency-Key` over HTTP, on the real SQL store (SQLite and
PostgreSQL) and the real broker: a department's `resolved` and a platform's customer
reply, each retried (the first answer lost on its way back), are published once and the
retry is answered as the first was, even once the router's follower has recorded the
first. Only the router's report endpoints run (no pipeline stage)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.core import access, events, topics
from services.core.events import TicketEventType
from services.router import (
    intake_policy,
    platform_reports,
    service,
    service_clocks,
)
from services.router.event_follower import FollowTicketEvent
from services.router.intake_keys import IntakeKeys
from services.router.models import RoutedTicketRow
from services.router.service import reports
from services.router.store import RoutedTickets
from tests import credentials
from tests.conftest import read_topic, unique
from tests.router_apis import intake_apis, routed_ticket

DEPARTMENT = "customer_care"
PLATFORM = "helpdesk"
@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    keys: IntakeKeys
    department: dict[str, str]  # a department credential's headers
    platform: dict[str, str]
    bootstrap: str

    async def routed_ticket(self, steps: int = 0) -> str:
        """A ticket the platform posted, routed to DEPARTMENT ten minutes ago (its trace
        `steps` long)."""
        ticket_id, _ = await routed_ticket(self.routed, DEPARTMENT, spent=timedelta(minutes=10),
                                           platform=PLATFORM, steps=steps)
        return ticket_id

    async def resolve(self, ticket_id: str, key: str, **body: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/tickets/{ticket_id}/events", json={"type": "resolved", **body},
            headers={"Idempotency-Key": key, **self.department})

    async def reply(self, ticket_id: str, key: str) -> httpx.Response:
        return await self.client.post(f"/v1/tickets/{ticket_id}/customer-replies", json={},
                                      headers={"Idempotency-Key": key, **self.platform})

    async def published(self, ticket_id: str, until: int) -> list[str]:
        """The ids of the ticket's events on `tickets.events`, as the pipeline reads
        them: `until` of them, and any more that follow within a second."""
        found = await read_topic(self.bootstrap, topics.EVENTS, until=until,
                                 keep=lambda event: event.ticket_id == ticket_id)
        return [event.id for event, _record in found]


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Router]:
    async with intake_apis(database_url, kafka_bootstrap, tmp_path,
                           platform_reports.api) as apis:
        yield Router(apis.client, apis.routed, apis.idempotency_keys,
                     await credentials.headers_of(apis.credentials, "department", DEPARTMENT),
                     await credentials.headers_of(apis.credentials, "platform", PLATFORM),
                     kafka_bootstrap)


class TestARetriedReportIsRecordedOnce:
    async def test_a_retried_resolved_gets_the_first_answer_once_the_ticket_is_closed(
            self, router: Router) -> None:
        ticket_id = await router.routed_ticket()
        key = unique("key")
        first = await router.resolve(ticket_id, key)
        assert first.status_code == 202, first.text
        # The router's follower reads it from Kafka: the ticket is closed.
        [(event, _record)] = await read_topic(
            router.bootstrap, topics.EVENTS, until=1,
            keep=lambda event: event.ticket_id == ticket_id)
        await FollowTicketEvent(router.routed)(event)
        closed = await router.routed.get(ticket_id)
        assert closed is not None and closed.status == "resolved"
        retry = await router.resolve(ticket_id, key)
        assert (retry.status_code, retry.json()) == (202, first.json())
        # Without its key, the same report is the closed ticket's 409.
        other = await router.resolve(ticket_id, unique("key"))
        assert (other.status_code, other.json()["error"]) == (409, "resolved")
        assert await router.published(ticket_id, until=1) == [first.json()["event_id"]]

    async def test_a_retried_customer_reply_is_published_once(
            self, router: Router) -> None:
        ticket_id = await router.routed_ticket()
        key = unique("key")
        answers = [await router.reply(ticket_id, key) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [202] * 3
        assert answers[1].json() == answers[2].json() == answers[0].json()
        assert await router.published(ticket_id, until=1) == [answers[0].json()["event_id"]]

    async def test_a_report_whose_key_is_being_recorded_is_told_to_retry_later(
            self, router: Router) -> None:
        """Another request under the key judged the same report and is publishing it:
        409 `in_progress` with Retry-After, and nothing published."""
        ticket_id = await router.routed_ticket()
        key = unique("key")
        department = access.Principal("any", access.Role.DEPARTMENT, DEPARTMENT)
        report = events.TicketEvent(ticket_id=ticket_id, type=TicketEventType.RESOLVED,
                                    occurred_at=datetime.now(UTC), department=DEPARTMENT)
        await router.keys.claim(
            service.ReportKey(key, router.keys, timedelta(0)).scoped(department),
            fingerprint=reports.fingerprint_of(report, None), ticket_id=ticket_id,
            now=datetime.now(UTC), event_id="e-in-flight")
        answer = await router.resolve(ticket_id, key)
        assert (answer.status_code, answer.json()["error"]) == (409, "in_progress")
        assert int(answer.headers["Retry-After"]) >= 1
        # A report after it, under a key of its own, is the ticket's only event.
        marker = await router.reply(ticket_id, unique("key"))
        assert marker.status_code == 202, marker.text
        assert await router.published(ticket_id, until=1) == [marker.json()["event_id"]]

    async def test_a_key_used_for_another_report_is_refused_naming_the_header(
            self, router: Router) -> None:
        ticket_id = await router.routed_ticket()
        key = unique("key")
        assert (await router.resolve(ticket_id, key)).status_code == 202
        at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        reused = await router.resolve(ticket_id, key, occurred_at=at)
        assert reused.status_code == 422
        assert reused.json()["fields"][0] == {
            "field": "header.Idempotency-Key", "type": "idempotency_key_reused",
            "problem": service.KEY_REUSED.detail}


class TestAReportDatedByAClockRunningAhead:
    async def test_it_is_published_dated_now_and_its_key_keeps_that_date(
            self, router: Router) -> None:
        """The department's clock runs a minute ahead: its report stands, dated at its
        arrival here, and its key keeps that date, at which a retry taking over from a
        request that died would publish it again."""
        ticket_id = await router.routed_ticket()
        key = unique("key")
        before = datetime.now(UTC)
        answer = await router.resolve(
            ticket_id, key, occurred_at=(before + timedelta(minutes=1)).isoformat())
        after = datetime.now(UTC)
        assert answer.status_code == 202, answer.text
        [(event, _record)] = await read_topic(
            router.bootstrap, topics.EVENTS, until=1,
            keep=lambda event: event.ticket_id == ticket_id)
        dated = events.read(event).occurred_at
        assert before <= dated <= after
        department = access.Principal("any", access.Role.DEPARTMENT, DEPARTMENT)
        claim = await router.keys.find(
            service.ReportKey(key, router.keys, timedelta(0)).scoped(department))
        assert claim is not None and claim.occurred_at == dated


class TestATicketWhoseTraceIsFull:
    """intake_policy's trace bounds, over HTTP on the real store: a ticket whose trace is
    full takes only what moves its clocks (a pick-up refused, naming why, nothing
    published; its first response taken). The router's follower records every report
    the intake accepted, however far it lags, as the metrics service does; past the
    trace's ceiling it keeps no step of them."""

    async def report(self, router: Router, ticket_id: str, kind: str) -> httpx.Response:
        return await router.client.post(f"/v1/tickets/{ticket_id}/events",
                                         json={"type": kind}, headers=router.department)

    async def followed(self, router: Router, ticket_id: str, count: int) -> RoutedTicketRow:
        found = await read_topic(router.bootstrap, topics.EVENTS, until=count,
                                 keep=lambda event: event.ticket_id == ticket_id)
        follow = FollowTicketEvent(router.routed)
        for event, _record in found:
            await follow(event)
        row = await router.routed.get(ticket_id)
        assert row is not None
        return row

    async def test_it_takes_what_moves_its_clocks_only(self, router: Router) -> None:
        ticket_id = await router.routed_ticket(steps=intake_policy.TRACE_STEPS_MAX)
        picked_up = await self.report(router, ticket_id, "picked_up")
        assert picked_up.status_code == 409, picked_up.text
        assert picked_up.json()["error"] == "trace_full"
        assert f"{intake_policy.TRACE_STEPS_MAX:,}" in picked_up.json()["detail"]
        responded = await self.report(router, ticket_id, "responded")
        assert responded.status_code == 202, responded.text
        assert await router.published(ticket_id, until=1) == [responded.json()["event_id"]]

    async def test_the_follower_records_what_was_accepted_though_the_trace_filled(
            self, router: Router) -> None:
        """Accepted one step short of full, all three are recorded, the pause too: the
        metrics service, which applies every report, agrees."""
        ticket_id = await router.routed_ticket(steps=intake_policy.TRACE_STEPS_MAX - 1)
        kinds = ("picked_up", "waiting_on_customer", "responded")
        assert [(await self.report(router, ticket_id, kind)).status_code
                for kind in kinds] == [202] * 3
        row = await self.followed(router, ticket_id, 3)
        assert [step["step"] for step in row.trace[-3:]] == list(kinds)

    async def test_past_the_ceiling_reports_move_the_ticket_and_keep_no_step(
            self, router: Router) -> None:
        """Accepted at one moment against the row as it stood, reports may take the trace
        to its ceiling: there the follower still moves the ticket's state and clocks for
        each, as the metrics service does, keeping their event ids only; followed again
        (a batch after a crash), they move nothing twice."""
        ticket_id = await router.routed_ticket(steps=intake_policy.TRACE_STEPS_CEILING - 1)
        kinds = ("waiting_on_customer", "responded")
        answers = [await self.report(router, ticket_id, kind) for kind in kinds]
        assert [answer.status_code for answer in answers] == [202] * 2
        row = await self.followed(router, ticket_id, 2)
        assert [step["step"] for step in row.trace[-2:]] == ["waiting_on_customer",
                                                             "later_reports"]
        assert row.trace[-1]["events"] == [answers[1].json()["event_id"]]
        assert row.status == "responded" and row.first_response_at is not None
        assert row.service_clocks is not None
        clocks = service_clocks.from_json(row.service_clocks)
        first = clocks.current("first_response")
        assert first is not None and first.stopped
        again = await self.followed(router, ticket_id, 2)
        assert (again.trace, again.service_clocks, again.updated_at) == (
            row.trace, row.service_clocks, row.updated_at)
