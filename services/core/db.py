"""The SQL store's engine and sessions, built from settings (SQLite file or PostgreSQL)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from asyncpg.exceptions import _base as asyncpg_errors
from sqlalchemy import Column, ColumnElement, DateTime, Dialect, event, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.types import TypeDecorator, TypeEngine

if TYPE_CHECKING:
    from services.core.settings import Settings

# What the store may raise when it is down, starting or unreachable; `is_outage` tells.
# (SQLAlchemy's TimeoutError: no connection of the pool came free in time, the store
# overloaded or gone; not the builtin TimeoutError, which it does not derive from.)
STORE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, DisconnectionError, OSError,
                                            TimeoutError, PoolTimeout)
# What a wrong query or wrong data raises: a bug or bad input, never an outage.
_NOT_OUTAGES = (IntegrityError, ProgrammingError, DataError, NotSupportedError)
# PostgreSQL's classes of "cannot serve now": connection exceptions, insufficient
# resources, operator intervention (shutting down, starting up); a session the server
# ended for idling in its transaction (idle_in_transaction_session_timeout, 25P03); and
# a statement it ended (57014: its statement_timeout, or a cancel), as our own
# DATABASE_STATEMENT_TIMEOUT_SECONDS ends one (a TimeoutError): one idea, the store too
# slow now, waited out, with the services' fallbacks for a store that is down (the
# segmenter's cache, the router's deferred states). A batch slower than the limit
# whenever it runs would wait too: a server limit is to stay above a batch's time.
_OUTAGE_STATES = ("08", "53", "57P", "25P03", "57014")
# PostgreSQL's serialization failure and deadlock (of class 40, "transaction rollback";
# not its others: 40003, statement completion unknown, may have taken effect), and a
# lock not had within the server's lock_timeout (55P03: other transactions held it).
_CONFLICT_STATES = ("40001", "40P01", "55P03")
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")
# SQLite's result codes, by the names sqlite3 gives them (sqlite_result; an extended
# code's name starts with its primary's: SQLITE_BUSY_SNAPSHOT), by what each says. SQLite
# raises most of its failures as OperationalErrors, its file's and a statement's alike;
# what each means is the reader's: is_outage below (running, any trouble of the file is
# an outage, waited out), store_start.failure (at a start, a file that cannot be opened
# is a mistake in DATABASE_URL, and only a lock passes by itself).
# Another connection holds the file locked (past the busy timeout).
SQLITE_LOCKED = ("SQLITE_BUSY", "SQLITE_LOCKED")
# The file cannot be opened, written or read as a database.
SQLITE_UNUSABLE_FILE = ("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_NOTADB",
                        "SQLITE_AUTH")
# A plain SQL error (no such table or column, a syntax error; PostgreSQL's are
# ProgrammingErrors): the statement's fault, no wait mends it.
SQLITE_STATEMENT_ERROR = ("SQLITE_ERROR",)
# Python's sqlite3 reading stored text that is not UTF-8: an OperationalError with no
# result code (the decoding is Python's, not SQLite's), told by its message alone, which
# goes on to name the column and quote the text (CPython's Modules/_sqlite/cursor.c).
_SQLITE_UNDECODABLE = "Could not decode to UTF-8 column "
# The column's name as that message gives it, quoted, then " with text '...'": a name
# (schema, not data) is told; anything else is not, lest it hold the text.
_UNDECODABLE_COLUMN = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' with text ")


def is_outage(error: BaseException) -> bool:
    """Whether an error says the store is down or unreachable (PostgreSQL refusing or
    starting up, a dropped connection, a timeout), not that a query was wrong."""
    if isinstance(error, InterfaceError) and _argument_refused(error):
        return False
    if isinstance(error, OperationalError) and _sqlite_statement_failed(error):
        return False
    if isinstance(error, (OperationalError, InterfaceError, DisconnectionError, OSError,
                          TimeoutError, PoolTimeout)):
        return True
    if not isinstance(error, DBAPIError) or isinstance(error, _NOT_OUTAGES):
        return False
    if error.connection_invalidated:
        return True
    # A plain DBAPIError: asyncpg's errors without a class of their own land here, bad
    # data among them; its SQLSTATE tells.
    return sqlstate(error).startswith(_OUTAGE_STATES)


def is_conflict(error: BaseException) -> bool:
    """Whether the store turned a transaction back for what other work did at the same
    time (PostgreSQL's deadlock detection, a serialization failure, the server's lock
    timeout): neither the query nor its data is wrong, and the store is up; run again,
    it should go through."""
    if not isinstance(error, DBAPIError) or isinstance(error, _NOT_OUTAGES):
        return False
    return sqlstate(error) in _CONFLICT_STATES


def is_temporary(error: BaseException) -> bool:
    """Whether the store failed for a reason that passes by itself (an outage, or a
    conflict with other transactions), not for what was asked of it."""
    return is_outage(error) or is_conflict(error)


def holds_undecodable_text(error: BaseException) -> bool:
    """Whether the store read a row holding text that is not UTF-8 (SQLite stores what
    it is given; PostgreSQL refuses it on the way in): the row's fault, not the store's
    availability, and the driver's message quotes that text."""
    return isinstance(error, OperationalError) \
        and isinstance(error.orig, sqlite3.OperationalError) \
        and str(error.orig).startswith(_SQLITE_UNDECODABLE)


