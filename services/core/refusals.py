"""The requests refused at the HTTP edge for who sent them: unauthenticated (401),
forbidden (403), over a rate limit or a budget of body bytes, or asking for a second report
at once (429). What such a refusal is (`Refused`, raised by the checks in `auth`,
`rate_limits`, `report_turns` and the routes), and how it is counted and answered
(`answer`)."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from prometheus_client import Counter

from services.core import access

# The outcomes, each the `error` of its answers and the counter's `outcome` label: named
# once, in refusal_outcomes (decision code names them without this module's FastAPI).
from services.core.refusal_outcomes import BYTE_RATE_LIMITED as BYTE_RATE_LIMITED
from services.core.refusal_outcomes import ESCALATED_AWAY as ESCALATED_AWAY
from services.core.refusal_outcomes import FORBIDDEN as FORBIDDEN
from services.core.refusal_outcomes import OUTCOMES as OUTCOMES
from services.core.refusal_outcomes import RATE_LIMITED as RATE_LIMITED
from services.core.refusal_outcomes import REPORT_IN_PROGRESS as REPORT_IN_PROGRESS
from services.core.refusal_outcomes import UNAUTHENTICATED as UNAUTHENTICATED

# Labelled by the role of the credential sent, never by the credential or its holder: a
# few series, and a platform flooded with 429s told from a department's tool.
NO_ROLE = "none"  # no valid credential sent
AUTH_REFUSED = Counter("routing_http_auth_refused", "Requests refused: unauthenticated (401),"
                       " forbidden or escalated away (403), over their rate limit or their"
                       " budget of body bytes or asking for a second report at once (429),"
                       " by the role of the credential sent (none: no valid one)",
                       ["outcome", "role"])


def roles_refused(outcome: str) -> tuple[str, ...]:
    """The roles (`role` labels) of the credentials an outcome can refuse: no valid one
    for `unauthenticated`, a department's alone for `escalated_away`, any other."""
    if outcome == UNAUTHENTICATED:
        return (NO_ROLE,)
    if outcome == ESCALATED_AWAY:
        return (access.Role.DEPARTMENT.value,)
    return tuple(role.value for role in access.Role)


def start_at_zero(counter: Counter) -> None:
    """Each outcome's series, by each role it can refuse, at 0 from the start, so that its
    first refusal is an increase to Prometheus."""
    for outcome in OUTCOMES:
        for role in roles_refused(outcome):
            counter.labels(outcome, role)


start_at_zero(AUTH_REFUSED)


class Refused(Exception):
    def __init__(self, status: int, error: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}


def unauthenticated() -> Refused:
    return Refused(401, UNAUTHENTICATED, "send a token as `Authorization: Bearer <token>`",
                   {"WWW-Authenticate": "Bearer"})


def unknown_token() -> Refused:
    return Refused(401, UNAUTHENTICATED, "the token is unknown, revoked or malformed",
                   {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def answer(refused: Refused, principal: access.Principal | None) -> JSONResponse:
    """The refusal's answer, counted by the role of `principal`, the credential the
    request was authenticated as (None: no valid one)."""
    AUTH_REFUSED.labels(refused.error, principal.role.value if principal else NO_ROLE).inc()
    return JSONResponse(status_code=refused.status, headers=refused.headers,
                        content={"error": refused.error, "detail": refused.detail})
