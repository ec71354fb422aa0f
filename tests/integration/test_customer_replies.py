"""A platform's customer replies by a ticket's id, over HTTP on the real SQL store and the
real broker: a reply sent right after the ticket's 202, before the ticket is routed, is
told to come again (409 `not_routed_yet` with Retry-After) and is taken once the ticket
is routed; an id the intake never issued is 404; another platform's ticket is answered
exactly as an id of no ticket; a reply dated before the pause it ends, its events read
back from the broker and followed by the router's event follower, resumes the clocks
where they paused, not at its date. Only the router's intake, report and ticket
endpoints run (no pipeline stage: the test records the routing as the router stage
would)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.core import topics
from services.core.settings import Settings
from services.router import platform_reports, ticket_ids, tickets_api
from services.router.event_follower import FollowTicketEvent
from services.router.service import verdicts
from services.router.store import RoutedTickets
from tests import credentials
from tests.conftest import read_topic
from tests.router_apis import TARGETS, intake_apis, routed_ticket

PLATFORM, OTHER_PLATFORM = "helpdesk", "zd-test"
DEPARTMENT = "customer_care"
RETRY_AFTER = str(Settings().retry_after_seconds)


@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    platforms: dict[str, dict[str, str]]  # each platform's credential's headers
    department: dict[str, str]  # DEPARTMENT's credential's headers
    bootstrap: str

    async def post_ticket(self) -> str:
        """A ticket posted by PLATFORM, accepted (202): its id."""
        answer = await self.client.post("/v1/tickets", headers=self.platforms[PLATFORM], json={
            "customer_id": "c-1", "subject": "Invoice", "body": "Where is it?",
            "channel": "email"})
        assert answer.status_code == 202, answer.text
        ticket_id: str = answer.json()["ticket_id"]
        return ticket_id

    async def route(self, ticket_id: str | None = None) -> str:
        """PLATFORM's ticket, by `ticket_id` or a new id, routed as the router stage does."""
        routed, _at = await routed_ticket(self.routed, DEPARTMENT, spent=timedelta(seconds=1),
                                          platform=PLATFORM, ticket_id=ticket_id)
        return routed

    async def reply(self, ticket_id: str, platform: str = PLATFORM) -> httpx.Response:
        return await self.client.post(f"/v1/tickets/{ticket_id}/customer-replies", json={},
                                      headers=self.platforms[platform])


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Router]:
    async with intake_apis(database_url, kafka_bootstrap, tmp_path,
                           platform_reports.api, tickets_api.api) as apis:
        yield Router(apis.client, apis.routed, {
            platform: await credentials.headers_of(apis.credentials, "platform", platform)
            for platform in (PLATFORM, OTHER_PLATFORM)},
            await credentials.headers_of(apis.credentials, "department", DEPARTMENT),
            kafka_bootstrap)


def assert_not_found(answer: httpx.Response, ticket_id: str) -> None:
    assert (answer.status_code, answer.json()) == (404, {
        "error": "not_found", "detail": f"no routed ticket {ticket_id!r}"}), answer.text
    assert "Retry-After" not in answer.headers


class TestAReplyRightAfterThe202:
    async def test_it_is_told_to_come_again_and_is_taken_once_the_ticket_is_routed(
            self, router: Router) -> None:
        ticket_id = await router.post_ticket()
        early = await router.reply(ticket_id)
        assert (early.status_code, early.json()["error"]) == (409, "not_routed_yet"), \
            early.text
        assert early.headers["Retry-After"] == RETRY_AFTER
        issued = ticket_ids.issued_at(ticket_id)
        assert issued is not None
        assert early.json()["detail"] == (
            f"ticket {ticket_id!r} is not routed yet: the intake issued its id at"
            f" {issued.isoformat()}, and a ticket it accepted is on its way to its"
            " department; retry after Retry-After")
        await router.route(ticket_id)
        taken = await router.reply(ticket_id)
        assert taken.status_code == 202, taken.text
        assert taken.json()["type"] == "customer_replied"

    @pytest.mark.parametrize("ticket_id", [
        str(uuid.uuid4()), "t-never-issued",
        ticket_ids.issue(datetime.now(UTC) - verdicts.ON_ITS_WAY_FOR - timedelta(hours=1))])
    async def test_an_id_of_no_ticket_on_its_way_is_not_found(
            self, router: Router, ticket_id: str) -> None:
        """An id of the old form (version 4), of no form the intake issues, or issued
        longer ago than a ticket stays in Kafka as posted."""
        assert_not_found(await router.reply(ticket_id), ticket_id)

    async def test_a_ticket_of_an_id_issued_before_is_replied_to_as_ever(
            self, router: Router) -> None:
        ticket_id = await router.route(str(uuid.uuid4()))
        assert (await router.reply(ticket_id)).status_code == 202


