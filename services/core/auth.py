"""Authentication and authorisation at the HTTP edge: who is calling (401 when we cannot
tell), whether their role allows the action (403 when not), and per-credential rate
limits, of requests and of their bodies' bytes (429 with Retry-After). The rules
themselves are in `services.core.access`; what a refusal is, and how it is counted and
answered, in `services.core.refusals`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from services.core import access, http_answers, refusals, route_dependencies, service_context
from services.core.credentials import Credentials

# The scheme every credential dependency below shows in OpenAPI.
BEARER_SCHEME = "HTTPBearer"
BEARER_DESCRIPTION = ("A token issued by `routing credentials issue` or `POST"
                      " /v1/credentials`: `Authorization: Bearer rt_...`")


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, refusals.Refused)
    return refusals.answer(exc, request.scope.get("state", {}).get(_PRINCIPAL))


def install(app: FastAPI) -> None:
    app.add_exception_handler(refusals.Refused, _refused)
    app.add_middleware(CredentialBeforeBody)


# The path every route of the services' APIs is under: each needs a credential.
API = "/v1/"
# Where CredentialBeforeBody leaves the principal it authenticated, for the route's own
# credential dependency (_Credential) to take rather than authenticate the token again,
# and the dependency its own: a refusal after it is counted by the principal's role.
_PRINCIPAL = "authenticated_principal"


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
                answer = refusals.answer(refusals.unauthenticated(), None)
            else:
                try:
                    principal = await credentials.authenticate(token)
                except Exception as error:
                    # The store down: 503 now, as the route would after reading the body.
                    # Any other error is the route's to meet again, and say.
                    answer = http_answers.store_unavailable(scope["app"], scope["path"], error)
                else:
                    if principal is None:
                        answer = refusals.answer(refusals.unknown_token(), None)
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
            raise refusals.Refused(403, refusals.FORBIDDEN, "this needs a credential of"
                                   f" role {self._allowed}; yours is {article} {role}"
                                   " credential")

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
                raise refusals.unauthenticated()
            principal = await _credentials(context).authenticate(bearer.credentials)
            if principal is None:
                raise refusals.unknown_token()
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
    try:  # in the order the framework solves them: the first to refuse answers
        for credential in route_dependencies.of_kind(scope, _Credential):
            credential.admit_role(principal)
    except refusals.Refused as refused:
        return refusals.answer(refused, principal)
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
    except refusals.Refused as refused:
        return refusals.answer(refused, principal)
    return None


def _counts_requests(scope: Any) -> bool:
    """Whether the matched route's credential dependency is within its rate limit."""
    return any(credential.rate_limited
               for credential in route_dependencies.of_kind(scope, _Credential))


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
        raise refusals.Refused(403, refusals.FORBIDDEN, "a department credential acts for"
                                                         " its own department only")


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
