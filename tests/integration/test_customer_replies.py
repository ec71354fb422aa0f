"""A platform's customer replies by a ticket's id, over HTTP on the real SQL store and the
real broker: another platform's ticket is answered exactly as an id of no ticket. Only
the router's report endpoints run (no pipeline stage: the test records the routing as the
router stage would)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from services.router import platform_reports
from services.router.store import RoutedTickets
from tests import credentials
from tests.router_apis import routed_ticket, router_apis

PLATFORM, OTHER_PLATFORM = "helpdesk", "zd-test"
DEPARTMENT = "customer_care"
TABLE = """\
fallback_department: customer_care
routes:
  - {segment: standard, department: customer_care}
departments:
  customer_care: {}
"""


@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    platforms: dict[str, dict[str, str]]  # each platform's credential's headers

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
    table = tmp_path / "routing.yaml"
    table.write_text(TABLE, encoding="utf-8")
    async with router_apis(database_url, kafka_bootstrap, table,
                           platform_reports.api) as apis:
        yield Router(apis.client, apis.routed, {
            platform: await credentials.headers_of(apis.credentials, "platform", platform)
            for platform in (PLATFORM, OTHER_PLATFORM)})


def assert_not_found(answer: httpx.Response, ticket_id: str) -> None:
    assert (answer.status_code, answer.json()) == (404, {
        "error": "not_found", "detail": f"no routed ticket {ticket_id!r}"}), answer.text
    assert "Retry-After" not in answer.headers


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
