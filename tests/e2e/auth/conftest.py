"""The real services (processes) with their real credential store, started once for
the folder's tests (package scope); a ticket routed to OWN and a revoked token.

The folder's files run in name order on these services, as the tests of one module did
(the token test last, over every token issued)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Pipeline, demo_pipeline
from tests.e2e.auth.access import ADMIN, OWN


@pytest.fixture(scope="package")
def secured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Pipeline]:
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("auth"), customers=100,
                       extra_env={"AUTH_CACHE_SECONDS": "1",
                                  "INTAKE_RATE_LIMIT": "1000/second"}) as running:
        yield running


@pytest.fixture(scope="package")
async def routed_ticket(secured: Pipeline) -> str:
    """A ticket routed to OWN, for the department-scoped endpoints."""
    async with httpx.AsyncClient(base_url=secured.url("router"), timeout=10) as client:
        answer = await client.post("/v1/tickets", headers=secured.headers(), json={
            "customer_id": "gov-ministry-1", "subject": "s", "body": "b", "channel": "web"})
        assert answer.status_code == 202, answer.text
        ticket_id: str = answer.json()["ticket_id"]
        for _ in range(100):
            state = await client.get(f"/v1/tickets/{ticket_id}",
                                     headers=secured.headers(ADMIN))
            if state.status_code == 200:
                assert state.json()["department"] == OWN
                return ticket_id
            await asyncio.sleep(0.2)
    raise AssertionError("the ticket was not routed within 20 s")


@pytest.fixture(scope="package")
async def revoked_token(secured: Pipeline) -> str:
    async with httpx.AsyncClient(base_url=secured.url("router"), timeout=10,
                                 headers=secured.headers(ADMIN)) as admin:
        issued = (await admin.post("/v1/credentials", json={"role": "admin"})).json()
        assert (await admin.delete(f"/v1/credentials/{issued['credential_id']}")
                ).status_code == 200
    await asyncio.sleep(1.5)  # past AUTH_CACHE_SECONDS
    token: str = issued["token"]
    return token
