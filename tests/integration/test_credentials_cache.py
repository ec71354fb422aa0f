"""A credential whose cache entry expires while it is being checked is read again from
the store (SQLite), never a server error: the cache is read once per check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from cachetools import TTLCache

from services.core import access, db, migrate
from services.core.credentials import Credentials


class ExpiringOnRead(TTLCache[str, Any]):
    """A cache whose entries are there when asked about, and gone when read: what a TTL
    cache does to an entry that expires between the two."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)


@pytest.fixture
async def credentials(sqlite_url: str) -> AsyncIterator[Credentials]:
    await migrate.upgrade(sqlite_url)
    engine = db.engine(sqlite_url)
    try:
        yield Credentials(db.sessions(engine), cache_seconds=60)
    finally:
        await engine.dispose()


class TestExpiryDuringACheck:
    async def test_the_credential_is_read_again_from_the_store(
            self, credentials: Credentials) -> None:
        _, token = await credentials.issue(access.Role.PLATFORM, "desk")
        credentials._looked = ExpiringOnRead(maxsize=10, ttl=60)
        principal = await credentials.authenticate(token)
        assert principal is not None and principal.subject == "desk"
