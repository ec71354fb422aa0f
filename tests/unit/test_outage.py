"""When to stop waiting for the SQL store and go on without it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy.exc
from sqlalchemy.dialects import sqlite as sqlite_dialects
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from services.core import db, faults, logs
from services.core.outage import StoreOutage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestStoreOutage:
    def test_failures_within_the_grace_period_mean_wait(self) -> None:
        clock = Clock()
        outage = StoreOutage(10.0, clock=clock)
        assert outage.failed() is False
        clock.now += 9.9
        assert outage.failed() is False
        assert outage.degraded is False

    def test_past_the_grace_period_go_on_degraded(self) -> None:
        clock = Clock()
        outage = StoreOutage(10.0, clock=clock)
        outage.failed()
        clock.now += 10.0
        assert outage.failed() is True
        assert outage.degraded is True

    def test_recovery_starts_the_grace_period_afresh(self) -> None:
        clock = Clock()
        outage = StoreOutage(10.0, clock=clock)
        outage.failed()
        clock.now += 20.0
        outage.recovered()
        assert outage.degraded is False
        assert outage.failed() is False

    def test_no_grace_degrades_at_once(self) -> None:
        assert StoreOutage(0.0, clock=Clock()).failed() is True


class Sqlstate(Exception):
    """What the driver's error carries: PostgreSQL's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


class TestWhatIsAnOutage:
    @pytest.mark.parametrize(("error", "outage"), [
        (DBAPIError("connect", {}, Sqlstate("57P03")), True),  # starting up
        (DBAPIError("connect", {}, Sqlstate("08006")), True),  # connection failure
        (DBAPIError("insert", {}, Sqlstate("22001")), False),  # value too long: bad data
        (DBAPIError("insert", {}, Exception("no state")), False),
        (OperationalError("connect", {}, Exception("connection refused")), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        # No connection of the pool came free in time: the store overloaded or gone.
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), True),
        (IntegrityError("insert", {}, Exception("duplicate key")), False),
        (ProgrammingError("select", {}, Exception("no such column")), False),
        (ValueError("not the store's"), False),
    ])
    def test_store_errors_that_say_it_is_down(self, error: Exception, outage: bool) -> None:
        assert db.is_outage(error) is outage
        if outage:  # and every stage waits it out (faults.classify)
            assert faults.classify(error) is faults.Fault.OUTAGE


def as_sqlalchemy_raises(driver_error: Exception) -> DBAPIError:
    """asyncpg's error as SQLAlchemy's asyncpg dialect raises it: translated to the
    dialect's DBAPI class (the driver's error kept as its cause), then wrapped."""
    dialect = asyncpg_dialect.dialect()
    dialect.dbapi = dialect.loaded_dbapi = asyncpg_dialect.dialect.import_dbapi()
    try:
        asyncpg_dialect.AsyncAdapt_asyncpg_connection._handle_exception_no_connection(
            dialect.dbapi, driver_error)
    except Exception as translated:
        return DBAPIError.instance("INSERT ...", {}, translated, dialect.dbapi.Error,
                                   dialect=dialect)
    raise AssertionError("the dialect did not translate the error")


class TestAsyncpgErrors:
    def test_input_asyncpg_refuses_as_an_interface_error_is_the_records_fault(
            self) -> None:
        error = as_sqlalchemy_raises(asyncpg.exceptions._base.DataError(
            "invalid input for query argument $1: 99999999999 (value out of int32 range)"))
        assert isinstance(error, InterfaceError)
        assert db.is_outage(error) is False

    def test_invalid_input_for_a_query_argument_is_the_records_fault(self) -> None:
        # What asyncpg 0.32 raises for it: a PostgresError (SQLSTATE 22000), not one of
        # its InterfaceErrors.
        error = as_sqlalchemy_raises(asyncpg.exceptions.DataError(
            "invalid input for query argument $1: '\\ud800' (surrogates not allowed)"))
        assert db.is_outage(error) is False

    def test_a_closed_connection_is_an_outage(self) -> None:
        error = as_sqlalchemy_raises(asyncpg.exceptions.InterfaceError(
            "cannot perform operation: connection is closed"))
        assert isinstance(error, InterfaceError)
        assert db.is_outage(error) is True

    @pytest.mark.parametrize("driver_error", [
        # A server's statement_timeout, or a cancel: as our own statement timeout.
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.IdleInTransactionSessionTimeoutError(
            "terminating connection due to idle-in-transaction timeout"),
    ])
    def test_the_servers_own_limits_are_an_outage_not_the_records_fault(
            self, driver_error: Exception) -> None:
        """A managed PostgreSQL's statement or session limit says the store is slow, as
        our own statement timeout does: waited out (with the services' fallbacks for a
        store that is down), not dead-lettered at once as it was."""
        error = as_sqlalchemy_raises(driver_error)
        assert db.is_outage(error) is True
        assert faults.classify(error) is faults.Fault.OUTAGE


