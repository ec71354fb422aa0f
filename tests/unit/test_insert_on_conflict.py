"""Each store statement's INSERT ... ON CONFLICT comes from one place
(services/core/db.py, `insert_on_conflict`): the dialect's own, and a clear error for a
store we do not run on, rather than another dialect's SQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Dialect, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite

from services.core import db

ROWS = Table("rows", MetaData(), Column("id", String, primary_key=True),
             Column("value", String))


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_each_store_gets_its_own_upsert(dialect: Dialect) -> None:
    insert = db.insert_on_conflict(dialect.name)
    statement = insert(ROWS)
    upsert = statement.on_conflict_do_update(index_elements=[ROWS.c.id],
                                             set_={"value": statement.excluded.value})
    sql = str(upsert.compile(dialect=dialect))
    assert "ON CONFLICT (id) DO UPDATE SET value = excluded.value" in sql


def test_a_store_we_do_not_run_on_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="SQLite or PostgreSQL, not 'mysql'"):
        db.insert_on_conflict("mysql")
