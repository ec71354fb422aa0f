"""The credentials API beside the intake, as an integration test runs them (router_apis):
an admin issues, changes and lists keys over HTTP, and a key's holder posts tickets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.core import credentials_api
from tests import credentials
from tests.router_apis import intake_apis

TICKET = {"customer_id": "c-1", "subject": "a question", "body": "where is my order?",
          "channel": "web"}


@dataclass
class CredentialApis:
    client: httpx.AsyncClient  # to the APIs, base URL http://router
    admin: dict[str, str]  # an admin's headers

    async def issue(self, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/v1/credentials", json=body, headers=self.admin)

    async def platform_key(self, **own: str) -> tuple[str, dict[str, str]]:
        """A fresh key of a platform, issued as an admin does: its id and headers."""
        answer = await self.issue({"role": "platform", "subject": "helpdesk", **own})
        assert answer.status_code == 201, answer.text
        return answer.json()["credential_id"], credentials.bearer(answer.json()["token"])

    async def change(self, credential_id: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.patch(f"/v1/credentials/{credential_id}", json=body,
                                       headers=self.admin)

    async def listed(self) -> list[dict[str, Any]]:
        """Every credential, as GET /v1/credentials lists them."""
        listed: list[dict[str, Any]] = (
            await self.client.get("/v1/credentials", headers=self.admin)).json()
        return listed

    async def credential(self, credential_id: str) -> dict[str, Any]:
        """The credential of `credential_id`, as GET /v1/credentials lists it."""
        [credential] = [c for c in await self.listed() if c["credential_id"] == credential_id]
        return credential

    async def post_ticket(self, key: dict[str, str], size: int | None = None
                          ) -> httpx.Response:
        """TICKET posted with `key`, its JSON padded with spaces to `size` bytes if given."""
        body = json.dumps(TICKET).encode()
        padding = b" " * (size - len(body)) if size is not None else b""
        return await self.client.post("/v1/tickets", content=body + padding,
                                      headers={**key, "content-type": "application/json"})

    async def posts(self, key: dict[str, str], count: int) -> list[int]:
        """The statuses of `count` tickets posted with `key`."""
        return [(await self.post_ticket(key)).status_code for _ in range(count)]


@asynccontextmanager
async def credential_apis(database_url: str, kafka_bootstrap: str, folder: Path,
                          **settings_given: Any) -> AsyncIterator[CredentialApis]:
    """The intake and the credentials API (intake_apis, with the settings given), called
    with the headers of an admin issued in the store."""
    async with intake_apis(database_url, kafka_bootstrap, folder, credentials_api.api,
                           **settings_given) as apis:
        yield CredentialApis(apis.client, await credentials.headers_of(apis.credentials, "admin"))
