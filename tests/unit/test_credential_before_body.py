"""A request with a body is refused 401 before its body is read when its token is
missing or names no live credential (auth.CredentialBeforeBody): FastAPI reads and
parses a route's body before its dependencies, so a megabyte of JSON cost the event loop
some 60 ms for anyone, token or not. A token that names a credential is
authenticated once a request, the route's own dependency taking the principal found.
The services' shared HTTP edge (http.install) with a credential store standing in for
the SQL one, called as ASGI: no sockets. Each refusal is counted by its outcome and the
role of the credential sent, never the credential."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import REGISTRY

from services.core import access, auth, http, rate_limits, refusals, service_context
from services.router.service import verdicts

PLATFORM = access.Principal("c-1", access.Role.PLATFORM, "helpdesk")
TOKEN = "rt_live"


class Credentials:
    """Knows one token; counts its reads; fails as a store down would when told to."""

    def __init__(self) -> None:
        self.reads = 0
        self.down = False
        self.principal = PLATFORM

    async def authenticate(self, token: str) -> access.Principal | None:
        self.reads += 1
        if self.down:
            raise ConnectionRefusedError("the store is down")
        return self.principal if token == TOKEN else None


async def admins_note(principal: auth.Admin) -> str:
    """A dependency that needs an admin's credential itself."""
    return principal.credential_id


class Service:
    def __init__(self) -> None:
        self.app = FastAPI()
        self.credentials = Credentials()
        self.bodies_read = 0
        service_context.of(self.app).credentials = self.credentials  # type: ignore[assignment]

        @self.app.post("/v1/tickets")
        async def post(principal: auth.Authenticated, body: dict[str, Any]) -> dict[str, str]:
            return {"by": principal.credential_id}

        @self.app.get("/v1/tickets")
        async def get(principal: auth.Authenticated) -> dict[str, str]:
            return {"by": principal.credential_id}

        @self.app.get("/v1/admin-only", dependencies=auth.ADMIN_ONLY)
        async def admin_only() -> dict[str, str]:
            return {}

        @self.app.post("/v1/platforms")
        async def platforms_only(principal: auth.Platform, body: dict[str, Any]
                                 ) -> dict[str, str]:
            return {}

        @self.app.get("/v1/departments-only")
        async def departments_only(principal: auth.DepartmentOrAdmin) -> dict[str, str]:
            return {}

        @self.app.post("/v1/rate-limited")
        async def rate_limited(principal: auth.RateLimitedPlatform, body: dict[str, Any]
                               ) -> dict[str, str]:
            return {}

        @self.app.post("/v1/admin-body", dependencies=auth.ADMIN_ONLY)
        async def admin_body(body: dict[str, Any]) -> dict[str, str]:
            return {}

        @self.app.post("/v1/reports")
        async def reports(principal: auth.RateLimitedDepartmentOrAdmin, body: dict[str, Any]
                          ) -> dict[str, str]:
            return {}

        @self.app.post("/v1/things/import", dependencies=auth.ADMIN_ONLY)
        async def streamed(request: Request) -> dict[str, int]:
            return {"length": sum([len(chunk) async for chunk in request.stream()])}

        # A router included in one that admits admins only (as the configurations'
        # version history is in the routing table's): the dependency is its inclusion's.
        inner = APIRouter()

        @inner.post("/v1/included")
        async def included(body: dict[str, Any]) -> dict[str, str]:
            return {}

        outer = APIRouter(dependencies=auth.ADMIN_ONLY)
        outer.include_router(inner)
        self.app.include_router(outer)

        @self.app.post("/v1/through-a-dependency")
        async def through_a_dependency(note: Annotated[str, Depends(admins_note)],
                                       body: dict[str, Any]) -> dict[str, str]:
            return {}

        # Two credentials, each refusing a department's in its own words: the answer is
        # the first's the framework solves, the router's dependencies before the route's
        # parameters, a dependency's own before it.
        @self.app.post("/v1/admins-and-platforms", dependencies=auth.ADMIN_ONLY)
        async def admins_and_platforms(principal: auth.Platform, body: dict[str, Any]
                                       ) -> dict[str, str]:
            return {}

        @self.app.post("/v1/platforms-and-admins")
        async def platforms_and_admins(principal: auth.Platform,
                                       note: Annotated[str, Depends(admins_note)],
                                       body: dict[str, Any]) -> dict[str, str]:
            return {}

        admitting_platforms = APIRouter(dependencies=[Depends(auth.require(
            access.Role.PLATFORM))])

        @admitting_platforms.post("/v1/platforms-then-admins")
        async def platforms_then_admins(note: Annotated[str, Depends(admins_note)],
                                        body: dict[str, Any]) -> dict[str, str]:
            return {}

        self.app.include_router(admitting_platforms)

        # One router included under three sets of dependencies: its route is a route of
        # each inclusion's, answered by that inclusion's dependencies alone.
        shared = APIRouter()

        @shared.post("/shared")
        async def shared_post(body: dict[str, Any]) -> dict[str, str]:
            return {}

        self.app.include_router(shared, prefix="/v1/open")
        self.app.include_router(shared, prefix="/v1/admins", dependencies=auth.ADMIN_ONLY)
        self.app.include_router(shared, prefix="/v1/counted", dependencies=[
            Depends(auth.require(access.Role.PLATFORM, rate_limited=True))])

        http.install(self.app, ready=lambda: True,
                     streamed_uploads={("POST", "/v1/things/import")})

    async def call(self, method: str, *, token: str | None, body: bytes = b"",
                   path: str = "/v1/tickets", chunks: list[bytes] | None = None,
                   unread: bool = False) -> tuple[int, dict[str, Any]]:
        """The app called as ASGI, counting whether it read the request's body: `body`
        with its length, or `chunks` without one (chunked); failing the test if it reads
        any of it where `unread`."""
        headers = [(b"content-type", b"application/json")]
        if chunks is not None:
            headers.append((b"transfer-encoding", b"chunked"))
        elif body:
            headers.append((b"content-length", str(len(body)).encode()))
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "headers": headers,
                 "server": ("test", 80), "client": ("test", 1)}
        sent: list[dict[str, Any]] = []

        parts = list(chunks) if chunks is not None else [body]

        async def receive() -> dict[str, Any]:
            if unread:
                pytest.fail(f"{method} {path}: the body was read")
            self.bodies_read += 1
            if not parts:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        [start] = [m for m in sent if m["type"] == "http.response.start"]
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], orjson.loads(content)


