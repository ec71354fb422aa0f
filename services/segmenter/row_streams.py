"""Bulk-import rows read from a stream: request bodies arrive in chunks of any size, so
lines (and CSV records spanning lines) are re-framed here, and only one record, capped in
size, is ever held. Checking each row is rows.py's part."""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any, Literal, NamedTuple, overload

from services.segmenter.rows import (
    RECORD_OF,
    CustomerRecord,
    Format,
    Kind,
    PurchaseRecord,
    Record,
    RowError,
    json_object,
    parse_record,
    today_anywhere,
    unknown_columns,
)

# Reading a stream: request bodies arrive in chunks of any size, so lines are re-framed
# here, and only one line or CSV record (capped) is ever held.

MAX_ROW_BYTES = 1024 * 1024  # a row of an import body (a line, or a CSV record)
TOO_LONG = f"longer than {MAX_ROW_BYTES} bytes"
_BOM = b"\xef\xbb\xbf"


class _Line(NamedTuple):
    number: int
    data: bytes | None  # None: over the cap, dropped unread
    odd_quotes: bool  # for CSV: a quoted field opens or closes on this line


@overload
def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Literal["customers"], *,
              today: date | None = None,
              now: datetime | None = None) -> AsyncIterator[CustomerRecord | RowError]: ...
@overload
def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Literal["purchases"], *,
              today: date | None = None,
              now: datetime | None = None) -> AsyncIterator[PurchaseRecord | RowError]: ...
@overload
def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Kind, *,
              today: date | None = None,
              now: datetime | None = None) -> AsyncIterator[Record | RowError]: ...
async def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Kind, *,
                    today: date | None = None,
                    now: datetime | None = None) -> AsyncIterator[Record | RowError]:
    """Rows of a CSV (header first) or JSON-lines body, numbered by physical line; dates
    are checked against `today` and `now` (by default: the clock's as each row is read)."""
    reader = (_JsonLines if fmt == "jsonl" else _CsvRows)(kind, today or today_anywhere(),
                                                          now)
    async for lines in _lines(chunks, MAX_ROW_BYTES):
        for line in lines:
            row = reader.row(line)
            if row is not None:
                yield row
            if reader.stopped:
                return
    last = reader.end()
    if last is not None:
        yield last


async def _lines(chunks: AsyncIterator[bytes], cap: int) -> AsyncIterator[list[_Line]]:
    """The lines completed by each chunk. b"\n" never occurs inside a multi-byte UTF-8
    character: splitting bytes is safe, and decoding waits for whole lines."""
    number, pieces, size, quotes, dropped = 0, list[bytes](), 0, 0, False
    async for chunk in chunks:
        parts = chunk.split(b"\n")
        last = len(parts) - 1
        done: list[_Line] = []
        for index, part in enumerate(parts):
            quotes += part.count(b'"')
            size += len(part)
            if size > cap:
                dropped, pieces = True, []
            elif part:
                pieces.append(part)
            if index < last:
                number += 1
                done.append(_line(number, None if dropped else b"".join(pieces), quotes))
                pieces, size, quotes, dropped = [], 0, 0, False
        if done:
            yield done
    if size or dropped:
        yield [_line(number + 1, None if dropped else b"".join(pieces), quotes)]


def _line(number: int, data: bytes | None, quotes: int) -> _Line:
    if data is not None:
        data = data.removesuffix(b"\r")
        data = data.removeprefix(_BOM) if number == 1 else data
    return _Line(number, data, quotes % 2 == 1)


class _JsonLines:
    stopped = False

    def __init__(self, kind: Kind, today: date, now: datetime | None) -> None:
        self.kind, self.today, self.now = kind, today, now

    def row(self, line: _Line) -> Record | RowError | None:
        if line.data is None:
            return RowError(line.number, TOO_LONG)
        try:
            text = line.data.decode()
        except UnicodeDecodeError:
            return RowError(line.number, "not valid UTF-8")
        if not text.strip():
            return None
        values = json_object(text)
        if isinstance(values, str):
            return RowError(line.number, values)
        return parse_record(self.kind, line.number, values, today=self.today, now=self.now)

    def end(self) -> None:
        return None


class _CsvRows:
    """Rows of CSV records, the first the header. A record ends at a line end outside
    quotes, i.e. once its count of '"' is even (a quote inside a field is doubled)."""

    def __init__(self, kind: Kind, today: date, now: datetime | None) -> None:
        self.kind, self.today, self.now = kind, today, now
        self.header: list[str] | None = None
        self.stopped = False
        self.start, self.parts, self.size, self.in_quotes, self.broken = 0, [b""], 0, False, ""
        # One reader for all records, fed a record at a time: a reader per record costs
        # more than the parsing.
        self.feed = _Feed()
        self.csv = csv.reader(self.feed, strict=True)

    def row(self, line: _Line) -> Record | RowError | None:
        if not self.in_quotes:
            self.start, self.parts, self.size, self.broken = line.number, [], 0, ""
        self.size += len(line.data) + 1 if line.data is not None else MAX_ROW_BYTES + 1
        if self.size > MAX_ROW_BYTES:
            self.broken, self.parts = TOO_LONG, []
        elif line.data is not None:
            self.parts.append(line.data)
        self.in_quotes ^= line.odd_quotes
        if self.in_quotes or self.parts == [b""]:
            return None  # the record goes on, or a blank line
        return self._record(self.broken or self._fields())

    def end(self) -> RowError | None:
        if not self.in_quotes:
            return None
        row = self._record(self.broken or "a quoted field is not closed")
        return row if isinstance(row, RowError) else None

    def _fields(self) -> list[str] | str:
        try:
            self.feed.lines.extend(part.decode() + "\n" for part in self.parts)
        except UnicodeDecodeError:
            self.feed.lines.clear()
            return "not valid UTF-8"
        try:
            fields = next(self.csv)
        except csv.Error as error:  # its messages name delimiters and limits, never data
            return f"malformed CSV: {error}"
        finally:
            leftover = bool(self.feed.lines)
            self.feed.lines.clear()
        return "malformed CSV: stray quote" if leftover else fields

    def _record(self, fields: list[str] | str) -> Record | RowError | None:
        if self.header is None:
            header = fields if isinstance(fields, str) else _header(self.kind, fields)
            if isinstance(header, str):
                self.stopped = True  # every row would fail the same way
                return RowError(self.start, f"header: {header}")
            self.header = header
            return None
        if isinstance(fields, str):
            return RowError(self.start, fields)
        if len(fields) != len(self.header):
            return RowError(self.start, f"has {len(fields)} fields, the header {len(self.header)}")
        values: dict[str, Any] = {
            name: value or None for name, value in zip(self.header, fields, strict=True)}
        if isinstance(values.get("attributes"), str):
            values["attributes"] = json_object(values["attributes"], exact=False)
        return parse_record(self.kind, self.start, values, today=self.today, now=self.now)


class _Feed:
    def __init__(self) -> None:
        self.lines: deque[str] = deque()

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self.lines:
            return self.lines.popleft()
        raise StopIteration  # for now: the reader asks again for the next record


def _header(kind: Kind, fields: list[str]) -> list[str] | str:
    names = [name.strip() for name in fields]
    unknown = unknown_columns(kind, names)  # first: a missing header line shows here
    if unknown:
        return unknown
    if len(set(names)) != len(names):
        return "a column is named twice"
    required = [name for name, field in RECORD_OF[kind].model_fields.items()
                if field.is_required()]
    missing = [name for name in required if name not in names]
    return f"missing columns: {', '.join(missing)}" if missing else names