class TestAnotherPlatformsTicket:
    """A platform learns nothing of which ids are another's tickets: the answer on one
    is the answer on an id of none (its id in the detail)."""

    async def test_a_routed_ticket_is_answered_as_an_unknown_id(
            self, router: Router) -> None:
        theirs = await router.route(str(uuid.uuid4()))
        unknown = str(uuid.uuid4())
        assert_not_found(await router.reply(theirs, OTHER_PLATFORM), theirs)
        assert_not_found(await router.reply(unknown, OTHER_PLATFORM), unknown)
        assert (await router.reply(theirs)).status_code == 202

    async def test_a_ticket_issued_lately_is_answered_as_an_unknown_id_issued_then(
            self, router: Router) -> None:
        theirs = await router.post_ticket()
        issued = ticket_ids.issued_at(theirs)
        assert issued is not None
        unknown = ticket_ids.issue(issued)
        for routed in (False, True):
            if routed:
                await router.route(theirs)
            answer = await router.reply(theirs, OTHER_PLATFORM)
            nobodys = await router.reply(unknown, OTHER_PLATFORM)
            assert answer.status_code == nobodys.status_code == 409, answer.text
            assert answer.json() == {key: value.replace(unknown, theirs)
                                     for key, value in nobodys.json().items()}
            assert answer.headers["Retry-After"] == nobodys.headers["Retry-After"]
        assert (await router.reply(theirs)).status_code == 202


class TestAReplyDatedBeforeThePause:
    async def test_the_clocks_resume_where_they_paused(self, router: Router) -> None:
        """Routed 3h30 ago, its first response due in 30 minutes; the department waits
        on the customer now, and the platform then posts the customer's reply dated 5
        minutes after the routing (within the ticket's time, so taken). The router's
        follower takes both off the broker: the clocks run on from the pause as they
        were, not from the reply's date, which would count the 3h25 between again and
        make the first response due 3h25 ago, breached at once."""
        ticket_id, routed_at = await routed_ticket(
            router.routed, DEPARTMENT, spent=timedelta(hours=3, minutes=30),
            platform=PLATFORM)
        waiting = await router.client.post(f"/v1/tickets/{ticket_id}/events",
                                           json={"type": "waiting_on_customer"},
                                           headers=router.department)
        assert waiting.status_code == 202, waiting.text
        replied = await router.client.post(
            f"/v1/tickets/{ticket_id}/customer-replies",
            json={"occurred_at": (routed_at + timedelta(minutes=5)).isoformat()},
            headers=router.platforms[PLATFORM])
        assert replied.status_code == 202, replied.text
        found = await read_topic(router.bootstrap, topics.EVENTS, until=2,
                                 keep=lambda event: event.ticket_id == ticket_id)
        assert [event.id for event, _record in found] == [
            waiting.json()["event_id"], replied.json()["event_id"]]
        follow = FollowTicketEvent(router.routed)
        for event, _record in found:
            await follow(event)
        state = await router.client.get(f"/v1/tickets/{ticket_id}",
                                        headers=router.department)
        assert state.status_code == 200, state.text
        assert state.json()["paused"] is False
        assert TARGETS.resolution is not None
        assert {target: datetime.fromisoformat(due)
                for target, due in state.json()["deadlines"].items()} == {
            "first_response": routed_at + TARGETS.first_response,
            "resolution": routed_at + TARGETS.resolution}