def undecodable_column(error: BaseException) -> str | None:
    """The column whose stored text SQLite could not decode, as the driver's message
    names it (what follows the name, the text itself, is never read); None when its
    name is not a plain identifier, or the error is another."""
    if not holds_undecodable_text(error):
        return None
    assert isinstance(error, OperationalError)
    named = _UNDECODABLE_COLUMN.match(str(error.orig), len(_SQLITE_UNDECODABLE))
    return named[1] if named else None


def error_code(error: BaseException) -> str:
    """The store's code for what failed, as the driver's error carries it, for either
    backend: SQLite's result code's name (SQLITE_ERROR, SQLITE_CONSTRAINT_NOTNULL) or
    PostgreSQL's SQLSTATE (SQLSTATE 23502); "": none. What logs and dead-letter reasons
    tell of a store's refusal, never the data it failed on, which the message (a column's
    name, stored text) and PostgreSQL's detail (the failing row) may quote."""
    state = sqlstate(error)
    return sqlite_result(error) or (f"SQLSTATE {state}" if state else "")


def _driver_error(error: BaseException) -> object:
    return error.orig if isinstance(error, StatementError) else error


def sqlite_result(error: BaseException) -> str:
    """SQLite's result code's name, as the driver's error carries it (SQLITE_ERROR,
    SQLITE_BUSY; "": none, or not SQLite's): what failed, never the data it failed on,
    which the message may quote (a column's name, stored text)."""
    return getattr(_driver_error(error), "sqlite_errorname", None) or ""


def sqlite_failed_with(error: BaseException, codes: tuple[str, ...]) -> bool:
    """Whether SQLite failed with one of `codes` (SQLITE_LOCKED, ...) or an extended code
    of one."""
    name = sqlite_result(error)
    return bool(name) and name.startswith(codes)


def sqlstate(error: BaseException) -> str:
    """PostgreSQL's SQLSTATE, as the driver's error carries it (asyncpg's, and SQLAlchemy's
    adapter of it; "": none, or not five digits and capitals, as no SQLSTATE is)."""
    state = getattr(_driver_error(error), "sqlstate", None)
    return state if isinstance(state, str) and _SQLSTATE.fullmatch(state) else ""


def _argument_refused(error: InterfaceError) -> bool:
    """Whether asyncpg refused a query's input before sending it: its client-side
    DataError ("an error caused by invalid query input") subclasses its InterfaceError,
    so SQLAlchemy's asyncpg dialect raises it as an InterfaceError, yet it is the
    record's fault, not the store's. (asyncpg 0.32 raises "invalid input for query
    argument", an int out of a column's range or text it cannot encode, as the other
    DataError, a PostgresError of SQLSTATE 22000: the plain DBAPIError case below.)"""
    try:
        driver_error = error.driver_exception
    except ValueError:  # made without the driver's error
        return False
    return isinstance(driver_error, asyncpg_errors.DataError)


