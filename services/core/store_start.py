"""The SQL store at a start: migrated before anything uses it.

A service waits out the store's outage (PostgreSQL not up yet, or down), as its stages
do once running: a WARNING each try, naming where the store is (host:port, or the SQLite
file) and never DATABASE_URL itself (it may hold a password), then tries again with
backoff until the store answers. A mistake no wait can mend (a password refused, a
database that does not exist, a SQLite file that cannot be opened) is not waited on: the
service exits 1, naming DATABASE_URL and what was wrong, as it does for an invalid
setting. A command never waits: the store's outage or a mistake ends it at once, in one line.
Any other failure (a migration that fails) is raised as it is, with its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.core import at_start, db, migrate, settings

logger = logging.getLogger(__name__)

# PostgreSQL's SQLSTATEs for a start that no wait mends: authorization refused (class 28:
# a password, a user, a pg_hba.conf entry), no such database (3D000), a privilege the
# user lacks (42501: the migrations create tables).
_POSTGRESQL_MISTAKES = ("28", "3D000", "42501")
# The client's own, before any answer: a server certificate that does not verify
# against the CA given, options the driver refuses. (Socket errors, SSL ones among them,
# are outages: a server restarting drops them too.)
_CLIENT_MISTAKES = (ssl.SSLCertVerificationError, asyncpg.exceptions.ClientConfigurationError)


class StoreUnusable(at_start.Unusable):
    """The store cannot be used: exits 1 with `line` (DATABASE_URL named, never its
    password), without a traceback."""


def failure(error: BaseException, *, backend: str) -> at_start.Failure:
    """What `error`, met while opening and migrating the store of `backend` (the URL's:
    `sqlite`, `postgresql`), says: an outage (wait and try again), a mistake no wait
    mends (a password or user refused, an unknown database, a missing privilege; a
    SQLite file that cannot be opened or made), or neither."""
    if backend == "sqlite":  # a local file: only another process's lock passes
        if isinstance(error, OSError):  # its folder cannot be made
            return at_start.Failure.MISTAKE
        # Another connection's lock is the one failure of a local file that passes by
        # itself; one that cannot be opened is DATABASE_URL's mistake at a start (once
        # running, db.is_outage waits it out: a file that was there).
        if db.sqlite_failed_with(error, db.SQLITE_LOCKED):
            return at_start.Failure.OUTAGE
        if db.sqlite_failed_with(error, db.SQLITE_UNUSABLE_FILE):
            return at_start.Failure.MISTAKE
        return at_start.Failure.OTHER
    if isinstance(error, DBAPIError) and db.sqlstate(error).startswith(_POSTGRESQL_MISTAKES):
        return at_start.Failure.MISTAKE
    if isinstance(_driver_error(error), _CLIENT_MISTAKES):
        return at_start.Failure.MISTAKE
    return at_start.Failure.OUTAGE if db.is_outage(error) else at_start.Failure.OTHER


def where(database_url: str) -> str:
    """Where the store is, for people to read: PostgreSQL's servers (host:port, a unix
    socket's path), SQLite's file; never the user or the password."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return ", ".join(settings.postgresql_servers(url))


def problem(error: BaseException, database_url: str) -> str:
    """What went wrong, in one line: the driver's own words (not SQLAlchemy's wrapping,
    which adds a link and may add the statement), the password blotted out should they
    ever hold it."""
    cause = _driver_error(error)
    text = " ".join(str(cause).split()) or type(cause).__name__
    password = make_url(database_url).password
    return at_start.without_secret(f"{type(cause).__name__}: {text}",
                                   None if password is None else str(password))


def _driver_error(error: BaseException) -> BaseException:
    """The driver's own error behind SQLAlchemy's (asyncpg's InvalidPasswordError, not
    the dialect's Error it was translated to; an error it did not translate, as it was)."""
    if not isinstance(error, StatementError):
        return error
    if isinstance(error, DBAPIError):
        try:
            return error.driver_exception
        except ValueError:  # made without the driver's error
            pass
    return error.orig if isinstance(error.orig, BaseException) else error


def refusal(error: BaseException, database_url: str) -> str:
    """The line a mistake in DATABASE_URL ends a start with."""
    return (f"DATABASE_URL: the store at {where(database_url)} cannot be used:"
            f" {problem(error, database_url)} (waiting would not mend it: correct"
            " DATABASE_URL, or the store's users and databases)")


def migrated_blocking(database_url: str, *,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """A service's start, before it serves: migrate the store, waiting out its outage
    for as long as it lasts (SIGINT stops the wait, as it stops a service: exit 0); a
    mistake is logged and exits 1 (at_start.waited_out)."""
    backend = make_url(database_url).get_backend_name()
    store = where(database_url)
    at_start.waited_out(
        lambda: migrate.upgrade_blocking(database_url),
        failure=lambda error: failure(error, backend=backend),
        problem=lambda error: problem(error, database_url),
        waiting=lambda _error, said, pause: (
            f"the store (DATABASE_URL) at {store} is unreachable: waiting for it, next"
            f" try in {pause:g} s ({said})"),
        refusal=lambda error: refusal(error, database_url),
        stopped="stopped while waiting for the store", logger=logger,
        extra={"store": store}, sleep=sleep)


async def migrated(database_url: str) -> None:
    """A command's (and a service's lifespan, once `migrated_blocking` let it start):
    migrate the store, or end at once in one line, whatever the failure."""
    backend = make_url(database_url).get_backend_name()
    await at_start.at_once(
        migrate.upgrade(database_url), failure=lambda error: failure(error, backend=backend),
        refusal=lambda error: refusal(error, database_url),
        unreachable=lambda error: (
            f"DATABASE_URL: the store at {where(database_url)} is unreachable:"
            f" {problem(error, database_url)} (start it, or correct DATABASE_URL, and run"
            " again)"),
        unusable=StoreUnusable)


@contextlib.asynccontextmanager
async def command_sessions(configured: settings.Settings
                           ) -> AsyncIterator[async_sessionmaker[Any]]:
    """A command's sessions on the store, migrated first (`migrated`: its outage or a
    mistake in DATABASE_URL ends the command at once, in one line); closed on the way out."""
    await migrated(configured.database_url)
    engine = db.store_engine(configured)
    try:
        yield db.sessions(engine)
    finally:
        await engine.dispose()
