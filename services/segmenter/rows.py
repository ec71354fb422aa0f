"""Bulk-import rows: one CSV record or JSON line checked and typed, or refused with a reason.

Pure decisions: no database, no web framework. Reasons name fields and what they accept but
never echo a value, since rows carry personal data and reasons end up in responses and logs.
"""

from __future__ import annotations

import csv
import json
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple, Self, TypeAlias, overload

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from services.segmenter.profiles import CustomerType

Kind: TypeAlias = Literal["customers", "purchases"]
Format: TypeAlias = Literal["csv", "jsonl"]

# Officially assigned ISO 3166-1 alpha-2 codes (249).
_ISO_3166_ALPHA_2 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
ZW"""
COUNTRY_CODES = frozenset(_ISO_3166_ALPHA_2.split())

# What each field accepts, as told to whoever sent a bad row.
ACCEPTS = {
    "customer_id": "1-128 characters of letters, digits and . _ : @ -",
    "customer_type": "one of individual, organisation, government",
    "name": "text of at most 200 characters",
    "email": "text of at most 254 characters",
    "birth_date": "an ISO date (YYYY-MM-DD), not in the future",
    "gender": "text of at most 32 characters",
    "country": "an ISO 3166 alpha-2 code in upper case, e.g. NL",
    "language": "text of at most 16 characters",
    "socio_economic_band": "text of at most 16 characters",
    "signup_date": "an ISO date (YYYY-MM-DD)",
    "attributes": "a JSON object",
    "amount": "a decimal number above 0 with at most 2 decimals and 12 digits before the point",
    "currency": "3 upper-case letters, e.g. EUR",
    "purchased_at": "an RFC 3339 timestamp with offset, e.g. 2026-01-31T09:30:00+01:00",
}

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_AMOUNT_TEXT = re.compile(r"\d+(\.\d+)?")
# "Not in the future" anywhere: it is already tomorrow at UTC+14 while today in UTC.
_EARLIEST_ZONE = timezone(timedelta(hours=14))


def _iso_date(value: object) -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("not YYYY-MM-DD")
    return date.fromisoformat(value)


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise ValueError("not RFC 3339 with offset")
    return datetime.fromisoformat(value.upper())


def _amount(value: object) -> object:
    # Text must be plain digits: no signs, exponents, spaces or underscores slip through.
    if isinstance(value, str) and not _AMOUNT_TEXT.fullmatch(value):
        raise ValueError("not a plain decimal")
    return value


def _plain_json(value: Any) -> Any:
    # JSON lines are parsed with exact decimals (for amounts); attributes go back to floats
    # so the JSON column can store them.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_json(item) for item in value]
    return value


CustomerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


class _Row(BaseModel):
    """A checked row; the fields it was given are `model_fields_set`, its source `line`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _line: int = PrivateAttr(default=0)

    @property
    def line(self) -> int:
        return self._line

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}

    @classmethod
    def parse(cls, line: int, values: dict[str, Any], *, today: date) -> Self | RowError:
        try:
            row = cls.model_validate(values, context={"today": today})
        except ValidationError as error:
            return RowError(line, _reason(error.errors()))
        row._line = line
        return row


class CustomerRecord(_Row):
    customer_id: CustomerId
    customer_type: CustomerType
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    birth_date: IsoDate | None = None
    gender: str | None = Field(default=None, max_length=32)
    country: str | None = None
    language: str | None = Field(default=None, max_length=16)
    socio_economic_band: str | None = Field(default=None, max_length=16)
    signup_date: IsoDate | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("birth_date")
    @classmethod
    def _not_born_yet(cls, value: date | None, info: ValidationInfo) -> date | None:
        today = (info.context or {}).get("today") or today_anywhere()
        if value is not None and value > today:
            raise ValueError("in the future")
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None and value not in COUNTRY_CODES:
            raise ValueError("not an ISO 3166 alpha-2 code")
        return value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes(cls, value: Any) -> Any:
        # An empty CSV cell or a JSON null means "no attributes": the column holds {}.
        return {} if value is None else _plain_json(value)


class PurchaseRecord(_Row):
    customer_id: CustomerId
    amount: Annotated[Decimal, BeforeValidator(_amount),
                      Field(gt=0, max_digits=14, decimal_places=2)]
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    purchased_at: Annotated[datetime, BeforeValidator(_timestamp)]


Record: TypeAlias = CustomerRecord | PurchaseRecord
RECORD_OF: dict[Kind, type[CustomerRecord] | type[PurchaseRecord]] = {
    "customers": CustomerRecord, "purchases": PurchaseRecord}


