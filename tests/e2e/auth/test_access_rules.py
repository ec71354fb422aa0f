"""Authentication and authorisation of every endpoint of the three services, on the real
services (processes) with their real credential store.

ACCESS says who may call what. An endpoint the services publish that is missing from it
fails `test_every_endpoint_has_an_access_rule`, so a new endpoint cannot slip through
unchecked; every entry is then called with no credential, a malformed, an unknown and a
revoked token (401), with each role it does not admit (403) and with each role it admits
(neither 401 nor 403, never 5xx).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Pipeline
from tests.e2e.auth.access import (
    ABOUT_THE_CALLER,
    ACCESS,
    DEPARTMENT,
    ENTRIES,
    GUARDED,
    OTHER,
    QUERIES,
    ROLES,
    call,
    concrete,
    entry_id,
    role_headers,
)


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
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")

    @pytest.mark.parametrize("entry", GUARDED, ids=entry_id)
    async def test_a_revoked_token_is_401(self, secured: Pipeline, routed_ticket: str,
                                          revoked_token: str,
                                          entry: tuple[str, str, str]) -> None:
        answer = await call(secured, *entry, routed_ticket,
                            {"Authorization": f"Bearer {revoked_token}"})
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'

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
                                          headers=role_headers(secured, DEPARTMENT, OTHER),
                                          params=QUERIES.get(entry))
        assert answer.status_code == 403, answer.text
