"""Answers the HTTP edge gives in more than one place: here so that the error handlers
(http.py) and the middleware that answers before a route (auth.CredentialBeforeBody)
say them alike."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse

from services.core import db, service_context

logger = logging.getLogger(__name__)


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
