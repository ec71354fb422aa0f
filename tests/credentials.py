"""Credentials for tests: issued in the real store the services read, as operators do."""

from __future__ import annotations

from services.core import access, db, migrate
from services.core.credentials import Credentials


async def issue_token(database_url: str, role: str, subject: str | None = None, *,
                      rate_limit: str | None = None) -> str:
    """A fresh token of `role` ("admin", "platform" or "department") for `subject`."""
    await migrate.upgrade(database_url)
    engine = db.engine(database_url)
    try:
        _credential, token = await Credentials(db.sessions(engine)).issue(
            access.Role(role), subject, label="tests", rate_limit=rate_limit)
    finally:
        await engine.dispose()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
