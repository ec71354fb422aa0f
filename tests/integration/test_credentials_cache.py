"""A credential looked up is kept for the cache's time and read again from the store
(SQLite) once its entry expires; one whose entry expires while it is being checked is read
again, never a server error: the cache is looked at once per check. Requests that find its
entry expired at once share one read of the store, and a read under way when the
credential is revoked keeps nothing.

The tests see the cache from outside: the reads of the credentials table as the driver
runs them, and the clock its entries expire by (given to Credentials, moved by the
test)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from services.core import access, db, migrate
from services.core.credentials import Credentials


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate.upgrade(sqlite_url)
    engine = db.engine(sqlite_url)
    try:
        yield engine
    finally:
        await engine.dispose()


class Clock:
    """The time the credentials' caches built here go by: still unless moved, or moving
    on by `step` seconds each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0
        self.step = 0.0

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now

    def move(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


CACHE_SECONDS = 60


@pytest.fixture
def credentials(engine: AsyncEngine, clock: Clock) -> Credentials:
    return Credentials(db.sessions(engine), cache_seconds=CACHE_SECONDS, clock=clock)


def _reads_credentials(statement: str) -> bool:
    return statement.lstrip().upper().startswith("SELECT") and "credentials" in statement


@pytest.fixture
def reads(engine: AsyncEngine) -> Iterator[list[str]]:
    """The statements that read the credentials table, as the driver runs them."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if _reads_credentials(statement):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", count)


class TestKeptForTheCachesTime:
    async def test_a_credential_is_read_once_then_again_when_its_entry_expires(
            self, credentials: Credentials, clock: Clock, reads: list[str]) -> None:
        _, token = await credentials.issue(access.Role.PLATFORM, "desk")
        for _ in range(3):
            assert await credentials.authenticate(token) is not None
        clock.move(CACHE_SECONDS - 1)
        assert await credentials.authenticate(token) is not None
        assert len(reads) == 1  # kept
        clock.move(1)  # its entry expired
        assert await credentials.authenticate(token) is not None
        assert len(reads) == 2


class TestExpiryDuringACheck:
    async def test_the_credential_is_answered_never_an_error(
            self, credentials: Credentials, clock: Clock, reads: list[str]) -> None:
        _, token = await credentials.issue(access.Role.PLATFORM, "desk")
        assert await credentials.authenticate(token) is not None  # kept CACHE_SECONDS
        clock.move(CACHE_SECONDS - 1)
        clock.step = 1  # a second passes at each look: the entry there, then gone
        principal = await credentials.authenticate(token)
        assert principal is not None and principal.subject == "desk"
        assert len(reads) == 1  # answered as kept, at the one look
        assert await credentials.authenticate(token) is not None
        assert len(reads) == 2  # the entry was gone at the next look


class TestRequestsAtOnce:
    async def test_requests_finding_the_entry_expired_share_one_read(
            self, credentials: Credentials, clock: Clock, reads: list[str]) -> None:
        _, token = await credentials.issue(access.Role.PLATFORM, "desk")
        principals = await asyncio.gather(*(credentials.authenticate(token)
                                            for _ in range(40)))
        assert all(principal is not None and principal.subject == "desk"
                   for principal in principals)
        assert len(reads) == 1
        clock.move(CACHE_SECONDS)  # the entry expired: read again, once
        await asyncio.gather(*(credentials.authenticate(token) for _ in range(40)))
        assert len(reads) == 2

    async def test_a_request_gone_leaves_the_read_to_the_others(
            self, credentials: Credentials) -> None:
        _, token = await credentials.issue(access.Role.PLATFORM, "desk")
        first = asyncio.ensure_future(credentials.authenticate(token))
        second = asyncio.ensure_future(credentials.authenticate(token))
        await asyncio.sleep(0)  # both are waiting for the one read
        first.cancel()
        principal = await second
        assert principal is not None and principal.subject == "desk"
        assert first.cancelled()

    async def test_a_wrong_secret_is_refused_on_the_shared_read(
            self, credentials: Credentials) -> None:
        _, token = await credentials.issue(access.Role.PLATFORM, "desk")
        right, wrong = await asyncio.gather(credentials.authenticate(token),
                                            credentials.authenticate(token[:-1] + "x"))
        assert right is not None and wrong is None


@contextlib.asynccontextmanager
async def held_after_its_read(engine: AsyncEngine) -> AsyncIterator[
        tuple[asyncio.Event, asyncio.Event]]:
    """(read, go_on): once the first read of the credentials has its row, `read` is set
    and the read waits, without holding up the event loop, until `go_on` is."""
    read, go_on = asyncio.Event(), asyncio.Event()

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if _reads_credentials(statement) and not read.is_set():
            read.set()
            await_only(go_on.wait())

    event.listen(engine.sync_engine, "after_cursor_execute", hold)
    try:
        yield read, go_on
    finally:
        go_on.set()
        event.remove(engine.sync_engine, "after_cursor_execute", hold)


class TestRevokedDuringARead:
    async def test_a_read_under_way_when_its_credential_is_revoked_keeps_nothing(
            self, engine: AsyncEngine, credentials: Credentials) -> None:
        issued, token = await credentials.issue(access.Role.PLATFORM, "desk")
        async with held_after_its_read(engine) as (read, go_on):
            # The read has its row (the credential valid then) while it is revoked.
            before = asyncio.ensure_future(credentials.authenticate(token))
            await asyncio.wait_for(read.wait(), 10)
            assert await credentials.revoke(issued.credential_id) is not None
            go_on.set()
            assert await before is not None  # answered as read, but not kept
        assert await credentials.authenticate(token) is None


class TestAChangedCredential:
    """README, "Credentials": a key's label and own limits changed, as a revocation, hold
    at once on the service that changed them and on the others within
    AUTH_CACHE_SECONDS, when what they read of it expires."""

    async def test_another_service_takes_it_when_its_entry_expires(
            self, engine: AsyncEngine, credentials: Credentials, clock: Clock) -> None:
        issued, token = await credentials.issue(access.Role.PLATFORM, "desk",
                                                rate_limit="100/second")
        other = Credentials(db.sessions(engine), cache_seconds=CACHE_SECONDS, clock=clock)
        assert await credentials.authenticate(token) is not None  # both read it
        assert await other.authenticate(token) is not None

        await credentials.change(issued.credential_id, {"rate_limit": "5/second"})

        mine, kept = await credentials.authenticate(token), await other.authenticate(token)
        assert mine is not None and mine.rate_limit == "5/second"
        assert kept is not None and kept.rate_limit == "100/second"  # within its cache time
        clock.move(CACHE_SECONDS)  # its entry expired
        read = await other.authenticate(token)
        assert read is not None and read.rate_limit == "5/second"

    async def test_a_read_under_way_when_it_changes_keeps_nothing(
            self, engine: AsyncEngine, credentials: Credentials) -> None:
        issued, token = await credentials.issue(access.Role.PLATFORM, "desk")
        async with held_after_its_read(engine) as (read, go_on):
            before = asyncio.ensure_future(credentials.authenticate(token))
            await asyncio.wait_for(read.wait(), 10)
            await credentials.change(issued.credential_id, {"byte_rate_limit": "1MiB/day"})
            go_on.set()
            answered = await before
            assert answered is not None and answered.byte_rate_limit is None  # as read
        principal = await credentials.authenticate(token)
        assert principal is not None and principal.byte_rate_limit == "1MiB/day"


class TestAReadThatHangs:
    async def test_it_fails_as_an_outage_would_for_every_request_waiting_on_it(
            self, engine: AsyncEngine, clock: Clock) -> None:
        credentials = Credentials(db.sessions(engine), cache_seconds=CACHE_SECONDS,
                                  read_seconds=0.2, clock=clock)
        _, platform_token = await credentials.issue(access.Role.PLATFORM, "desk")
        _, department_token = await credentials.issue(access.Role.DEPARTMENT, "billing")
        assert await credentials.authenticate(platform_token) is not None  # read once
        clock.move(CACHE_SECONDS)  # its entry expired
        never = asyncio.Event()

        def hang(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if _reads_credentials(statement):
                await_only(never.wait())  # a connection that no longer answers

        event.listen(engine.sync_engine, "after_cursor_execute", hang)
        try:
            # A platform key read before: the intake goes on by that read.
            platforms = await asyncio.wait_for(asyncio.gather(
                *(credentials.authenticate(platform_token) for _ in range(5))), 10)
            # Any other key: an outage (the services answer 503).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(credentials.authenticate(department_token), 10)
        finally:
            event.remove(engine.sync_engine, "after_cursor_execute", hang)
        assert all(principal is not None and principal.subject == "desk"
                   for principal in platforms)
        assert await credentials.authenticate(department_token) is not None  # back