def _sqlite_statement_failed(error: OperationalError) -> bool:
    """Whether SQLite failed the statement or a row it read, not for the file's sake."""
    return holds_undecodable_text(error) or sqlite_failed_with(error, SQLITE_STATEMENT_ERROR)


class Base(DeclarativeBase):
    """Declarative base of every table in the project."""


class _SqliteMoment(sqlite.DATETIME):
    """A moment as SQLite holds it (text in UTC, without an offset, as SQLAlchemy writes
    it), read straight into an aware datetime: one parse, where SQLAlchemy's naive one and
    a `replace` of its zone cost about 0.9 us a moment (timeit; a report reads eleven
    moments a ticket, by the 100,000: bench/report_window.py). Text that carries an
    offset, or a date alone, is parsed as it is and made UTC by `as_utc`."""

    def result_processor(self, dialect: Dialect, coltype: object,
                         ) -> Callable[[str | None], datetime | None]:
        parse = datetime.fromisoformat

        def aware(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                return parse(value + "+00:00")
            except ValueError:
                return parse(value)

        return aware


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, stored in UTC and always read back aware (SQLite keeps no offset: it
    would hand back naive datetimes, and would store another zone's wall time as is).
    Every DateTime column is one of these. A naive value is taken to be UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return _SqliteMoment()  # type: ignore[no-untyped-call]
        return self.impl_instance

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None,
                             dialect: Dialect) -> datetime | None:
        # Every moment read: aware already from SQLite (but a date alone) and PostgreSQL.
        return None if value is None else as_utc(value)


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def json_text(value: Any) -> str:
    """A JSON column's value as stored: orjson's JSON text, the same values as the
    standard library's (keys that are not text written as text, like it does) at a
    fraction of its cost; every routed ticket writes three such columns."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def json_value(text: str) -> Any:
    """A JSON column's value as read: orjson's, at a quarter of the standard library's
    cost (a report reads two such columns a ticket, by the 100,000). The standard
    library's value for any text `json_text` writes; text orjson refuses (NaN and
    Infinity, which the standard library writes; a lone surrogate; a number past a
    float's range), the standard library reads. One kind of text orjson reads otherwise:
    an integer past 64 bits, as a float (json_text refuses to write one).
    On PostgreSQL it reads every json and jsonb value the connection hands back."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# How long a connection to PostgreSQL may take to open: a store that does not answer
# fails within seconds, not asyncpg's minute.
CONNECT_SECONDS = 5.0


def store_engine(settings: Settings) -> AsyncEngine:
    """A service's engine: `DATABASE_URL`, each statement given
    `DATABASE_STATEMENT_TIMEOUT_SECONDS` for its answer."""
    return engine(settings.database_url,
                  statement_seconds=settings.database_statement_timeout_seconds)


def engine(database_url: str, *, statement_seconds: float | None = None) -> AsyncEngine:
    """The store's engine. Its errors never carry a statement's parameters (ticket text,
    personal data), since error messages end up in logs and dead-letter reasons.

    On PostgreSQL, `statement_seconds` is how long a statement (a commit, the pool's
    ping of a connection it hands out) waits for the server's answer. Past it the call
    raises TimeoutError, an outage (`is_outage`): the caller waits and tries again as it
    does when the store is down. SQLAlchemy closes that connection (up to
    `settings.STORE_CLOSE_SECONDS` more), so the next call gets another; each pooled
    connection that went silent fails one call.
    Without it, a connection gone half-open (the server, or a firewall between, lost it
    without a word) holds its caller until TCP gives up, about 15 minutes. None: no limit
    (the migrations, which wait for each other's lock). SQLite has none: a local file
    cannot go half-open, and its busy timeout bounds a wait for its lock."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, hide_parameters=True,
                                   json_serializer=json_text, json_deserializer=json_value,
                                   connect_args={"timeout": CONNECT_SECONDS,
                                                 "command_timeout": statement_seconds})
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    sqlite_engine = create_async_engine(url, hide_parameters=True, json_serializer=json_text,
                                        json_deserializer=json_value,
                                        connect_args={"timeout": 30},
                                        pool_reset_on_return=None)
    event.listen(sqlite_engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(sqlite_engine.sync_engine, "reset", _sqlite_reset)
    return sqlite_engine


async def lock_in_key_order(session: AsyncSession, key: InstrumentedAttribute[Any],
                            where: ColumnElement[bool]) -> None:
    """Lock the rows of `key`'s table where `where` holds, in `key`'s order, until the
    transaction ends, before a statement writes several of them: PostgreSQL locks rows as
    a statement's plan finds them, so two transactions writing shared rows could each
    hold one the other waits for (a deadlock); locked in one order, one waits for the
    other. The writers of several shared rows take them so (the purge, erasures,
    replays). SQLite locks the whole store per transaction: nothing to do there."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(key).where(where).order_by(key).with_for_update())


async def hold_store(session: AsyncSession, column: Column[Any] | InstrumentedAttribute[Any],
                     where: ColumnElement[bool],
                     params: Mapping[str, Any] | None = None) -> None:
    """On SQLite, take the store's write lock, held until the transaction ends, by writing
    `column` onto itself in the rows of its table where `where` holds (`params`: its bound
    parameters): a write that changes nothing (none if no row matches; the lock is taken
    all the same). On PostgreSQL, nothing: the caller locks the rows it reads (SELECT ...
    FOR UPDATE, `get_held`) or takes an advisory lock.
    Why a write: SQLite has no row locks, and pysqlite begins a transaction only at its
    first write, so a SELECT ... FOR UPDATE (or any read) before it locks nothing: another
    writer's change committed between that read and this transaction's writes goes
    unseen, and is lost under them. Called before the read, the write makes the read and
    the writes after it one unit no other writer comes between. The caller picks the
    column: one in no index changes no index entry either."""
    if session.get_bind().dialect.name == "sqlite":
        written = column.expression if isinstance(column, InstrumentedAttribute) else column
        await session.execute(update(written.table).where(where)
                              .values({written: written}), params)


_Row = TypeVar("_Row")


async def get_held(session: AsyncSession, entity: type[_Row], key: object) -> _Row | None:
    """The row of `entity` with primary key `key` (None if there is none), as it is now,
    and no other transaction writes it until this one ends: PostgreSQL's row lock
    (SELECT ... FOR UPDATE); on SQLite the store's write lock, taken first (`hold_store`,
    rewriting the key onto itself)."""
    [column] = inspect(entity).primary_key
    await hold_store(session, column, column == key)
    return await session.get(entity, key, with_for_update=True, populate_existing=True)


# The stores we run on, and each one's INSERT that takes ON CONFLICT (an upsert, or an
# insert that skips rows already there): the one place a statement picks its dialect.
InsertOnConflict = Callable[[Any], sqlite.Insert | postgresql.Insert]
_INSERTS: dict[str, InsertOnConflict] = {"sqlite": sqlite.insert,
                                         "postgresql": postgresql.insert}


def insert_on_conflict(dialect: str) -> InsertOnConflict:
    """The INSERT of `dialect` (a connection's `dialect.name`) that takes ON CONFLICT."""
    try:
        return _INSERTS[dialect]
    except KeyError:
        raise ValueError(f"the store runs on SQLite or PostgreSQL, not {dialect!r}") from None


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # Several services share the file: WAL lets readers run beside one writer.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode, NORMAL syncs at checkpoints, not at every commit: a commit survives a
    # crash of the process (what the stages' replays rely on), and the store stops paying
    # an fsync per batch. A power cut may lose the last commits; past one machine,
    # PostgreSQL is the store.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_reset(dbapi_connection: Any, record: ConnectionPoolEntry | None,
                  state: PoolResetState) -> None:
    """A connection coming back to the pool is rolled back only if a transaction is still
    open on it. The pool's own reset rolls back every time, and each call to the driver
    is a round trip to its thread: one more on every session, though its end (the
    commit, or the session's own rollback) has closed the transaction already."""
    if not state.asyncio_safe:
        return  # a connection the garbage collector found: closed, not reset
    driver = None if record is None else record.driver_connection
    try:
        # A connection detached from its record: rolled back as the pool would.
        open_transaction = driver is None or driver.in_transaction
    except ValueError:  # the driver's connection is closed: nothing to roll back
        return
    if open_transaction:
        dbapi_connection.rollback()


def sessions(db_engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(db_engine, expire_on_commit=False)

