"""Authentication and authorisation at the HTTP edge: who is calling (401 when we cannot
tell), whether their role allows the action (403 when not), and per-credential rate
limits, of requests and of their bodies' bytes (429 with Retry-After). The rules
themselves are in `services.core.access`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import Counter

from services.core import access, http_answers, service_context
from services.core.credentials import Credentials

# Labelled by the role of the credential sent, never by the credential or its holder: a
# few series, and a platform flooded with 429s told from a department's tool.
NO_ROLE = "none"  # no valid credential sent
AUTH_REFUSED = Counter("routing_http_auth_refused", "Requests refused: unauthenticated (401),"
                       " forbidden or escalated away (403), over their rate limit or their"
                       " budget of body bytes or asking for a second report at once (429),"
                       " by the role of the credential sent (none: no valid one)",
                       ["outcome", "role"])
# A body's bytes over its credential's budget (RateLimits.spend_bytes): its own outcome,
# told from a flood of requests, since what to do about each differs.
BYTE_RATE_LIMITED = "byte_rate_limited"
# Each series at 0 from the start, so that its first refusal is an increase to Prometheus.
AUTH_REFUSED.labels("unauthenticated", NO_ROLE)
for _outcome in ("forbidden", "rate_limited", BYTE_RATE_LIMITED, "report_in_progress"):
    for _role in access.Role:
        AUTH_REFUSED.labels(_outcome, _role.value)
# A department's ticket escalated out of it, by its own request or before it (the
# router's verdicts.escalated_away, escalated_away_before): a department credential's alone.
AUTH_REFUSED.labels("escalated_away", access.Role.DEPARTMENT.value)

# The scheme every credential dependency below shows in OpenAPI.
BEARER_SCHEME = "HTTPBearer"
BEARER_DESCRIPTION = ("A token issued by `routing credentials issue` or `POST"
                      " /v1/credentials`: `Authorization: Bearer rt_...`")


class Refused(Exception):
    def __init__(self, status: int, error: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return _refusal(exc, request.scope.get("state", {}).get(_PRINCIPAL))


def _refusal(refused: Refused, principal: access.Principal | None) -> JSONResponse:
    AUTH_REFUSED.labels(refused.error, principal.role.value if principal else NO_ROLE).inc()
    return JSONResponse(status_code=refused.status, headers=refused.headers,
                        content={"error": refused.error, "detail": refused.detail})


def install(app: FastAPI) -> None:
    app.add_exception_handler(Refused, _refused)
    app.add_middleware(CredentialBeforeBody)


# The path every route of the services' APIs is under: each needs a credential.
API = "/v1/"
# Where CredentialBeforeBody leaves the principal it authenticated, for the route's own
# credential dependency (_Credential) to take rather than authenticate the token again,
# and the dependency its own: a refusal after it is counted by the principal's role.
_PRINCIPAL = "authenticated_principal"


def _unauthenticated() -> Refused:
    return Refused(401, "unauthenticated", "send a token as `Authorization: Bearer <token>`",
                   {"WWW-Authenticate": "Bearer"})


def _unknown_token() -> Refused:
    return Refused(401, "unauthenticated", "the token is unknown, revoked or malformed",
                   {"WWW-Authenticate": 'Bearer error="invalid_token"'})


class CredentialBeforeBody:
    """Refuses a request with a body to the API (`/v1...`: every such route of ours needs
    a credential) whose bearer token is missing or names no live credential, 401 before
    its body is read (503 if the store cannot tell now), in a service whose credential
    store is open (its lifespan opened it): FastAPI
    reads and parses a route's body before it solves its dependencies, and a megabyte of
    JSON costs the event loop some 60 ms, which anyone could spend without a token. Its
    role and rate limit are checked by the route's dependency, as before."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        credentials = (service_context.of(scope["app"]).credentials
                       if scope["type"] == "http" and scope["path"].startswith(API) else None)
        if credentials is not None and _has_body(scope["headers"]):
            token = _bearer_token(scope["headers"])
            answer: JSONResponse | None = None
            if token is None:
                answer = _refusal(_unauthenticated(), None)
            else:
                try:
                    principal = await credentials.authenticate(token)
                except Exception as error:
                    # The store down: 503 now, as the route would after reading the body.
                    # Any other error is the route's to meet again, and say.
                    answer = http_answers.store_unavailable(scope["app"], scope["path"], error)
                else:
                    if principal is None:
                        answer = _refusal(_unknown_token(), None)
                    else:
                        scope.setdefault("state", {})[_PRINCIPAL] = principal
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request says it sends a body: a length above 0, or chunks."""
    for name, value in headers:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, as HTTPBearer reads it."""
    for name, value in headers:
        if name == b"authorization":
            scheme, token = get_authorization_scheme_param(value.decode("latin-1"))
            return token if scheme.lower() == "bearer" and token else None
    return None


