"""Credentials: platform keys rotated and revoked without a restart, shown once and
stored hashed, rate-limited per key, idempotency keys per platform, bad requests named by
field; any credential learns its role and subject."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Pipeline
from tests.e2e.auth.access import ADMIN, DEPARTMENT, OWN, PLATFORM, role_headers


@pytest.fixture
async def admin(secured: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secured.url("router"), timeout=10,
                                 headers=secured.headers(ADMIN)) as client:
        yield client


async def post_ticket(pipeline: Pipeline, token: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=pipeline.url("router"), timeout=10) as client:
        return await client.post("/v1/tickets", headers={
            "Authorization": f"Bearer {token}", **headers}, json={
            "customer_id": "ind-new-1", "subject": "s", "body": "b", "channel": "web"})


async def away_from_a_windows_end(window_seconds: int, *, margin: float = 15.0) -> None:
    """Wait, if need be, for the next of the rate limiter's windows (they start at
    multiples of their length since the epoch): a key that used its budget in one
    window may send one more as the next starts (README, "Credentials"), so a test
    counting to its limit must not start within `margin` seconds of a window's end."""
    into = time.time() % window_seconds
    if into > window_seconds - margin:
        await asyncio.sleep(window_seconds - into + 0.1)


class TestPlatformKeys:
    async def test_keys_rotate_and_revoke_without_restart(
            self, secured: Pipeline, admin: httpx.AsyncClient) -> None:
        request = {"role": "platform", "subject": "rotating-desk", "label": "old"}
        old = (await admin.post("/v1/credentials", json=request)).json()
        new = (await admin.post("/v1/credentials", json={**request, "label": "new"})).json()
        assert (await post_ticket(secured, old["token"])).status_code == 202
        assert (await post_ticket(secured, new["token"])).status_code == 202

        assert (await admin.delete(f"/v1/credentials/{old['credential_id']}")
                ).json()["revoked_at"] is not None
        await asyncio.sleep(1.5)  # AUTH_CACHE_SECONDS is 1 here
        assert (await post_ticket(secured, old["token"])).status_code == 401
        assert (await post_ticket(secured, new["token"])).status_code == 202

    async def test_tokens_are_shown_once_and_stored_hashed(
            self, secured: Pipeline, admin: httpx.AsyncClient) -> None:
        issued = (await admin.post("/v1/credentials", json={
            "role": "platform", "subject": "hashed-desk"})).json()
        listed = (await admin.get("/v1/credentials", params={"subject": "hashed-desk"})).json()
        assert [c["credential_id"] for c in listed] == [issued["credential_id"]]
        assert "token" not in listed[0] and "secret_hash" not in listed[0]
        secret = issued["token"].split("_", 2)[2]
        database = secured.database_url.replace("+aiosqlite", "")
        with create_engine(database).connect() as connection:
            stored = connection.execute(text("SELECT * FROM credentials")).all()
        assert stored and not any(secret in str(row) for row in stored)

    async def test_a_key_over_its_rate_limit_gets_429_with_retry_after(
            self, secured: Pipeline, admin: httpx.AsyncClient) -> None:
        limited = (await admin.post("/v1/credentials", json={
            "role": "platform", "subject": "busy-desk", "rate_limit": "3/minute"})).json()
        other = (await admin.post("/v1/credentials", json={
            "role": "platform", "subject": "busy-desk"})).json()
        await away_from_a_windows_end(60)
        answers = [await post_ticket(secured, limited["token"]) for _ in range(4)]
        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
        assert answers[-1].json()["error"] == "rate_limited"
        assert (await post_ticket(secured, other["token"])).status_code == 202  # per key

    async def test_idempotency_keys_are_each_platforms_own(
            self, secured: Pipeline, admin: httpx.AsyncClient) -> None:
        tokens = [(await admin.post("/v1/credentials", json={
            "role": "platform", "subject": name})).json()["token"]
            for name in ("desk-one", "desk-two")]
        answers = [await post_ticket(secured, token, **{"Idempotency-Key": "order-17"})
                   for token in tokens]
        assert [a.status_code for a in answers] == [202, 202]
        assert answers[0].json()["ticket_id"] != answers[1].json()["ticket_id"]

    @pytest.mark.parametrize(("request_body", "field"), [
        ({"role": "platform"}, "body.subject"),
        ({"role": "department", "subject": None}, "body.subject"),
        ({"role": "admin", "subject": "someone"}, "body.subject"),
        ({"role": "owner"}, "body.role"),
        ({"role": "platform", "subject": "desk", "rate_limit": "fast"}, "body.rate_limit"),
        # Below the largest body a request may send: a schema pattern cannot say it.
        ({"role": "platform", "subject": "desk", "byte_rate_limit": "512KiB/second"},
         "body.byte_rate_limit"),
        ({"role": "department", "subject": "Public Sector!"}, "body.subject"),
        # A name, but no department of the routing table in force.
        ({"role": "department", "subject": "nowhere"}, "body.subject"),
    ])
    async def test_a_bad_credential_request_names_the_field(
            self, admin: httpx.AsyncClient, request_body: dict[str, str], field: str) -> None:
        answer = await admin.post("/v1/credentials", json=request_body)
        assert answer.status_code == 422
        assert [f["field"] for f in answer.json()["fields"]] == [field]


class TestWhoseCredential:
    @pytest.mark.parametrize(("role", "subject"), [
        (PLATFORM, "tests"), (DEPARTMENT, OWN), (ADMIN, None)])
    async def test_any_credential_learns_its_role_and_subject(
            self, secured: Pipeline, role: str, subject: str | None) -> None:
        async with httpx.AsyncClient(base_url=secured.url("router"), timeout=10) as client:
            answer = await client.get("/v1/credentials/me",
                                      headers=role_headers(secured, role))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"role": role, "subject": subject}


async def test_a_department_credential_names_a_department_of_the_table_in_force(
        admin: httpx.AsyncClient) -> None:
    refused = await admin.post("/v1/credentials", json={"role": "department",
                                                        "subject": "nowhere"})
    [problem] = refused.json()["fields"]
    assert problem["problem"].startswith(
        "no department 'nowhere' in the routing table in force; its departments: ")
    assert OWN in problem["problem"]
    issued = await admin.post("/v1/credentials", json={"role": "department", "subject": OWN})
    assert issued.status_code == 201, issued.text
