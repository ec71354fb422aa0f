"""A platform key's rate limit covers all it may call, over HTTP on the real SQL store
and the real broker: its customer replies spend the budget its ticket posts spend, and
past it both answer 429 with Retry-After; so do the bytes of its bodies, against a budget
of their own. Only the router's intake and report endpoints run (no pipeline stage)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from services.core import access
from services.core.credentials import Credentials
from services.router import platform_reports, tickets_api
from services.router.store import RoutedTickets
from tests import credentials
from tests.credential_apis import TICKET
from tests.router_apis import CUSTOMER_CARE_AND_BILLING, intake_apis, routed_ticket

PLATFORM = "helpdesk"


@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    credentials: Credentials

    async def key(self, role: access.Role, subject: str | None,
                  rate_limit: str | None = None) -> dict[str, str]:
        """The headers of a fresh key of `role` for `subject`, with its own rate limit
        (else none)."""
        _credential, token = await self.credentials.issue(
            role, subject, label="tests", rate_limit=rate_limit)
        return credentials.bearer(token)

    async def platform_key(self, rate_limit: str, platform: str = PLATFORM,
                           ) -> dict[str, str]:
        """The headers of a fresh key of `platform` with its own rate limit."""
        return await self.key(access.Role.PLATFORM, platform, rate_limit)

    async def ticket(self) -> str:
        """A ticket of PLATFORM routed to customer_care ten minutes ago: its id."""
        ticket_id, _ = await routed_ticket(self.routed, "customer_care",
                                           spent=timedelta(minutes=10), platform=PLATFORM)
        return ticket_id

    async def post_ticket(self, key: dict[str, str], *, size: int | None = None,
                          chunked: bool = False) -> httpx.Response:
        """A ticket, its JSON padded with spaces to `size` bytes (else as it is), sent
        with its length or in chunks without one."""
        body = json.dumps(TICKET).encode()
        body += b" " * ((size or len(body)) - len(body))

        async def chunks() -> AsyncIterator[bytes]:
            yield body[:len(body) // 2]
            yield body[len(body) // 2:]

        return await self.client.post(
            "/v1/tickets", content=chunks() if chunked else body,
            headers={**key, "content-type": "application/json"})

    async def reply(self, ticket_id: str, key: dict[str, str]) -> httpx.Response:
        return await self.client.post(f"/v1/tickets/{ticket_id}/customer-replies", json={},
                                      headers=key)

    async def report(self, ticket_id: str, key: dict[str, str], body: bytes,
                     ) -> httpx.Response:
        """A department's report on the ticket, `body` sent as it is."""
        return await self.client.post(f"/v1/tickets/{ticket_id}/events", content=body,
                                      headers=key)


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Router]:
    async with intake_apis(database_url, kafka_bootstrap, tmp_path, platform_reports.api,
                           tickets_api.api, table=CUSTOMER_CARE_AND_BILLING) as served:
        yield Router(served.client, served.routed, served.credentials)


# The least a byte budget may be (a window holds the largest body), over a day: its
# window's end, when the last window's count starts to weigh less, is far off.
BYTE_BUDGET = "1MiB/day"
MIB = 1 << 20
REPORT = b'{"type": "picked_up"}'
# A report padded with spaces to a byte short of the budget.
PADDED_REPORT = REPORT + b" " * (MIB - 1 - len(REPORT))


@pytest.fixture
async def budgeted(database_url: str, kafka_bootstrap: str,
                   tmp_path: Path) -> AsyncIterator[Router]:
    async with intake_apis(database_url, kafka_bootstrap, tmp_path, platform_reports.api,
                           intake_byte_rate_limit=BYTE_BUDGET) as served:
        yield Router(served.client, served.routed, served.credentials)


async def a_ticket_and_its_desk(router: Router) -> tuple[str, dict[str, str]]:
    """A ticket routed to customer_care, and the headers of a fresh customer_care key
    (no rate limit of its own) sending JSON."""
    desk = await router.key(access.Role.DEPARTMENT, "customer_care")
    return await router.ticket(), {**desk, "content-type": "application/json"}


class TestCustomerRepliesWithinTheKeysRateLimit:
    async def test_replies_past_the_keys_budget_are_refused_with_retry_after(
            self, router: Router) -> None:
        ticket_id = await router.ticket()
        limited = await router.platform_key("3/minute")

        answers = [await router.reply(ticket_id, limited) for _ in range(4)]

        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert answers[-1].json()["error"] == "rate_limited"
        # The budget is the key's: another key of the same platform is still answered.
        other = await router.platform_key("3/minute")
        assert (await router.reply(ticket_id, other)).status_code == 202

    async def test_replies_spend_the_budget_the_intake_counts(self, router: Router) -> None:
        ticket_id = await router.ticket()
        limited = await router.platform_key("2/minute")
        for _ in range(2):
            assert (await router.reply(ticket_id, limited)).status_code == 202

        posted = await router.client.post("/v1/tickets", headers=limited, json=TICKET)

        assert posted.status_code == 429
        assert 1 <= int(posted.headers["Retry-After"]) <= 60


