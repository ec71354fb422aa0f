"""The store's errors carry no statement parameters (ticket text, personal data): their
messages end up in logs and dead-letter reasons."""

from __future__ import annotations

import traceback

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.core import db

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
