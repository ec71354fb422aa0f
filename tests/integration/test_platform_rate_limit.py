"""A platform key's rate limit covers all it may call, over HTTP on the real SQL store
and the real broker: its customer replies spend the budget its ticket posts spend, and
past it both answer 429 with Retry-After. Only the router's intake and report endpoints
run (no pipeline stage)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from services.core import access
from services.core.credentials import Credentials
from services.router import intake, platform_reports, tickets_api
from services.router.store import RoutedTickets
from tests import credentials
from tests.router_apis import routed_ticket, router_apis

PLATFORM = "helpdesk"
TABLE = """\
fallback_department: customer_care
routes:
  - {segment: standard, department: customer_care}
departments:
  customer_care: {}
  billing: {}
"""


@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    credentials: Credentials

    async def platform_key(self, rate_limit: str) -> dict[str, str]:
        """The headers of a fresh key of PLATFORM with its own rate limit."""
        _credential, token = await self.credentials.issue(
            access.Role.PLATFORM, PLATFORM, label="tests", rate_limit=rate_limit)
        return credentials.bearer(token)

    async def reply(self, ticket_id: str, key: dict[str, str]) -> httpx.Response:
        return await self.client.post(f"/v1/tickets/{ticket_id}/customer-replies", json={},
                                      headers=key)


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Router]:
    table = tmp_path / "routing.yaml"
    table.write_text(TABLE, encoding="utf-8")
    async with router_apis(database_url, kafka_bootstrap, table, intake.api,
                           platform_reports.api, tickets_api.api) as apis:
        yield Router(apis.client, apis.routed, apis.credentials)


class TestCustomerRepliesWithinTheKeysRateLimit:
    async def test_replies_past_the_keys_budget_are_refused_with_retry_after(
            self, router: Router) -> None:
        ticket_id, _ = await routed_ticket(router.routed, "customer_care",
                                           spent=timedelta(minutes=10), platform=PLATFORM)
        limited = await router.platform_key("3/minute")

        answers = [await router.reply(ticket_id, limited) for _ in range(4)]

        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert answers[-1].json()["error"] == "rate_limited"
        # The budget is the key's: another key of the same platform is still answered.
        other = await router.platform_key("3/minute")
        assert (await router.reply(ticket_id, other)).status_code == 202

    async def test_replies_spend_the_budget_the_intake_counts(self, router: Router) -> None:
        ticket_id, _ = await routed_ticket(router.routed, "customer_care",
                                           spent=timedelta(minutes=10), platform=PLATFORM)
        limited = await router.platform_key("2/minute")
        for _ in range(2):
            assert (await router.reply(ticket_id, limited)).status_code == 202

        posted = await router.client.post("/v1/tickets", headers=limited, json={
            "customer_id": "c-1", "subject": "a question", "body": "where is my order?",
            "channel": "web"})

        assert posted.status_code == 429
        assert 1 <= int(posted.headers["Retry-After"]) <= 60


class TestDepartmentReportsWithinTheKeysRateLimit:
    async def test_a_departments_reports_past_its_budget_are_refused_with_retry_after(
            self, router: Router) -> None:
        """Each report rewrites the ticket's state and trace in the store: one
        department's flood of them slowed every caller (15,000 `picked_up` in a row on
        one ticket). Its key has a budget as a platform's has."""
        ticket_id, _ = await routed_ticket(router.routed, "customer_care",
                                           spent=timedelta(minutes=10), platform=PLATFORM)
        _credential, token = await router.credentials.issue(
            access.Role.DEPARTMENT, "customer_care", label="tests", rate_limit="3/minute")
        desk = credentials.bearer(token)

        answers = [await router.client.post(f"/v1/tickets/{ticket_id}/events",
                                            json={"type": "picked_up"}, headers=desk)
                   for _ in range(4)]

        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert answers[-1].json()["error"] == "rate_limited"

    async def test_a_departments_priority_changes_spend_the_same_budget(
            self, router: Router) -> None:
        ticket_id, _ = await routed_ticket(router.routed, "customer_care",
                                           spent=timedelta(minutes=10), platform=PLATFORM)
        _credential, token = await router.credentials.issue(
            access.Role.DEPARTMENT, "customer_care", label="tests", rate_limit="3/minute")
        desk = credentials.bearer(token)
        reported = await router.client.post(f"/v1/tickets/{ticket_id}/events",
                                             json={"type": "picked_up"}, headers=desk)
        answers = [await router.client.post(
            f"/v1/tickets/{ticket_id}/priority", json={"priority": priority, "reason": "r"},
            headers=desk) for priority in (1, 2, 4)]
        assert [a.status_code for a in (reported, *answers)] == [202, 200, 200, 429]
        assert answers[-1].json()["error"] == "rate_limited"

    async def test_an_admins_changes_have_a_budget_too(self, router: Router) -> None:
        ticket_id, _ = await routed_ticket(router.routed, "customer_care",
                                           spent=timedelta(minutes=10), platform=PLATFORM)
        _credential, token = await router.credentials.issue(
            access.Role.ADMIN, None, label="tests", rate_limit="2/minute")
        admin = credentials.bearer(token)
        answers = [await router.client.post(
            f"/v1/tickets/{ticket_id}/priority", json={"priority": priority, "reason": "r"},
            headers=admin) for priority in (1, 2, 4)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        transfer = await router.client.post(
            f"/v1/tickets/{ticket_id}/transfer",
            json={"to_department": "billing", "reason": "r"}, headers=admin)
        assert transfer.status_code == 429  # the same budget, spent