def today_anywhere() -> date:
    return datetime.now(_EARLIEST_ZONE).date()


def parse_record(kind: Kind, line: int, values: dict[str, Any], *,
                 today: date | None = None) -> Record | RowError:
    return RECORD_OF[kind].parse(line, values, today=today or today_anywhere())


def unknown_fields(kind: Kind, names: list[str]) -> str | None:
    """The reason to refuse unknown field names, or None if all are known."""
    unknown = [name for name in names if name not in RECORD_OF[kind].model_fields]
    if not unknown:
        return None
    shown = ", ".join(_shortened(name) for name in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    accepted = ", ".join(RECORD_OF[kind].model_fields)
    return f"unknown fields: {shown}{more} (accepted: {accepted})"


def _shortened(name: str) -> str:
    return name if len(name) <= 40 else name[:40] + "..."


def _reason(errors: list[ErrorDetails]) -> str:
    missing, invalid, extra = [], [], []
    for error in errors:
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            extra.append(field)
        elif error["type"] == "missing" or (error["input"] is None and len(error["loc"]) == 1):
            missing.append(field)
        elif field not in invalid:
            invalid.append(field)
    parts = [f"missing {field} (required: {ACCEPTS.get(field, 'a value')})" for field in missing]
    parts += [f"invalid {field} (expects {ACCEPTS.get(field, 'a valid value')})"
              for field in invalid]
    if extra:
        shown = ", ".join(_shortened(name) for name in extra[:5])
        parts.append(f"unknown fields: {shown}" + (" ..." if len(extra) > 5 else ""))
    return "; ".join(parts)


def _no_constant(_name: str) -> None:
    raise ValueError("NaN and Infinity are not JSON")


# Built once: json.loads with options builds a decoder per call.
_EXACT_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)
_PLAIN_JSON = json.JSONDecoder(parse_constant=_no_constant)


def json_object(text: str, *, exact: bool = True) -> dict[str, Any] | str:
    """The JSON object in `text`, or the reason it is not one; `exact` keeps decimals."""
    try:
        value = (_EXACT_JSON if exact else _PLAIN_JSON).decode(text)
    except (ValueError, RecursionError):
        return "not valid JSON"
    return value if isinstance(value, dict) else "not a JSON object"


# Reading a stream: request bodies arrive in chunks of any size, so lines are re-framed
# here, and only one line or CSV record (capped) is ever held.

MAX_RECORD_BYTES = 1024 * 1024
TOO_LONG = f"longer than {MAX_RECORD_BYTES} bytes"
_BOM = b"\xef\xbb\xbf"


class _Line(NamedTuple):
    number: int
    data: bytes | None  # None: over the cap, dropped unread
    odd_quotes: bool  # for CSV: a quoted field opens or closes on this line


@overload
def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Literal["customers"], *,
              today: date | None = None) -> AsyncIterator[CustomerRecord | RowError]: ...
@overload
def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Literal["purchases"], *,
              today: date | None = None) -> AsyncIterator[PurchaseRecord | RowError]: ...
@overload
def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Kind, *,
              today: date | None = None) -> AsyncIterator[Record | RowError]: ...
async def read_rows(chunks: AsyncIterator[bytes], fmt: Format, kind: Kind, *,
                    today: date | None = None) -> AsyncIterator[Record | RowError]:
    """Rows of a CSV (header first) or JSON-lines body, numbered by physical line."""
    reader = (_JsonLines if fmt == "jsonl" else _CsvRows)(kind, today or today_anywhere())
    async for lines in _lines(chunks, MAX_RECORD_BYTES):
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

    def __init__(self, kind: Kind, today: date) -> None:
        self.kind, self.today = kind, today

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
        return parse_record(self.kind, line.number, values, today=self.today)

    def end(self) -> None:
        return None


class _CsvRows:
    """Rows of CSV records, the first the header. A record ends at a line end outside
    quotes, i.e. once its count of '"' is even (a quote inside a field is doubled)."""

    def __init__(self, kind: Kind, today: date) -> None:
        self.kind, self.today = kind, today
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
        self.size += len(line.data) + 1 if line.data is not None else MAX_RECORD_BYTES + 1
        if self.size > MAX_RECORD_BYTES:
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
        return parse_record(self.kind, self.start, values, today=self.today)


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
    if len(set(names)) != len(names):
        return "a column is named twice"
    required = [name for name, field in RECORD_OF[kind].model_fields.items()
                if field.is_required()]
    missing = [name for name in required if name not in names]
    return (unknown_fields(kind, names) or
            (f"missing columns: {', '.join(missing)}" if missing else names))
