"""Import rows: parsing and checking, line numbers, and re-framing lines from any chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.core import identifiers
from services.segmenter import rows
from services.segmenter.profiles import CustomerType
from services.segmenter.row_streams import MAX_ROW_BYTES, read_rows
from services.segmenter.rows import (
    CustomerRecord,
    Format,
    Kind,
    PurchaseRecord,
    Record,
    RowError,
)

TODAY = date(2026, 6, 1)
# Every bad value below carries this; no reason may repeat it.
SECRET = "Sekret"
CUSTOMER = {"customer_id": "c-1", "customer_type": "individual"}
PURCHASE = {"customer_id": "c-1", "amount": "12.50", "currency": "EUR",
            "purchased_at": "2026-01-31T09:30:00+01:00"}


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def read(data: bytes | str, fmt: Format = "csv", kind: Kind = "customers",
               size: int = 65536) -> list[Record | RowError]:
    raw = data.encode() if isinstance(data, str) else data
    return [row async for row in read_rows(chunked(raw, size), fmt, kind, today=TODAY)]


def jsonl(*rows: dict[str, Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def lines_and_reasons(rows: list[Record | RowError]) -> list[tuple[int, str]]:
    return [(row.line, row.reason) if isinstance(row, RowError) else (row.line, "ok")
            for row in rows]


def only_error(rows: list[Record | RowError]) -> RowError:
    assert len(rows) == 1 and isinstance(rows[0], RowError), rows
    assert SECRET.lower() not in rows[0].reason.lower()
    return rows[0]


class TestGoodRows:
    async def test_csv_customer_is_typed_and_knows_its_given_fields(self) -> None:
        [row] = await read("customer_id,customer_type,name,birth_date,country,attributes\n"
                           'c-1,organisation,Acme BV,,NL,"{""vip"": true, ""score"": 1.5}"\n')
        assert isinstance(row, CustomerRecord)
        assert (row.line, row.customer_type, row.name, row.country) == (
            2, CustomerType.ORGANISATION, "Acme BV", "NL")
        assert row.attributes == {"vip": True, "score": 1.5}
        # An empty cell is given as "no value": re-importing clears the field.
        assert row.given()["birth_date"] is None
        assert set(row.given()) == {"customer_id", "customer_type", "name", "birth_date",
                                    "country", "attributes"}

    async def test_jsonl_customer_gives_only_its_keys(self) -> None:
        [row] = await read(jsonl({**CUSTOMER, "birth_date": "1980-05-17", "email": None,
                                  "attributes": {"spend": 12.25}}), "jsonl")
        assert isinstance(row, CustomerRecord)
        assert row.birth_date == date(1980, 5, 17)
        assert row.attributes == {"spend": 12.25}
        assert set(row.given()) == {"customer_id", "customer_type", "birth_date", "email",
                                    "attributes"}

    async def test_purchase_keeps_exact_amount_and_offset(self) -> None:
        rows = await read(jsonl(PURCHASE, {**PURCHASE, "amount": 0.1,
                                           "purchased_at": "2026-01-31t08:30:00.123456z"}),
                          "jsonl", "purchases")
        assert all(isinstance(row, PurchaseRecord) for row in rows)
        first, second = rows
        assert isinstance(first, PurchaseRecord) and isinstance(second, PurchaseRecord)
        assert first.amount == Decimal("12.50") and second.amount == Decimal("0.1")
        assert first.purchased_at.utcoffset() == timedelta(hours=1)
        assert second.purchased_at == datetime(2026, 1, 31, 8, 30, 0, 123456, UTC)

    async def test_purchase_csv(self) -> None:
        [row] = await read("customer_id,amount,currency,purchased_at\n"
                           "c-1,99,SEK,2026-01-31T09:30:00-05:00\n", kind="purchases")
        assert isinstance(row, PurchaseRecord)
        assert row.purchased_at.tzinfo == timezone(timedelta(hours=-5))

    async def test_born_today_is_fine(self) -> None:
        [row] = await read(jsonl({**CUSTOMER, "birth_date": TODAY.isoformat()}), "jsonl")
        assert isinstance(row, CustomerRecord)


BAD_CUSTOMERS = [
    ({"customer_type": "individual"}, "missing customer_id"),
    ({"customer_id": None, "customer_type": "individual"}, "missing customer_id"),
    ({"customer_id": f"{SECRET} 1", "customer_type": "individual"}, "invalid customer_id"),
    ({"customer_id": SECRET * 30, "customer_type": "individual"}, "invalid customer_id"),
    ({"customer_id": "c-1"}, "missing customer_type"),
    ({**CUSTOMER, "customer_type": f"{SECRET}corp"}, "invalid customer_type"),
    ({**CUSTOMER, "customer_type": "Individual"}, "invalid customer_type"),
    ({**CUSTOMER, "name": SECRET * 50}, "invalid name"),
    ({**CUSTOMER, "name": 42}, "invalid name"),
    ({**CUSTOMER, "email": f"{SECRET}@" + "x" * 260}, "invalid email"),
    ({**CUSTOMER, "birth_date": "2026-06-02"}, "invalid birth_date"),
    ({**CUSTOMER, "birth_date": f"{SECRET}-1980"}, "invalid birth_date"),
    ({**CUSTOMER, "birth_date": "1980-02-30"}, "invalid birth_date"),
    ({**CUSTOMER, "birth_date": "19800517"}, "invalid birth_date"),
    ({**CUSTOMER, "birth_date": 0}, "invalid birth_date"),
    ({**CUSTOMER, "signup_date": "2026-01-31T00:00:00"}, "invalid signup_date"),
    ({**CUSTOMER, "country": "nl"}, "invalid country"),
    ({**CUSTOMER, "country": "XX"}, "invalid country"),
    ({**CUSTOMER, "country": "NLD"}, "invalid country"),
    ({**CUSTOMER, "language": SECRET * 4}, "invalid language"),
    ({**CUSTOMER, "gender": SECRET * 7}, "invalid gender"),
    ({**CUSTOMER, "socio_economic_band": SECRET * 4}, "invalid socio_economic_band"),
    ({**CUSTOMER, "attributes": [SECRET]}, "invalid attributes"),
    ({**CUSTOMER, "attributes": SECRET}, "invalid attributes"),
    ({**CUSTOMER, "attributes": {"club": {"name": SECRET}}}, "invalid attributes"),
    ({**CUSTOMER, "attributes": {"n": 2 ** 64}}, "invalid attributes"),
    ({**CUSTOMER, "attributes": {"note": SECRET * 200}}, "invalid attributes"),
    ({**CUSTOMER, "attributes": {f"a{n}": n for n in range(101)}}, "invalid attributes"),
    ({**CUSTOMER, "attributes": {"x" * 65: 1}}, "invalid attributes"),
    ({**CUSTOMER, "name": f"{SECRET}\u0000"},
     "invalid name (expects text of at most 200 characters, without the NUL character)"),
    ({**CUSTOMER, "email": "\ud800"}, "invalid email"),
    ({**CUSTOMER, "vip": SECRET}, "1 unknown field"),
    ({**CUSTOMER, "emial": SECRET}, "1 unknown field (close to email)"),
    ({**CUSTOMER, "amount": SECRET}, "unknown fields: amount"),
    # Refused whole, before any field is read (request_bodies.MAX_FIELDS), saying so.
    ({**CUSTOMER, **{f"k{n}": SECRET for n in range(150)}},
     "at most 100 fields, not 152; the fields known: customer_id,"),
]


BAD_PURCHASES = [
    ({**PURCHASE, "amount": "0"}, "invalid amount"),
    ({**PURCHASE, "amount": "-5"}, "invalid amount"),
    ({**PURCHASE, "amount": "12.345"}, "invalid amount"),
    ({**PURCHASE, "amount": 12.345}, "invalid amount"),
    ({**PURCHASE, "amount": "1e3"}, "invalid amount"),
    ({**PURCHASE, "amount": " 12"}, "invalid amount"),
    ({**PURCHASE, "amount": "1234567890123"}, "invalid amount"),
    ({**PURCHASE, "amount": True}, "invalid amount"),
    ({**PURCHASE, "amount": f"{SECRET}"}, "invalid amount"),
    ({**PURCHASE, "currency": "eur"}, "invalid currency"),
    ({**PURCHASE, "currency": "EURO"}, "invalid currency"),
    ({**PURCHASE, "purchased_at": "2026-01-31T09:30:00"}, "invalid purchased_at"),
    ({**PURCHASE, "purchased_at": "2026-01-31"}, "invalid purchased_at"),
    ({**PURCHASE, "purchased_at": 1767225600}, "invalid purchased_at"),
    ({**PURCHASE, "purchased_at": "2026-02-30T09:30:00Z"}, "invalid purchased_at"),
    ({**PURCHASE, "purchased_at": "0001-01-01T00:00:00+01:00"}, "invalid purchased_at"),
    ({**PURCHASE, "purchased_at": "9999-12-31T23:59:59-01:00"}, "invalid purchased_at"),
    ({"customer_id": "c-1"}, "missing amount"),
    ({**PURCHASE, "purchased_at": "9999-01-01T00:00:00Z"}, "invalid purchased_at"),
]


class TestBadRows:
    @pytest.mark.parametrize(("values", "expected"), BAD_CUSTOMERS)
    async def test_bad_customer_names_field_and_what_it_accepts(
            self, values: dict[str, Any], expected: str) -> None:
        error = only_error(await read("\n" + jsonl(values), "jsonl"))
        assert error.line == 2
        assert expected in error.reason
        if expected.startswith("invalid"):
            assert "(expects " in error.reason

    @pytest.mark.parametrize(("values", "expected"), BAD_PURCHASES)
    async def test_bad_purchase_names_field_and_what_it_accepts(
            self, values: dict[str, Any], expected: str) -> None:
        error = only_error(await read(jsonl(values), "jsonl", "purchases"))
        assert (error.line, expected in error.reason) == (1, True)

    async def test_a_purchase_dated_in_the_future_is_refused_saying_what_is_accepted(
            self) -> None:
        """Counted as recent spend until its date came, it would raise the tier for years;
        one dated by a clock a little ahead of ours is taken."""
        now = datetime(2026, 6, 1, 12, tzinfo=UTC)
        ahead, later = (now + rows.PURCHASE_CLOCK_SKEW,
                        now + rows.PURCHASE_CLOCK_SKEW + timedelta(seconds=1))
        found = [row async for row in read_rows(chunked(jsonl(
            {**PURCHASE, "purchased_at": ahead.isoformat()},
            {**PURCHASE, "purchased_at": later.isoformat()}).encode(), 65536), "jsonl",
            "purchases", today=TODAY, now=now)]
        assert lines_and_reasons(found) == [
            (1, "ok"), (2, f"invalid purchased_at (expects {rows.ACCEPTS['purchased_at']})")]
        assert "by now (up to 5 minutes later" in rows.ACCEPTS["purchased_at"]

    async def test_every_bad_field_of_a_row_is_named(self) -> None:
        error = only_error(await read(jsonl({"customer_type": "robot", "country": "nl",
                                             "extra": 1, "more": 2}), "jsonl"))
        assert error.reason.startswith("missing customer_id")
        for part in ("invalid customer_type", "invalid country", "2 unknown fields"):
            assert part in error.reason

    @pytest.mark.parametrize(("line", "reason"), [
        ("{", "not valid JSON"), ("[1, 2]", "not a JSON object"), ('"x"', "not a JSON object"),
        ('{"customer_id": NaN}', "not valid JSON"), ("[" * 100_000, "not valid JSON"),
    ])
    async def test_not_a_json_object(self, line: str, reason: str) -> None:
        assert lines_and_reasons(await read(line + "\n", "jsonl")) == [(1, reason)]

    @pytest.mark.parametrize("line", [
        '{"customer_id": "c-1", "customer_type": "individual", "customer_id": "c-2"}',
        '{"customer_id": "c-1", "customer_type": "individual", "attributes":'
        ' {"tier": 1, "tier": 2}}'])
    async def test_a_key_given_twice_is_refused(self, line: str) -> None:
        """As in a request body: which one was meant is not for the import to guess (the
        last one was kept). Not named: a row's keys may be values (attributes)."""
        assert lines_and_reasons(await read(line + "\n", "jsonl")) == [(
            1, "a key is given 2 times in one object: keys must be unique in every JSON"
               " object; send it once")]

    async def test_a_key_given_twice_in_a_csv_rows_attributes_is_refused(self) -> None:
        rows = await read("customer_id,customer_type,attributes\n"
                          'c-1,individual,"{""a"": 1, ""a"": 2}"\n')
        assert [(line, reason.split(" (")[0]) for line, reason in lines_and_reasons(rows)
                ] == [(2, "invalid attributes")]

    async def test_csv_rows_by_physical_line(self) -> None:
        rows = await read("customer_id,customer_type,country,attributes\n"
                          "c-1,individual,NL,\n"
                          "\n"
                          f"c-2,{SECRET},nl,\n"
                          f'c-3,individual,"N\nL",\n'
                          f"c-4,individual,NL,{SECRET}\n"
                          "c-5,individual\n"
                          f"c-6,individual,NL,,{SECRET}\n"
                          'c-7,"individual"x,NL,\n'
                          "c-8,individual,NL,\n")
        assert [(line, reason.split(" (")[0]) for line, reason in lines_and_reasons(rows)] == [
            (2, "ok"),
            (4, "invalid customer_type"),
            (5, "invalid country"),
            (7, "invalid attributes"),
            (8, "has 2 fields, the header 4"),
            (9, "has 5 fields, the header 4"),
            (10, "malformed CSV: ',' expected after '\"'"),
            (11, "ok")]
        assert all(SECRET not in reason for _, reason in lines_and_reasons(rows))

    @pytest.mark.parametrize(("header", "reason"), [
        (f"customer_id,customer_type,{SECRET}", "unknown columns at positions 3; accepted: "
         "customer_id, customer_type, name, "),
        ("customer_id,name", "missing columns: customer_type"),
        ("customer_id,customer_type,customer_id", "a column is named twice"),
        ("customer_id,amount,currency,purchased_at", "unknown columns at positions 2, 3, 4;"),
    ])
    async def test_bad_header_is_one_error_on_its_line(self, header: str, reason: str) -> None:
        rows = await read(f"\n{header}\nc-1,individual,x\nc-2,individual,y\n")
        assert len(rows) == 1 and isinstance(rows[0], RowError)
        assert rows[0].line == 2 and rows[0].reason.startswith(f"header: {reason}")
        assert SECRET not in rows[0].reason

    async def test_a_key_that_is_no_fields_name_is_counted_not_shown(self) -> None:
        # A value put where a key goes (an email, a surname as the key) must not come
        # back; the fields the keys read close to are named, the keys never.
        error = only_error(await read(jsonl({"customer_id": "c-1",
                                             "customer_type": "individual", "jansen": 1,
                                             "contry": "NL", f"{SECRET}@example.com": 2}),
                                      "jsonl"))
        assert error.reason == "3 unknown fields (close to country)"

    async def test_a_file_without_its_header_line_and_two_equal_values_gets_the_hint(
            self) -> None:
        rows = await read(f"c-9,individual,,,{SECRET},{SECRET}\n")
        assert len(rows) == 1 and isinstance(rows[0], RowError)
        assert "(is the header line missing?)" in rows[0].reason
        assert SECRET not in rows[0].reason

    async def test_a_file_without_its_header_line_does_not_echo_its_first_row(self) -> None:
        # The first row read as the header: its values (a name, an email, a birth date)
        # must not come back in the answer.
        rows = await read(f"c-9,individual,{SECRET},{SECRET}@example.com,1980-01-01\n"
                          "c-10,individual,Someone,some@example.com,1981-02-02\n")
        assert len(rows) == 1 and isinstance(rows[0], RowError)
        assert rows[0].reason.startswith("header: unknown columns at positions 1, 2, 3, 4, 5"
                                         " (is the header line missing?); accepted: ")
        for value in (SECRET, "c-9", "1980-01-01", "example.com"):
            assert value not in rows[0].reason

    async def test_quoted_field_not_closed_by_the_end(self) -> None:
        rows = await read('customer_id,customer_type,name\nc-1,individual,"Acme\nc-2,x,y\n')
        assert lines_and_reasons(rows) == [(2, "a quoted field is not closed")]


