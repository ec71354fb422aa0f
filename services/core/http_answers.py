"""Answers the HTTP edge gives in more than one place: here so that the error handlers
(http.py) and the middleware that answers before a route (auth.CredentialBeforeBody,
body_limit.BodyLimit) say them alike.

One error shape: `{"error": code, "detail": text}`, and, where fields were refused (a
422, an unreadable body's 400, a compressed body's 415), `fields`: each field, what was wrong
and what is accepted; `detail` then says the first of them in words."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse

from services.core import db, service_context

logger = logging.getLogger(__name__)

# The most problems an answer names: the first ones, then how many more there are (a
# body of thousands of bad entries would otherwise be answered with megabytes).
MAX_FIELD_ERRORS = 100
# How a body must be sent, said where one could not be read.
SEND_JSON = "send a JSON object, UTF-8, with Content-Type: application/json"


def field_refusal(status: int, error: str, fields: Sequence[Mapping[str, str]], *,
                  detail: str | None = None, headers: Mapping[str, str] | None = None,
                  **more: Any) -> JSONResponse:
    """An answer refusing `fields` (`field`, `problem`, `type` each: `bounded`), its
    `detail` the first of them in words unless given; `more` keys added (kept for the
    clients that read them)."""
    if detail is None:
        first = fields[0]
        detail = f"{first['field']}: {first['problem']}" + (
            " (more in `fields`)" if len(fields) > 1 else "")
    return JSONResponse(status_code=status, headers=headers,
                        content={"error": error, "detail": detail, **more,
                                 "fields": list(fields)})


def bounded(fields: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """At most MAX_FIELD_ERRORS problems, then one counting the rest."""
    if len(fields) <= MAX_FIELD_ERRORS:
        return list(fields)
    return [*fields[:MAX_FIELD_ERRORS], too_many(len(fields) - MAX_FIELD_ERRORS)]


def too_many(count: int) -> dict[str, str]:
    return {"field": "body", "type": "too_many_errors",
            "problem": f"{count} more problems not named here: mend these first"}


def store_unavailable(app: Any, path: str, error: Exception) -> JSONResponse | None:
    """503 with Retry-After for a store that is down or turned the request back for a
    conflict (it passes); None for any other error of it (a bug: a server error)."""
    if db.is_outage(error):
        said = "the SQL store is unavailable"
    elif db.is_conflict(error):  # another request's transaction in the way: it passes
        said = "the SQL store turned the request back for a conflict with another"
    else:
        return None
    logger.warning("request failed: %s", said,
                   extra={"path": path, "error_class": type(error).__name__})
    retry_after = service_context.of(app).settings.retry_after_seconds
    return JSONResponse(status_code=503, headers={"Retry-After": str(retry_after)},
                        content={"error": "unavailable", "detail": f"{said}; retry later"})