@pytest.fixture
def service() -> Service:
    return Service()


LARGE = orjson.dumps({f"f{n}": n for n in range(50_000)})


@pytest.mark.parametrize(("token", "detail"), [
    (None, "send a token as `Authorization: Bearer <token>`"),
    ("rt_forged", "the token is unknown, revoked or malformed")])
async def test_without_a_live_credential_the_body_is_never_read(
        service: Service, token: str | None, detail: str) -> None:
    status, answer = await service.call("POST", token=token, body=LARGE)
    assert (status, answer) == (401, {"error": "unauthenticated", "detail": detail})
    assert service.bodies_read == 0


async def test_a_live_credential_is_authenticated_once(service: Service) -> None:
    status, answer = await service.call("POST", token=TOKEN, body=b'{"subject": "s"}')
    assert (status, answer) == (200, {"by": "c-1"})
    assert service.credentials.reads == 1 and service.bodies_read >= 1
    status, answer = await service.call("GET", token=TOKEN)
    assert (status, answer) == (200, {"by": "c-1"})
    assert service.credentials.reads == 2  # without a body: by the route's dependency


async def test_a_store_that_cannot_tell_is_503_before_the_body_is_read(
        service: Service) -> None:
    service.credentials.down = True
    status, answer = await service.call("POST", token=TOKEN, body=LARGE)
    assert (status, answer["error"]) == (503, "unavailable")
    assert service.credentials.reads == 1 and service.bodies_read == 0


async def test_a_path_outside_the_api_is_left_to_the_app(service: Service) -> None:
    """No route there takes a credential: a token would not help (405, 404 as before)."""
    assert (await service.call("POST", token=None, body=b"{}", path="/healthz"))[0] == 405
    assert (await service.call("POST", token=None, body=b"{}", path="/nothing"))[0] == 404
    assert service.credentials.reads == 0


async def test_a_request_without_a_body_is_left_to_the_route(service: Service) -> None:
    status, answer = await service.call("GET", token=None)
    assert (status, answer["error"]) == (401, "unauthenticated")
    assert service.credentials.reads == 0


@pytest.mark.parametrize(("path", "detail"), [
    ("/v1/admin-only", "this needs a credential of role admin; yours is a platform credential"),
    ("/v1/departments-only",
     "this needs a credential of role department or admin; yours is a platform credential")])
