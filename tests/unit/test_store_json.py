"""JSON columns as the stores write them (services/core/db.py, `json_text`): the values the
standard library would have written, read back the same."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, insert, select, text

from services.core import db

VALUE: dict[Any, Any] = {"subject": "Überweisung für Zoë ✓", "1": [1, 2.5, None, True],
                         2: {"nested": ["a", {"b": -(2**63)}]}, "empty": {}}


def test_json_text_holds_what_the_standard_library_writes() -> None:
    assert json.loads(db.json_text(VALUE)) == json.loads(json.dumps(VALUE))


def test_text_keys_are_kept_and_others_written_as_text() -> None:
    assert json.loads(db.json_text({1: "a", "b": 2})) == {"1": "a", "b": 2}


async def test_a_json_column_is_written_by_json_text_and_read_back() -> None:
    engine = db.engine("sqlite+aiosqlite:///:memory:")
    rows = Table("rows", MetaData(), Column("id", String, primary_key=True),
                 Column("data", JSON))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(rows.metadata.create_all)
            await connection.execute(insert(rows), [{"id": "r", "data": VALUE}])
            stored = (await connection.execute(text("SELECT data FROM rows"))).scalar_one()
            read = (await connection.execute(select(rows.c.data))).scalar_one()
    finally:
        await engine.dispose()
    assert stored == db.json_text(VALUE)  # orjson's text, not the standard library's
    assert read == json.loads(json.dumps(VALUE))
