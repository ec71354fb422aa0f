"""A platform's customer replies by a ticket's id, over HTTP on the real SQL store and the
real broker: a reply sent right after the ticket's 202, before the ticket is routed, is
told to come again (409 `not_routed_yet` with Retry-After) and is taken once the ticket
is routed; an id the intake never issued is 404; another platform's ticket is answered
exactly as an id of no ticket. Only the router's intake and report endpoints run (no
pipeline stage: the test records the routing as the router stage would)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings
from services.router import platform_reports, ticket_ids
from services.router.service import verdicts
from services.router.store import RoutedTickets
from tests import credentials
from tests.router_apis import intake_apis, routed_ticket

PLATFORM, OTHER_PLATFORM = "helpdesk", "zd-test"
DEPARTMENT = "customer_care"
RETRY_AFTER = str(Settings().retry_after_seconds)


@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    platforms: dict[str, dict[str, str]]  # each platform's credential's headers

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
                           platform_reports.api) as apis:
        yield Router(apis.client, apis.routed, {
            platform: await credentials.headers_of(apis.credentials, "platform", platform)
            for platform in (PLATFORM, OTHER_PLATFORM)})


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