async def test_a_credential_of_another_role_is_refused_naming_both(
        service: Service, path: str, detail: str) -> None:
    status, answer = await service.call("GET", token=TOKEN, path=path)
    assert (status, answer) == (403, {"error": "forbidden", "detail": detail})


async def test_an_admin_where_it_is_not_admitted_reads_as_english(service: Service) -> None:
    service.credentials.principal = access.Principal("c-2", access.Role.ADMIN, None)
    status, answer = await service.call("POST", token=TOKEN, body=b"{}", path="/v1/platforms")
    assert (status, answer["detail"]) == (
        403, "this needs a credential of role platform; yours is an admin credential")


DEPARTMENT = access.Principal("c-3", access.Role.DEPARTMENT, "billing")
ADMIN = access.Principal("c-2", access.Role.ADMIN, None)


class TestARoleNotAdmittedIsRefusedBeforeTheBody:
    """FastAPI reads and parses a route's body before it solves its dependencies: a
    key of a role the route does not admit had its megabyte of JSON parsed before its
    403, on no budget of bytes. Refused before any of it is read (auth.refuse_role),
    with the dependency's own answer."""

    @pytest.mark.parametrize(("principal", "path", "detail"), [
        (PLATFORM, "/v1/admin-body",
         "this needs a credential of role admin; yours is a platform credential"),
        (DEPARTMENT, "/v1/platforms",
         "this needs a credential of role platform; yours is a department credential"),
        (PLATFORM, "/v1/reports",
         "this needs a credential of role department or admin; yours is a platform"
         " credential"),
        (PLATFORM, "/v1/included",
         "this needs a credential of role admin; yours is a platform credential"),
        (PLATFORM, "/v1/through-a-dependency",
         "this needs a credential of role admin; yours is a platform credential"),
        (PLATFORM, "/v1/admins/shared",
         "this needs a credential of role admin; yours is a platform credential"),
        (DEPARTMENT, "/v1/admins-and-platforms",
         "this needs a credential of role admin; yours is a department credential"),
        (DEPARTMENT, "/v1/platforms-and-admins",
         "this needs a credential of role platform; yours is a department credential"),
        (DEPARTMENT, "/v1/platforms-then-admins",
         "this needs a credential of role platform; yours is a department credential")])
    @pytest.mark.parametrize("chunked", [False, True])
    async def test_the_body_is_never_read(self, service: Service, principal: access.Principal,
                                          path: str, detail: str, chunked: bool) -> None:
        service.credentials.principal = principal
        before = counted_refusals("forbidden", principal.role.value)
        if chunked:
            answer = await service.call("POST", token=TOKEN, chunks=[LARGE[:10], LARGE[10:]],
                                        path=path, unread=True)
        else:
            answer = await service.call("POST", token=TOKEN, body=LARGE, path=path,
                                        unread=True)
        assert answer == (403, {"error": "forbidden", "detail": detail})
        assert counted_refusals("forbidden", principal.role.value) == before + 1

    @pytest.mark.parametrize(("principal", "path"), [
        (PLATFORM, "/v1/admin-body"), (DEPARTMENT, "/v1/platforms"),
        (PLATFORM, "/v1/reports"), (ADMIN, "/v1/rate-limited"), (PLATFORM, "/v1/included"),
        (PLATFORM, "/v1/through-a-dependency"),
        # Two credentials that refuse it: the first the framework solves answers.
        (DEPARTMENT, "/v1/admins-and-platforms"), (DEPARTMENT, "/v1/platforms-and-admins"),
        (DEPARTMENT, "/v1/platforms-then-admins")])
    async def test_the_answer_is_the_dependencys(self, service: Service,
                                                 principal: access.Principal,
                                                 path: str) -> None:
        """Without a body nothing is checked before the route: its dependency answers.
        With one, the same answer, counted the same, before the body is read."""
        service.credentials.principal = principal
        role = principal.role.value
        before = counted_refusals("forbidden", role)
        by_the_dependency = await service.call("POST", token=TOKEN, path=path)
        assert counted_refusals("forbidden", role) == before + 1

        before_the_body = await service.call("POST", token=TOKEN, body=b"{}", path=path,
                                             unread=True)

        assert before_the_body == by_the_dependency
        assert by_the_dependency[0] == 403
        assert counted_refusals("forbidden", role) == before + 2

    async def test_a_refused_body_spends_none_of_the_keys_bytes(self,
                                                               service: Service) -> None:
        """The reports' route counts its keys' bytes, but a platform's are not its to
        count: its budget is left whole for the routes it may call."""
        service_context.of(service.app).rate_limits = rate_limits.RateLimits("1000/minute",
                                                                      "1MiB/hour")
        for _ in range(2):
            assert (await service.call("POST", token=TOKEN, body=PADDED,
                                       path="/v1/reports"))[0] == 403
        status, _answer = await service.call("POST", token=TOKEN, body=PADDED,
                                             path="/v1/rate-limited")
        assert status == 200  # 1.2 MB spent on the reports would leave no room for it

    async def test_a_router_included_twice_is_answered_by_each_inclusion(
            self, service: Service) -> None:
        for path, status in [("/v1/open/shared", 200), ("/v1/admins/shared", 403),
                             ("/v1/open/shared", 200)]:
            answer = await service.call("POST", token=TOKEN, body=b"{}", path=path,
                                        unread=status == 403)
            assert answer[0] == status, path

    async def test_an_admitted_role_reads_on(self, service: Service) -> None:
        service.credentials.principal = DEPARTMENT
        assert (await service.call("POST", token=TOKEN, body=b"{}",
                                   path="/v1/reports"))[0] == 200
        service.credentials.principal = ADMIN
        assert (await service.call("POST", token=TOKEN, body=b"{}",
                                   path="/v1/admin-body"))[0] == 200

    async def test_a_streamed_upload_refuses_the_role_before_streaming(
            self, service: Service) -> None:
        """Exempt from the size limit, not from the role's check."""
        answer = await service.call("POST", token=TOKEN, chunks=[LARGE[:10], LARGE[10:]],
                                    path="/v1/things/import", unread=True)
        assert answer == (403, {"error": "forbidden", "detail": "this needs a credential of"
                                " role admin; yours is a platform credential"})
        service.credentials.principal = ADMIN
        answer = await service.call("POST", token=TOKEN, body=LARGE * 2,
                                    path="/v1/things/import")
        assert answer == (200, {"length": 2 * len(LARGE)})  # past the limit: exempt