class TestFraming:
    # BOM, CRLF, a multi-line quoted field with CRLF inside, multi-byte characters of
    # 2, 3 and 4 bytes, a blank line, and a last line without newline.
    FILE = ("\ufeffcustomer_id,customer_type,name,country\r\n"
            'ç-1,individual,"Çelik, Zeynep\r\nsecond ☃ line",TR\r\n'
            "\r\n"
            "c-2,organisation,Ünal 🚀 AB,SE\r\n"
            "c-3,robot,x,SE\r\n"
            "c-4,individual,Åsa,SE").encode()

    async def test_every_chunk_size_gives_the_same_rows(self) -> None:
        expected = await read(self.FILE, size=len(self.FILE))
        assert lines_and_reasons(expected) == [
            (2, f"invalid customer_id (expects {identifiers.ID.words}, at most"
                f" {identifiers.MAX_LENGTH} characters)"),
            (5, "ok"), (6, "invalid customer_type (expects one of individual, organisation, "
                            "government)"), (7, "ok")]
        named = [row for row in expected if isinstance(row, CustomerRecord)]
        assert [row.name for row in named] == ["Ünal 🚀 AB", "Åsa"]
        for size in range(1, len(self.FILE)):
            assert await read(self.FILE, size=size) == expected, size

    async def test_multi_line_quoted_field_keeps_its_line_break(self) -> None:
        data = self.FILE.replace("ç-1".encode(), b"c-1")
        [first, *_] = await read(data, size=5)
        assert isinstance(first, CustomerRecord)
        assert (first.line, first.name) == (2, "Çelik, Zeynep\nsecond ☃ line")

    async def test_jsonl_with_bom_crlf_and_no_final_newline(self) -> None:
        data = b"\xef\xbb\xbf" + jsonl(CUSTOMER).encode().replace(b"\n", b"\r\n") + \
            b"\r\n  \r\n" + json.dumps({**CUSTOMER, "name": "Ölçü 🚀"}).encode()
        for size in (1, 2, 3, 7, len(data)):
            rows = await read(data, "jsonl", size=size)
            assert [(row.line, getattr(row, "name", None)) for row in rows] == [
                (1, None), (4, "Ölçü 🚀")]

    async def test_bom_only_counts_at_the_start(self) -> None:
        rows = await read(jsonl(CUSTOMER) + "\ufeff" + jsonl(CUSTOMER), "jsonl")
        assert lines_and_reasons(rows) == [(1, "ok"), (2, "not valid JSON")]

    @pytest.mark.parametrize("fmt", ["csv", "jsonl"])
    async def test_invalid_utf8_is_an_error_for_that_line_only(self, fmt: Format) -> None:
        good = b"c-1,individual\n" if fmt == "csv" else jsonl(CUSTOMER).encode()
        header = b"customer_id,customer_type\n" if fmt == "csv" else b"\n"
        bad = good.replace(b"c-1", b"c-\xc3\x28")  # a broken 2-byte sequence
        for size in (1, 4, 1000):
            rows = await read(header + good + bad + good, fmt, size=size)
            assert lines_and_reasons(rows) == [(2, "ok"), (3, "not valid UTF-8"), (4, "ok")]

    @pytest.mark.parametrize("fmt", ["csv", "jsonl"])
    async def test_overlong_line_is_an_error_and_reading_goes_on(self, fmt: Format) -> None:
        good = b"c-1,individual\n" if fmt == "csv" else jsonl(CUSTOMER).encode()
        header = b"customer_id,customer_type\n" if fmt == "csv" else b"\n"
        huge = good.replace(b"c-1", b"c-" + b"9" * MAX_ROW_BYTES)
        rows = await read(header + good + huge + good, fmt, size=65536)
        assert lines_and_reasons(rows) == [
            (2, "ok"), (3, f"longer than {MAX_ROW_BYTES} bytes"), (4, "ok")]

    async def test_overlong_quoted_record_spanning_lines_is_skipped_whole(self) -> None:
        body = ("x" * 1000 + "\n") * (MAX_ROW_BYTES // 1000 + 5)
        data = f'customer_id,customer_type,name\nc-1,individual,"{body}"\nc-2,individual,Y\n'
        rows = await read(data)
        assert lines_and_reasons(rows)[0] == (2, f"longer than {MAX_ROW_BYTES} bytes")
        assert isinstance(rows[1], CustomerRecord) and rows[1].customer_id == "c-2"