async def get_credentials(context: service_context.Context) -> Credentials:
    return _credentials(context)


def _credentials(context: service_context.ServiceContext) -> Credentials:
    if context.credentials is None:
        raise RuntimeError("the service's lifespan has not opened its credential store")
    return context.credentials


class _Credential(HTTPBearer):
    """A dependency admitting callers whose bearer token names a live credential of one
    of `roles` (any role: None), within its rate limit where `rate_limited`: 401, 403 or
    429 for the others.

    One dependency for the whole check, an HTTP bearer scheme to OpenAPI: each
    dependency FastAPI solves costs tens of microseconds a request, and a chain of them
    (the service's context, its credentials, the bearer, authentication, the role, the
    rate limit) was once most of the intake's framework time. It reads the service's
    context off the request itself."""

    def __init__(self, roles: tuple[access.Role, ...] | None = None, *,
                 rate_limited: bool = False) -> None:
        super().__init__(auto_error=False, scheme_name=BEARER_SCHEME,
                         description=BEARER_DESCRIPTION)
        self._roles = roles
        self._allowed = " or ".join(role.value for role in roles or ())
        self.rate_limited = rate_limited

    def admit_role(self, principal: access.Principal) -> None:
        """Refused (403 `forbidden`, naming the roles admitted and the principal's) when
        its role is not one of this dependency's."""
        if self._roles is not None and principal.role not in self._roles:
            role = principal.role.value
            article = "an" if role[0] in "aeiou" else "a"
            raise Refused(403, "forbidden", f"this needs a credential of role {self._allowed};"
                                            f" yours is {article} {role} credential")

    # The principal rather than the bearer's token: FastAPI hands the routes what the
    # dependency returns, and reads no more of the base class than its OpenAPI model.
    # A request, not any connection as the base class takes: no service has a websocket.
    async def __call__(self, request: Request) -> access.Principal:  # type: ignore[override]
        context = service_context.of(request.app)
        # Authenticated already by CredentialBeforeBody, for a request with a body.
        principal: access.Principal | None = request.scope.get("state", {}).get(_PRINCIPAL)
        if principal is None:
            bearer = await super().__call__(request)
            if bearer is None:
                raise _unauthenticated()
            principal = await _credentials(context).authenticate(bearer.credentials)
            if principal is None:
                raise _unknown_token()
            request.scope.setdefault("state", {})[_PRINCIPAL] = principal
        self.admit_role(principal)
        if self.rate_limited:
            await context.rate_limits.check(principal)
        return principal


def refuse_role(scope: Any) -> JSONResponse | None:
    """body_limit.BodyLimit's question before a request's body is read, on every route:
    the 403 `forbidden` (counted) that the route's credential dependency would answer the
    credential's role, in its words, when the route does not admit it; None to read on.
    The framework reads and parses a body before it solves the route's dependencies: a
    key could otherwise have a megabyte of JSON or YAML parsed on a route it may not call,
    on no budget of bytes. The credential is CredentialBeforeBody's (no body, no
    principal: the dependency answers); the route the framework's, matched by then."""
    principal: access.Principal | None = scope.get("state", {}).get(_PRINCIPAL)
    if principal is None:
        return None
    try:
        for credential in _credential_dependencies(scope):
            credential.admit_role(principal)
    except Refused as refused:
        return _refusal(refused, principal)
    return None