def counted_refusals(outcome: str, role: str) -> float:
    return REGISTRY.get_sample_value("routing_http_auth_refused_total",
                                     {"outcome": outcome, "role": role}) or 0.0


class TestRefusalsCounted:
    @pytest.mark.parametrize("body", [b"", b"{}"])
    async def test_a_request_without_a_credential_counts_with_no_role(
            self, service: Service, body: bytes) -> None:
        before = counted_refusals("unauthenticated", "none")
        assert (await service.call("POST", token="rt_forged", body=body))[0] == 401
        assert counted_refusals("unauthenticated", "none") == before + 1

    async def test_a_refused_credential_counts_by_its_role(self, service: Service) -> None:
        before = counted_refusals("forbidden", "platform")
        assert (await service.call("GET", token=TOKEN, path="/v1/admin-only"))[0] == 403
        assert counted_refusals("forbidden", "platform") == before + 1

    async def test_a_platform_over_its_rate_counts_as_a_platform_rate_limited(
            self, service: Service) -> None:
        service_context.of(service.app).rate_limits = rate_limits.RateLimits("1/minute")
        before = counted_refusals("rate_limited", "platform")
        answers = [await service.call("POST", token=TOKEN, body=b"{}", path="/v1/rate-limited")
                   for _ in range(2)]
        assert [status for status, _answer in answers] == [200, 429]
        assert counted_refusals("rate_limited", "platform") == before + 1