class TestDepartmentReportsWithinTheKeysRateLimit:
    async def test_a_departments_reports_past_its_budget_are_refused_with_retry_after(
            self, router: Router) -> None:
        """Each report rewrites the ticket's state and trace in the store: one
        department's flood of them slowed every caller (15,000 `picked_up` in a row on
        one ticket). Its key has a budget as a platform's has."""
        ticket_id = await router.ticket()
        desk = await router.key(access.Role.DEPARTMENT, "customer_care", "3/minute")

        answers = [await router.client.post(f"/v1/tickets/{ticket_id}/events",
                                            json={"type": "picked_up"}, headers=desk)
                   for _ in range(4)]

        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert answers[-1].json()["error"] == "rate_limited"

    async def test_a_departments_priority_changes_spend_the_same_budget(
            self, router: Router) -> None:
        ticket_id = await router.ticket()
        desk = await router.key(access.Role.DEPARTMENT, "customer_care", "3/minute")
        reported = await router.client.post(f"/v1/tickets/{ticket_id}/events",
                                             json={"type": "picked_up"}, headers=desk)
        answers = [await router.client.post(
            f"/v1/tickets/{ticket_id}/priority", json={"priority": priority, "reason": "r"},
            headers=desk) for priority in (1, 2, 4)]
        assert [a.status_code for a in (reported, *answers)] == [202, 200, 200, 429]
        assert answers[-1].json()["error"] == "rate_limited"

    async def test_an_admins_changes_have_a_budget_too(self, router: Router) -> None:
        ticket_id = await router.ticket()
        admin = await router.key(access.Role.ADMIN, None, "2/minute")
        answers = [await router.client.post(
            f"/v1/tickets/{ticket_id}/priority", json={"priority": priority, "reason": "r"},
            headers=admin) for priority in (1, 2, 4)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        transfer = await router.client.post(
            f"/v1/tickets/{ticket_id}/transfer",
            json={"to_department": "billing", "reason": "r"}, headers=admin)
        assert transfer.status_code == 429  # the same budget, spent


class TestBodyBytesWithinTheKeysBudget:
    """A platform within its requests a second could still send a megabyte with each,
    costing the intake some 63 ms of CPU apiece: its key's bodies have a budget of bytes
    (INTAKE_BYTE_RATE_LIMIT), counted before they are read, on the routes its requests
    are counted on."""

    async def test_a_key_over_its_budget_is_refused_and_the_others_still_served(
            self, budgeted: Router) -> None:
        heavy = await budgeted.platform_key("1000/minute")  # requests: far within
        ticket_id = await budgeted.ticket()
        assert (await budgeted.post_ticket(heavy, size=MIB - 1)).status_code == 202

        over = [await budgeted.post_ticket(heavy), await budgeted.post_ticket(heavy, chunked=True),
                await budgeted.reply(ticket_id, heavy)]  # "{}": 2 bytes over

        assert [answer.status_code for answer in over] == [429, 429, 429]
        for answer in over:
            assert answer.json()["error"] == "byte_rate_limited"
            assert "over this credential's budget of 1MiB/day" in answer.json()["detail"]
            assert 1 <= int(answer.headers["Retry-After"]) <= 2 * 86_400
        # Another platform's key, and another key of the same platform: their own budgets.
        neighbour = await budgeted.platform_key("1000/minute", platform="another_desk")
        sibling = await budgeted.platform_key("1000/minute")
        for key in (neighbour, sibling):
            assert (await budgeted.post_ticket(key, size=MIB // 2)).status_code == 202
            assert (await budgeted.post_ticket(key, chunked=True)).status_code == 202

    async def test_a_departments_reports_spend_a_budget_too(self, budgeted: Router) -> None:
        """The routes its requests are counted on: reports, as the platform's posts."""
        ticket_id, desk = await a_ticket_and_its_desk(budgeted)

        answers = [await budgeted.report(ticket_id, desk, body)
                   for body in (PADDED_REPORT, REPORT)]

        assert [answer.status_code for answer in answers] == [202, 429]
        assert answers[-1].json()["error"] == "byte_rate_limited"

    async def test_a_key_within_its_budget_is_unaffected(self, budgeted: Router) -> None:
        key = await budgeted.platform_key("1000/minute")
        answers = [await budgeted.post_ticket(key, size=MIB // 4) for _ in range(3)]
        answers += [await budgeted.post_ticket(key, chunked=True) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [202] * 6


class TestARoleNotAdmittedSpendsNoBytes:
    """A key of a role a route does not admit is refused before its body is read, on
    the intake's routes as on every other: no parsing of a megabyte it may not send, and
    none of its budget of bytes spent on it."""

    async def test_a_platforms_body_to_a_departments_route(self, budgeted: Router) -> None:
        ticket_id = await budgeted.ticket()
        key = {**await budgeted.platform_key("1000/minute"),
               "content-type": "application/json"}

        answers = [await budgeted.report(ticket_id, key, body)
                   for body in (PADDED_REPORT, PADDED_REPORT, b"")]

        assert [answer.status_code for answer in answers] == [403, 403, 403]
        # With a body or without (the route's dependency then): one answer.
        assert answers[0].json() == answers[2].json() == {
            "error": "forbidden", "detail": "this needs a credential of role department or"
                                            " admin; yours is a platform credential"}
        # Its budget whole: 2 MiB spent on the reports would leave no room.
        assert (await budgeted.post_ticket(key, size=MIB - 1)).status_code == 202

    async def test_a_departments_body_to_the_platforms_route(self, budgeted: Router) -> None:
        ticket_id, desk = await a_ticket_and_its_desk(budgeted)

        posted = await budgeted.post_ticket(desk, size=MIB - 1)

        assert (posted.status_code, posted.json()["error"]) == (403, "forbidden")
        reported = await budgeted.report(ticket_id, desk, PADDED_REPORT)
        assert reported.status_code == 202
