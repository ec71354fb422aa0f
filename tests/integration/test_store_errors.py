"""The store's errors carry no statement parameters (ticket text, personal data): their
messages end up in logs and dead-letter reasons. A statement the store refuses is told
there by the store's code (SQLite's result code, PostgreSQL's SQLSTATE), never by its
message or PostgreSQL's detail, which quote the row."""

from __future__ import annotations

import logging
import traceback

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.core import db, faults, logs

TICKET_TEXT = "Henrietta Quaglione, born 1961-07-04, says the parcel never came"


class TestStoreErrors:
    async def test_a_failing_statement_does_not_tell_its_parameters(
            self, empty_database_url: str) -> None:
        engine = db.engine(empty_database_url)
        try:
            with pytest.raises(DBAPIError) as failed:
                async with engine.begin() as connection:
                    await connection.execute(text("INSERT INTO no_such_table (body)"
                                                  " VALUES (:body)"), {"body": TICKET_TEXT})
        finally:
            await engine.dispose()
        error = failed.value
        logged = "".join(traceback.format_exception(error))
        assert "no_such_table" in logged  # the statement is told, for the operator
        assert "parameters hidden" in str(error)
        assert "Henrietta" not in str(error)
        assert "Henrietta" not in logged


# Each statement the store refuses, and the code each backend gives for it.
REFUSED = {
    "a null where none may be": (
        "INSERT INTO refused (id, name, note) VALUES (1, NULL, :note)",
        {"postgresql": "SQLSTATE 23502", "sqlite": "SQLITE_CONSTRAINT_NOTNULL"}),
    "a value its check refuses": (
        "INSERT INTO refused (id, name, age, note) VALUES (1, 'x', -1, :note)",
        {"postgresql": "SQLSTATE 23514", "sqlite": "SQLITE_CONSTRAINT_CHECK"}),
    "a column that does not exist": (
        "SELECT no_such_column FROM refused WHERE note = :note",
        {"postgresql": "SQLSTATE 42703", "sqlite": "SQLITE_ERROR"}),
}


class TestRefusedStatements:
    @pytest.mark.parametrize("refusal", list(REFUSED))
    async def test_a_refused_statement_is_logged_and_dead_lettered_with_its_code(
            self, empty_database_url: str, refusal: str) -> None:
        statement, codes = REFUSED[refusal]
        backend = "postgresql" if empty_database_url.startswith("postgresql") else "sqlite"
        engine = db.engine(empty_database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(
                    "CREATE TABLE refused (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " age INTEGER CHECK (age >= 0), note TEXT)"))
            with pytest.raises(DBAPIError) as failed:
                async with engine.begin() as connection:
                    await connection.execute(text(statement), {"note": TICKET_TEXT})
        finally:
            await engine.dispose()
        error = failed.value
        assert faults.classify(error) is faults.Fault.RECORD
        # The line a stage or a request logs with the error, as the services write it.
        record = logging.LogRecord("services.core.pipeline", logging.ERROR, __file__, 0,
                                   "the store refused a statement", None,
                                   (type(error), error, error.__traceback__))
        line = logs.TextWithFields("%(levelname)s %(message)s").format(record)
        reason = faults.reason(error)
        assert f"{codes[backend]} {logs.NOT_LOGGED}" in line
        assert reason == f"the store refused the record ({type(error).__name__}, {codes[backend]})"
        for told in (line, reason):
            assert "Henrietta" not in told  # neither the parameters nor the failing row
            assert "Failing row" not in told