class TestBodyBytesWithinTheKeysBudget:
    """A credential's bytes of body are spent before the body is read, on the routes
    that count its requests: from the length it declares, or chunk by chunk as they
    come; over its budget, 429 `byte_rate_limited` with Retry-After, counted as such."""

    @pytest.fixture
    def budgeted(self, service: Service) -> Service:
        service_context.of(service.app).rate_limits = rate_limits.RateLimits("1000/minute",
                                                                      "1MiB/hour")
        return service

    async def test_a_declared_length_over_the_budget_is_refused_unread(
            self, budgeted: Service) -> None:
        before = counted_refusals("byte_rate_limited", "platform")
        status, _answer = await budgeted.call("POST", token=TOKEN, body=PADDED,
                                              path="/v1/rate-limited")
        assert (status, budgeted.bodies_read) == (200, 1)

        status, answer = await budgeted.call("POST", token=TOKEN, body=PADDED,
                                             path="/v1/rate-limited")

        assert (status, answer["error"]) == (429, "byte_rate_limited")
        assert answer["detail"].startswith(f"this request's {len(PADDED)} bytes of body are"
                                           " over this credential's budget of 1MiB/hour")
        assert budgeted.bodies_read == 1  # the second body never read
        assert counted_refusals("byte_rate_limited", "platform") == before + 1

    async def test_a_chunked_body_is_refused_at_the_chunk_over_the_budget(
            self, budgeted: Service) -> None:
        """Not the framework's answer to a body cut short: the 429, in its place."""
        status, _answer = await budgeted.call("POST", token=TOKEN, body=PADDED,
                                              path="/v1/rate-limited")
        assert status == 200
        half = len(PADDED) // 2
        status, answer = await budgeted.call(
            "POST", token=TOKEN, chunks=[PADDED[:half], PADDED[half:]],
            path="/v1/rate-limited")
        # 600,000 and 300,000 fit in 1 MiB; the next 300,000 do not.
        assert (status, answer["error"]) == (429, "byte_rate_limited")

    async def test_a_chunked_bodys_bytes_are_counted_as_they_come(
            self, budgeted: Service) -> None:
        half = len(PADDED) // 2
        status, _answer = await budgeted.call(
            "POST", token=TOKEN, chunks=[PADDED[:half], PADDED[half:]],
            path="/v1/rate-limited")
        assert status == 200  # read whole
        status, answer = await budgeted.call("POST", token=TOKEN, body=PADDED,
                                             path="/v1/rate-limited")
        assert (status, answer["error"]) == (429, "byte_rate_limited")

    async def test_an_inclusion_that_counts_requests_counts_bytes(
            self, budgeted: Service) -> None:
        """The same router's route, included where its dependencies count requests and
        where they do not: bytes are spent on the first alone."""
        for path, status in [("/v1/open/shared", 200), ("/v1/counted/shared", 200),
                             ("/v1/open/shared", 200), ("/v1/counted/shared", 429)]:
            assert (await budgeted.call("POST", token=TOKEN, body=PADDED,
                                        path=path))[0] == status, path

    async def test_routes_that_count_no_requests_count_no_bytes(
            self, budgeted: Service) -> None:
        for _ in range(3):
            status, _answer = await budgeted.call("POST", token=TOKEN, body=PADDED)
            assert status == 200


# A JSON object of 600,000 bytes.
PADDED = b'{"padding": "' + b"x" * (600_000 - 15) + b'"}'


@pytest.mark.parametrize("outcome", ["forbidden", "escalated_away"])
def test_a_departments_403s_are_at_0_from_the_start(outcome: str) -> None:
    """Each 403 a department's credential can get (escalated_away: the router's
    verdicts.escalated_away and escalated_away_before) is a series at 0 from the
    process's start, so that its first refusal is an increase to Prometheus (the
    dashboard's rate); a fresh interpreter, as this one's tests may have counted some
    already."""
    assert verdicts.escalated_away([], asked_at=datetime(2026, 12, 1, tzinfo=UTC),
                                   department="key_accounts").error == "escalated_away"
    assert verdicts.escalated_away_before(
        [], escalated_at=datetime(2026, 12, 1, tzinfo=UTC),
        department="key_accounts").error == "escalated_away"
    assert shown([(outcome, "department")]) == [0.0]


def test_a_refusal_over_the_byte_budget_is_at_0_from_the_start() -> None:
    """As every other 429 (the dashboard's rate, the alert on platforms refused), for
    every role."""
    roles = [role.value for role in access.Role]
    assert shown([(refusals.BYTE_RATE_LIMITED, role) for role in roles]) == [0.0] * len(roles)


def shown(series: list[tuple[str, str]]) -> list[float | None]:
    """The refusals counted of each (outcome, role) in a fresh interpreter, as this
    one's tests may have counted some already."""
    printed = subprocess.run(
        [sys.executable, "-c", "from prometheus_client import REGISTRY;"
         " import services.core.refusals;"
         " print([REGISTRY.get_sample_value('routing_http_auth_refused_total',"
         f" {{'outcome': outcome, 'role': role}}) for outcome, role in {series!r}])"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]).stdout
    return [None if value == "None" else float(value)
            for value in printed.strip().strip("[]").split(", ")]
