"""Authentication and authorisation of every endpoint of the three services, on the real
services (processes) with their real credential store.

ACCESS says who may call what. An endpoint the services publish that is missing from it
fails `test_every_endpoint_has_an_access_rule`, so a new endpoint cannot slip through
unchecked; every entry is then called with no credential, a malformed, an unknown and a
revoked token (401), with each role it does not admit (403) and with each role it admits
(neither 401 nor 403, never 5xx).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Pipeline, demo_pipeline

PUBLIC = "public"
PLATFORM, DEPARTMENT, ADMIN = "platform", "department", "admin"
STAFF = {DEPARTMENT, ADMIN}
ROLES = (PLATFORM, DEPARTMENT, ADMIN)
OWN, OTHER = "public_sector", "business_desk"  # the department tokens' departments

# (service, method, path) -> the roles admitted ("department": its own department only)
ACCESS: dict[tuple[str, str, str], set[str]] = {
    ("router", "POST", "/v1/tickets"): {PLATFORM},
    ("router", "GET", "/v1/tickets/{ticket_id}"): STAFF,
    ("router", "POST", "/v1/tickets/{ticket_id}/events"): STAFF,
    ("router", "POST", "/v1/tickets/{ticket_id}/transfer"): STAFF,
    ("router", "POST", "/v1/tickets/{ticket_id}/priority"): STAFF,
    # The platform that posted the ticket (the routed ticket is the tests' platform's).
    ("router", "POST", "/v1/tickets/{ticket_id}/customer-replies"): {PLATFORM},
    ("router", "GET", "/v1/routing-table"): {ADMIN},
    ("router", "PUT", "/v1/routing-table"): {ADMIN},
    # The history of the routing table and the segment rules (configuration versions).
    **{(service, method, f"{prefix}{path}"): {ADMIN}
       for service, prefix in (("router", "/v1/routing-table"),
                               ("segmenter", "/v1/segment-rules"))
       for method, path in (("GET", "/versions"), ("GET", "/versions/{version_id}"),
                            ("GET", "/diff"), ("POST", "/versions/{version_id}/rollback"),
                            ("POST", "/dry-run"))},
    ("router", "POST", "/v1/simulations"): {ADMIN},
    ("router", "GET", "/v1/dead-letters"): {ADMIN},
    ("router", "POST", "/v1/dead-letters/replay"): {ADMIN},
    ("router", "POST", "/v1/credentials"): {ADMIN},
    ("router", "GET", "/v1/credentials"): {ADMIN},
    ("router", "DELETE", "/v1/credentials/{credential_id}"): {ADMIN},
    ("router", "GET", "/v1/credentials/me"): set(ROLES),
    # Callbacks to the platforms: their endpoints and dead letters, for admins.
    **{("router", method, f"/v1/webhooks{path}"): {ADMIN} for method, path in (
        ("POST", "/endpoints"), ("GET", "/endpoints"), ("GET", "/endpoints/{platform}"),
        ("PATCH", "/endpoints/{platform}"), ("DELETE", "/endpoints/{platform}"),
        ("POST", "/endpoints/{platform}/secret"), ("GET", "/dead-letters"),
        ("POST", "/dead-letters/replay"), ("POST", "/dead-letters/{delivery_id}/replay"))},
    ("segmenter", "GET", "/v1/customers/{customer_id}/segment"): {ADMIN},
    ("segmenter", "PUT", "/v1/customers/{customer_id}"): {ADMIN},
    ("segmenter", "GET", "/v1/customers/{customer_id}"): {ADMIN},
    ("segmenter", "DELETE", "/v1/customers/{customer_id}"): {ADMIN},
    ("segmenter", "POST", "/v1/customers/{customer_id}/purchases"): {ADMIN},
    ("segmenter", "GET", "/v1/tiers"): {ADMIN},
    ("segmenter", "POST", "/v1/tiers/recompute"): {ADMIN},
    ("segmenter", "POST", "/v1/customers/import"): {ADMIN},
    ("segmenter", "POST", "/v1/purchases/import"): {ADMIN},
    ("segmenter", "GET", "/v1/segment-rules"): {ADMIN},
    ("segmenter", "PUT", "/v1/segment-rules"): {ADMIN},
    ("segmenter", "POST", "/v1/segment-rules/analysis"): {ADMIN},
    ("metrics", "GET", "/v1/departments/{department}/stats"): STAFF,
    ("metrics", "GET", "/v1/departments"): {ADMIN},
    ("metrics", "GET", "/v1/segments/stats"): {ADMIN},
    ("metrics", "GET", "/v1/parity/stats"): {ADMIN},
    # Health and the Prometheus scrape stay open (an internal network's business).
    **{(service, "GET", path): {PUBLIC} for service in ("router", "segmenter", "metrics")
       for path in ("/healthz", "/readyz", "/metrics")},
}


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Pipeline]:
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("auth"), customers=100,
                       extra_env={"AUTH_CACHE_SECONDS": "1",
                                  "INTAKE_RATE_LIMIT": "1000/second"}) as running:
        yield running


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
async def revoked_token(secured: Pipeline) -> str:
    async with httpx.AsyncClient(base_url=secured.url("router"), timeout=10,
                                 headers=secured.headers(ADMIN)) as admin:
        issued = (await admin.post("/v1/credentials", json={"role": "admin"})).json()
        assert (await admin.delete(f"/v1/credentials/{issued['credential_id']}")
                ).status_code == 200
    await asyncio.sleep(1.5)  # past AUTH_CACHE_SECONDS
    token: str = issued["token"]
    return token


def role_headers(pipeline: Pipeline, role: str, department: str = OWN) -> dict[str, str]:
    return pipeline.headers(role, department if role == DEPARTMENT else "tests")


def concrete(path: str, ticket_id: str) -> str:
    return path.format(ticket_id=ticket_id, customer_id="auth-probe-nobody",
                       department=OWN, credential_id="000000000000", version_id=1,
                       platform="auth-probe-nobody", delivery_id="msg_auth-probe")


async def call(pipeline: Pipeline, service: str, method: str, path: str, ticket_id: str,
               headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=pipeline.url(service), timeout=30) as client:
        # No body: admitted calls then fail validation (422) rather than change anything.
        return await client.request(method, concrete(path, ticket_id), headers=headers)


ENTRIES = sorted(ACCESS)
GUARDED = [entry for entry in ENTRIES if PUBLIC not in ACCESS[entry]]
# About the caller's own credential, not about a department's tickets or stats.
ABOUT_THE_CALLER = {("router", "GET", "/v1/credentials/me")}


def entry_id(entry: tuple[str, str, str]) -> str:
    return " ".join(entry)


async def test_every_endpoint_has_an_access_rule(secured: Pipeline) -> None:
    published: set[tuple[str, str, str]] = set()
    async with httpx.AsyncClient(timeout=10) as client:
        for service in ("router", "segmenter", "metrics"):
            spec: dict[str, Any] = (await client.get(
                f"{secured.url(service)}/openapi.json")).json()
            published |= {(service, method.upper(), path)
                          for path, operations in spec["paths"].items()
                          for method in operations}
    assert published == set(ACCESS)


class TestUnauthenticated:
    @pytest.mark.parametrize("entry", GUARDED, ids=entry_id)
    async def test_no_credential_is_401(self, secured: Pipeline, routed_ticket: str,
                                        entry: tuple[str, str, str]) -> None:
        answer = await call(secured, *entry, routed_ticket, {})
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.json()["error"] == "unauthenticated"

    @pytest.mark.parametrize("entry", GUARDED, ids=entry_id)
    @pytest.mark.parametrize("token", ["not-a-token", "rt_0123456789ab_wrong-secret",
                                       "rt__", "Basic abc"])
    async def test_a_wrong_token_is_401(self, secured: Pipeline, routed_ticket: str,
                                        entry: tuple[str, str, str], token: str) -> None:
        answer = await call(secured, *entry, routed_ticket,
                            {"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text

    @pytest.mark.parametrize("entry", GUARDED, ids=entry_id)
    async def test_a_revoked_token_is_401(self, secured: Pipeline, routed_ticket: str,
                                          revoked_token: str,
                                          entry: tuple[str, str, str]) -> None:
        answer = await call(secured, *entry, routed_ticket,
                            {"Authorization": f"Bearer {revoked_token}"})
        assert answer.status_code == 401, answer.text

    @pytest.mark.parametrize("entry", [e for e in ENTRIES if e not in GUARDED], ids=entry_id)
    async def test_health_and_metrics_are_open(self, secured: Pipeline, routed_ticket: str,
                                               entry: tuple[str, str, str]) -> None:
        assert (await call(secured, *entry, routed_ticket, {})).status_code == 200


class TestRoles:
    @pytest.mark.parametrize(("entry", "role"), [
        (entry, role) for entry in GUARDED for role in ROLES if role not in ACCESS[entry]],
        ids=lambda value: entry_id(value) if isinstance(value, tuple) else value)
    async def test_a_role_not_admitted_is_403(self, secured: Pipeline, routed_ticket: str,
                                              entry: tuple[str, str, str], role: str) -> None:
        answer = await call(secured, *entry, routed_ticket, role_headers(secured, role))
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "forbidden"

    @pytest.mark.parametrize(("entry", "role"), [
        (entry, role) for entry in GUARDED for role in ROLES if role in ACCESS[entry]],
        ids=lambda value: entry_id(value) if isinstance(value, tuple) else value)
    async def test_an_admitted_role_gets_through(self, secured: Pipeline, routed_ticket: str,
                                                 entry: tuple[str, str, str],
                                                 role: str) -> None:
        answer = await call(secured, *entry, routed_ticket, role_headers(secured, role))
        assert answer.status_code not in (401, 403), answer.text
        assert answer.status_code < 500, answer.text

    @pytest.mark.parametrize("entry", [e for e in GUARDED if DEPARTMENT in ACCESS[e]
                                       and e not in ABOUT_THE_CALLER], ids=entry_id)
    async def test_another_department_is_403(self, secured: Pipeline, routed_ticket: str,
                                             entry: tuple[str, str, str]) -> None:
        """The endpoints departments may use, about OWN's ticket or stats, with OTHER's
        token (bodies valid, so that only the scope can refuse them)."""
        service, method, path = entry
        body = {"POST /v1/tickets/{ticket_id}/events": {"type": "picked_up"},
                "POST /v1/tickets/{ticket_id}/transfer": {"to_department": "customer_care",
                                                          "reason": "not ours"},
                "POST /v1/tickets/{ticket_id}/priority": {"priority": 1,
                                                          "reason": "outage"},
                }.get(f"{method} {path}")
        async with httpx.AsyncClient(base_url=secured.url(service), timeout=10) as client:
            answer = await client.request(method, concrete(path, routed_ticket), json=body,
                                          headers=role_headers(secured, DEPARTMENT, OTHER))
        assert answer.status_code == 403, answer.text


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
        ({"role": "department", "subject": "Public Sector!"}, "body.subject"),
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


class TestDepartmentScope:
    async def test_a_department_reads_and_reports_on_its_own_tickets(
            self, secured: Pipeline, routed_ticket: str) -> None:
        async with httpx.AsyncClient(base_url=secured.url("router"), timeout=10,
                                     headers=secured.headers(DEPARTMENT, OWN)) as own:
            assert (await own.get(f"/v1/tickets/{routed_ticket}")).status_code == 200
            report = await own.post(f"/v1/tickets/{routed_ticket}/events",
                                    json={"type": "picked_up"})
            assert report.status_code == 202, report.text
            other_name = await own.post(f"/v1/tickets/{routed_ticket}/events",
                                        json={"type": "picked_up", "department": OTHER})
            assert other_name.status_code == 403
            backdated = await own.post(f"/v1/tickets/{routed_ticket}/events", json={
                "type": "responded", "occurred_at": "2000-01-01T00:00:00Z"})
            assert backdated.status_code == 422  # would dodge the escalation
            assert backdated.json()["fields"][0]["field"] == "body.occurred_at"
        async with httpx.AsyncClient(base_url=secured.url("metrics"), timeout=10,
                                     headers=secured.headers(DEPARTMENT, OWN)) as stats:
            assert (await stats.get(f"/v1/departments/{OWN}/stats")).status_code == 200
            assert (await stats.get(f"/v1/departments/{OTHER}/stats")).status_code == 403


async def test_tokens_never_reach_the_logs(secured: Pipeline, routed_ticket: str,
                                           revoked_token: str) -> None:
    await call(secured, "router", "GET", "/v1/tickets/{ticket_id}", routed_ticket,
               {"Authorization": f"Bearer {revoked_token}"})
    logs = secured.logs()
    assert "ticket accepted" in logs  # the logs are there to be searched
    for token in [revoked_token, *secured.issued_tokens]:
        assert token.split("_", 2)[2] not in logs