class TestConflicts:
    """PostgreSQL rolls a transaction back when it deadlocks with another or cannot be
    serialised with them (SQLSTATE class 40): nothing is wrong with the record, and the
    store is up, so a stage retries (bounded) rather than dead-letter it at once."""

    @pytest.mark.parametrize("driver_error", [
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        # A server's lock_timeout: the lock other transactions held was not had in time.
        asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"),
    ])
    def test_a_conflict_between_transactions_is_transient(
            self, driver_error: Exception) -> None:
        error = as_sqlalchemy_raises(driver_error)
        assert db.is_outage(error) is False
        assert db.is_conflict(error) is True
        assert faults.classify(error) is faults.Fault.TRANSIENT
        assert "conflicts with others" in faults.reason(error)

    @pytest.mark.parametrize("error", [
        DBAPIError("insert", {}, Sqlstate("22001")),  # value too long: the record's
        DBAPIError("connect", {}, Sqlstate("08006")),  # an outage
        IntegrityError("insert", {}, Sqlstate("23505")),  # a duplicate key
        ValueError("not the store's"),
    ])
    def test_other_errors_are_no_conflict(self, error: Exception) -> None:
        assert db.is_conflict(error) is False
        assert faults.classify(error) is not faults.Fault.TRANSIENT


# Personal data as a customer row may hold it, stored as bytes that are not UTF-8.
STORED_TEXT = "Henrietta Quaglione"


def as_sqlite_raises(fail: Callable[[sqlite3.Connection], object], *,
                     database: str = ":memory:") -> DBAPIError:
    """The error Python's sqlite3 raises for `fail`, on a connection to a real store
    holding a customer whose gender is not UTF-8, as SQLAlchemy's SQLite dialects wrap
    it (aiosqlite's raises sqlite3's own errors)."""
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=0)) as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS customers (gender TEXT)")
            connection.execute("INSERT INTO customers VALUES (CAST(? AS TEXT))",
                               (STORED_TEXT.encode() + b" \xff",))
            connection.commit()
            fail(connection)
    except sqlite3.Error as driver_error:
        return DBAPIError.instance("SELECT ...", {}, driver_error, sqlite3.Error,
                                   dialect=sqlite_dialects.dialect())
    raise AssertionError("SQLite did not fail")


def read_undecodable(connection: sqlite3.Connection) -> object:
    return connection.execute("SELECT gender FROM customers").fetchall()


class TestSqliteErrors:
    """SQLite raises OperationalError for its file's trouble (locked, cannot be opened)
    and for a statement's or a row's alike: only the first is an outage."""

    def test_stored_text_that_is_not_utf8_is_the_records_fault(self) -> None:
        error = as_sqlite_raises(read_undecodable)
        assert isinstance(error, OperationalError)
        assert STORED_TEXT in str(error)  # the driver's message quotes it
        assert db.is_outage(error) is False
        assert db.is_temporary(error) is False
        assert faults.classify(error) is faults.Fault.RECORD

    def test_neither_the_log_nor_the_dead_letter_quotes_the_stored_text(self) -> None:
        """The dead letter's reason names the column (schema, which the on-call person
        needs to find the row), never the text the driver's message goes on to quote."""
        error = as_sqlite_raises(read_undecodable)
        assert logs.said(error) == logs.NOT_LOGGED
        assert faults.reason(error) == (
            "column 'gender' of a row the record needs holds text that is not UTF-8 in the"
            " store (OperationalError)")
        assert STORED_TEXT.split()[0] not in faults.reason(error)

    @pytest.mark.parametrize("column", ['"gen der"', '"gender\'"'])
    def test_a_column_named_other_than_plainly_is_not_named(self, column: str) -> None:
        """A name that is not a plain identifier (a query's label may be anything) could
        hold what follows it, the text: the reason then says only "a row"."""
        error = as_sqlite_raises(
            lambda connection: connection.execute(
                f"SELECT gender AS {column} FROM customers").fetchall())
        assert db.holds_undecodable_text(error)
        assert faults.reason(error) == (
            "a row the record needs holds text that is not UTF-8 in the store"
            " (OperationalError)")

    @pytest.mark.parametrize("statement", [
        "SELECT no_such_column FROM customers",
        "SELECT gender FROM no_such_table",
        "SELEKT gender FROM customers",
    ])
    def test_a_statement_sqlite_cannot_run_is_no_outage(self, statement: str) -> None:
        error = as_sqlite_raises(lambda connection: connection.execute(statement))
        assert isinstance(error, OperationalError)
        assert db.is_outage(error) is False
        assert faults.classify(error) is faults.Fault.RECORD

    @pytest.mark.parametrize("statement", [
        "SELECT no_such_column FROM customers",
        "SELECT gender FROM no_such_table",
        "SELEKT gender FROM customers",
    ])
    def test_a_statement_sqlite_cannot_run_is_told_by_its_result_code_alone(
            self, statement: str) -> None:
        """What went wrong stays in the log and the dead letter, as SQLite's result code,
        where the message (which names the column, and may quote data) is not told."""
        error = as_sqlite_raises(lambda connection: connection.execute(statement))
        assert logs.said(error) == f"SQLITE_ERROR {logs.NOT_LOGGED}"
        assert faults.reason(error) == (
            "the store refused the record (OperationalError, SQLITE_ERROR)")

    def test_a_store_another_connection_holds_locked_is_an_outage(
            self, tmp_path: Path) -> None:
        database = str(tmp_path / "store.db")
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("CREATE TABLE held (n INTEGER)")
        holder.execute("BEGIN EXCLUSIVE")
        try:
            error = as_sqlite_raises(read_undecodable, database=database)
        finally:
            holder.close()
        assert "database is locked" in str(error)
        assert db.is_outage(error) is True
        assert "database is locked" in logs.said(error)

    def test_a_store_that_cannot_be_opened_is_an_outage(self, tmp_path: Path) -> None:
        error = as_sqlite_raises(read_undecodable,
                                 database=str(tmp_path / "no folder" / "store.db"))
        assert "unable to open database file" in str(error)
        assert db.is_outage(error) is True