def spend_body_bytes(scope: Any, size: int) -> JSONResponse | None:
    """body_limit.BodyLimit's question before it lets `size` bytes of a request's body
    be read: the 429 to answer instead (counted) when they would take the credential
    that sent them over its budget of bytes, on a route that counts that credential's
    requests (the platform's posts; reports, transfers and priority changes); None to
    read on. The credential is CredentialBeforeBody's, checked before any byte is read,
    its role by `refuse_role` (a role refused spends no bytes); the route the
    framework's, matched by then."""
    principal: access.Principal | None = scope.get("state", {}).get(_PRINCIPAL)
    if principal is None or not _counts_requests(scope):
        return None
    try:
        service_context.of(scope["app"]).rate_limits.spend_bytes(principal, size)
    except Refused as refused:
        return _refusal(refused, principal)
    return None


def _counts_requests(scope: Any) -> bool:
    """Whether the matched route's credential dependency is within its rate limit."""
    return any(credential.rate_limited for credential in _credential_dependencies(scope))


# A route's credential dependencies, found once and kept on the object holding its
# dependency tree (the route, or its inclusion's context), with that tree: they live and
# die with the route, app by app. FastAPI's Dependant can be neither hashed nor weakly
# referenced, nor its routes hashed: no WeakKeyDictionary.
_FOUND = "_routing_credential_dependencies"


def _credential_dependencies(scope: Any) -> tuple[_Credential, ...]:
    """The matched route's credential dependencies (a router's, its own, or one a
    dependency of its depends on), in the order the framework solves them (a
    dependency's own before it, first to last): the first that refuses a request gives
    the answer. Found once a route: its dependencies are fixed when it is built, and
    asked for before every body, and every chunk of a chunked one."""
    solved = _solved_route(scope)
    if solved is None:
        return ()
    dependant = solved.dependant
    found: tuple[Any, tuple[_Credential, ...]] | None = getattr(solved, _FOUND, None)
    if found is None or found[0] is not dependant:
        found = (dependant, tuple(_credentials_in(dependant)))
        setattr(solved, _FOUND, found)
    return found[1]


def _credentials_in(dependant: Any) -> Iterator[_Credential]:
    for dependency in dependant.dependencies:
        yield from _credentials_in(dependency)
        if isinstance(dependency.call, _Credential):
            yield dependency.call


def _solved_route(scope: Any) -> Any:
    """What the framework solves the dependencies of for the matched route: for a route
    of an included router, its inclusion's context (the dependencies given where it was
    included, and those of the routers it is included in, with its own; the pinned
    FastAPI's scope entry), which the route's own lacks; else the route; None for a
    route without dependencies (not FastAPI's)."""
    included = scope.get("fastapi", {}).get("effective_route_context")
    if getattr(included, "dependant", None) is not None:
        return included
    route = scope.get("route")
    return route if getattr(route, "dependant", None) is not None else None


def require(*roles: access.Role, rate_limited: bool = False,
            ) -> Callable[..., Awaitable[access.Principal]]:
    """A dependency admitting principals of these roles (403 for the others), within
    their rate limit where `rate_limited` (429). At least one role: `Authenticated`
    admits any, by name."""
    if not roles:
        raise ValueError("name the roles a route admits (any role: `Authenticated`)")
    return _Credential(roles, rate_limited=rate_limited)


def ensure_may_act_for(principal: access.Principal, department: str) -> None:
    if not principal.may_act_for(department):
        raise Refused(403, "forbidden", "a department credential acts for its own department"
                                        " only")


Authenticated = Annotated[access.Principal, Depends(_Credential())]  # any role
# One dependency for both: a route of an ADMIN_ONLY router that takes `Admin` too is
# authenticated once (FastAPI solves a dependency once a request).
_admin = require(access.Role.ADMIN)
Admin = Annotated[access.Principal, Depends(_admin)]
Platform = Annotated[access.Principal, Depends(require(access.Role.PLATFORM))]
DepartmentOrAdmin = Annotated[access.Principal,
                              Depends(require(access.Role.DEPARTMENT, access.Role.ADMIN))]
# A platform's credential, within its rate limit.
RateLimitedPlatform = Annotated[access.Principal, Depends(
    require(access.Role.PLATFORM, rate_limited=True))]
# A department's or an admin's, within its rate limit: for the routes that write a
# ticket's state and trace (reports, transfers, priorities), which one credential's flood
# would otherwise slow for every caller of the store.
RateLimitedDepartmentOrAdmin = Annotated[access.Principal, Depends(
    require(access.Role.DEPARTMENT, access.Role.ADMIN, rate_limited=True))]
ADMIN_ONLY = [Depends(_admin)]
