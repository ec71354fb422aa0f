"""A key's own budget of body bytes (`byte_rate_limit`), issued over the credentials API
on the real SQL store and taken by the real intake publishing on the real broker: a key
given a small one is refused 429 `byte_rate_limited` where a key on the service's default
(INTAKE_BYTE_RATE_LIMIT) is served; one the intake could not count by is refused 422
naming the field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core import credentials_api, kafka, topics
from services.core.settings import Settings
from services.router import intake
from tests import credentials
from tests.router_apis import CUSTOMER_CARE_ONLY, router_apis

MIB = 1 << 20
HALF_AND_MORE = 600_000  # two are over 1 MiB
TICKET = {"customer_id": "c-1", "subject": "a question", "body": "where is my order?",
          "channel": "web"}


@dataclass
class Router:
    client: httpx.AsyncClient
    admin: dict[str, str]

    async def issue(self, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/v1/credentials", json=body, headers=self.admin)

    async def platform_key(self, **own: str) -> dict[str, str]:
        """The headers of a fresh key of a platform, issued as an admin does."""
        answer = await self.issue({"role": "platform", "subject": "helpdesk", **own})
        assert answer.status_code == 201, answer.text
        return credentials.bearer(answer.json()["token"])

    async def post_ticket(self, key: dict[str, str], size: int) -> httpx.Response:
        """A ticket, its JSON padded with spaces to `size` bytes."""
        body = json.dumps(TICKET).encode()
        return await self.client.post(
            "/v1/tickets", content=body + b" " * (size - len(body)),
            headers={**key, "content-type": "application/json"})


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Router]:
    table = tmp_path / "routing.yaml"
    table.write_text(CUSTOMER_CARE_ONLY, encoding="utf-8")
    # The intake publishes the tickets there (router_apis makes tickets.events).
    await kafka.ensure_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap),
                              [topics.INCOMING])
    # The service's default as shipped (4MiB/second), the request rate far off.
    async with router_apis(database_url, kafka_bootstrap, table, intake.api,
                           credentials_api.api, intake_rate_limit="1000/minute") as apis:
        admin = await credentials.headers_of(apis.credentials, "admin")
        yield Router(apis.client, admin)


class TestAKeysOwnBudgetOfBodyBytes:
    async def test_a_key_given_a_small_budget_is_refused_where_the_default_serves(
            self, router: Router) -> None:
        # 1 MiB a day: the least a budget may be, its window's end far off.
        small = await router.platform_key(byte_rate_limit="1MiB/day")
        default = await router.platform_key()

        answers = [await router.post_ticket(small, HALF_AND_MORE) for _ in range(2)]

        assert [answer.status_code for answer in answers] == [202, 429]
        assert answers[-1].json()["error"] == "byte_rate_limited"
        assert answers[-1].json()["detail"].endswith(
            "over this credential's budget of 1MiB/day (its own byte_rate_limit);"
            f" retry after {answers[-1].headers['Retry-After']}s")
        # 1.2 MB within a second, under the default's 4 MiB a second, whenever sent.
        served = [await router.post_ticket(default, HALF_AND_MORE) for _ in range(2)]
        assert [answer.status_code for answer in served] == [202, 202]

    async def test_the_key_shows_its_budget(self, router: Router) -> None:
        await router.platform_key(byte_rate_limit="16MiB/second")
        listed = (await router.client.get("/v1/credentials", headers=router.admin)).json()
        assert [c["byte_rate_limit"] for c in listed if c["role"] == "platform"] == [
            "16MiB/second"]

    @pytest.mark.parametrize(("written", "problem"), [
        ("512KiB/second", "at least 1MiB a window, the largest body a request may send"
                          " (1048576 bytes), or such a body is never taken; a number of bytes"
                          " a window, such as 4MiB/second, 240 MiB per minute or"
                          " 1048576/second (units B, KiB, MiB, GiB)"),
        ("4 megabytes a second", "should be a number of bytes a window, such as 4MiB/second"),
    ])
    async def test_a_bad_budget_is_refused_naming_the_field(
            self, router: Router, written: str, problem: str) -> None:
        answer = await router.issue({"role": "platform", "subject": "helpdesk",
                                     "byte_rate_limit": written})
        assert answer.status_code == 422
        [field] = answer.json()["fields"]
        assert field["field"] == "body.byte_rate_limit"
        assert field["problem"].startswith(problem)
        listed = (await router.client.get("/v1/credentials", headers=router.admin)).json()
        assert [c["role"] for c in listed] == ["admin"]  # none issued
