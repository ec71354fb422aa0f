"""JSON columns as the stores write them (services/core/db.py, `json_text`) and read them
(`json_value`): the values the standard library would have written, read back as it
would read them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
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


# What json_text can write: integers within 64 bits, finite floats, text without lone
# surrogates (orjson refuses the others).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(codec="utf-8")), inner, max_size=4),
    max_leaves=20)


def same(read: Any, expected: Any) -> bool:
    """Equal, and of the same types (1 is not 1.0, -0.0 is not 0.0 here)."""
    return json.dumps(read) == json.dumps(expected)


@given(JSON_VALUES)
def test_json_value_reads_what_json_text_writes_as_the_standard_library(value: Any) -> None:
    written = db.json_text(value)
    assert same(db.json_value(written), json.loads(written))


@pytest.mark.parametrize("written", [
    json.dumps(float("nan")), json.dumps([float("inf"), float("-inf")]), "1e400",
    '"\\ud800"', json.dumps({"a": [1.5, "\ud83d"]})])
def test_what_orjson_refuses_is_read_by_the_standard_library(written: str) -> None:
    assert same(db.json_value(written), json.loads(written))


def test_an_integer_past_64_bits_reads_as_a_float() -> None:
    # The one difference; json_text refuses to write one, so no store holds it.
    with pytest.raises(TypeError):
        db.json_text(2**64)
    assert db.json_value(str(2**64)) == float(2**64)


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///:memory:",
                                 "postgresql+asyncpg://routing@127.0.0.1:1/routing"])
async def test_each_engine_reads_json_columns_by_json_value(url: str) -> None:
    engine = db.engine(url)  # not connected: only its dialect is read
    try:
        assert engine.dialect._json_deserializer is db.json_value
        assert engine.dialect._json_serializer is db.json_text
    finally:
        await engine.dispose()
