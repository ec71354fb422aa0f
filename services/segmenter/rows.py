"""Bulk-import rows: one CSV record or JSON line checked and typed, or refused with a reason.

Pure decisions: no database, no web framework. Reasons name fields and what they accept but
never echo a value, since rows carry personal data and reasons end up in responses and logs.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import ErrorDetails

from services.core import identifiers, json_text, moments, request_bodies, text_forms, tickets
from services.segmenter.profiles import MAX_CUSTOMER_ATTRIBUTES, TEXT_LIMITS, CustomerType

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

# How far ahead of our clock a purchase may be dated, as the clock of the system that
# sold it may run; one dated later would count as recent spend until that date comes,
# raising the customer's tier for as long.
PURCHASE_CLOCK_SKEW = moments.CLOCK_SKEW  # a purchase dated by a clock a little ahead
PURCHASED_BY_NOW = (f"by now (up to {PURCHASE_CLOCK_SKEW.total_seconds() / 60:g} minutes"
                    " later, as a clock running from ours puts it)")

CURRENCY = text_forms.Form(r"^[A-Z]{3}$", "a currency's ISO 4217 code: 3 upper-case letters"
                           " A-Z, such as EUR")


# What each field accepts, as told to whoever sent a bad row.
def _text(field: str) -> str:
    """What a text field takes (tickets.Text: no NUL, no lone surrogate)."""
    return f"text of at most {TEXT_LIMITS[field]} characters, without the NUL character"


ACCEPTS = {
    "customer_id": f"{identifiers.ID.words}, at most {identifiers.MAX_LENGTH} characters",
    "customer_type": "one of individual, organisation, government",
    "name": _text("name"),
    "email": _text("email"),
    "birth_date": "an ISO date (YYYY-MM-DD), not in the future",
    "gender": _text("gender"),
    "country": "an ISO 3166 alpha-2 code in upper case, e.g. NL",
    "language": _text("language"),
    "socio_economic_band": _text("socio_economic_band"),
    "signup_date": "an ISO date (YYYY-MM-DD)",
    "attributes": f"a JSON object of at most {MAX_CUSTOMER_ATTRIBUTES} attributes, each named"
                  " by 1-64 characters and valued by text of at most"
                  f" {tickets.MAX_ATTRIBUTE_TEXT:,} characters, a number or true/false",
    "amount": "a decimal number above 0 with at most 2 decimals and 12 digits before the point",
    "currency": CURRENCY.words,
    "purchased_at": f"an RFC 3339 timestamp with offset, e.g. {moments.EXAMPLE}, within the"
                    f" years 1 to 9999 in UTC, and {PURCHASED_BY_NOW}",
}

# Money as text: ASCII digits (\d would take any script's), at most two decimals checked
# by the field.
_AMOUNT_TEXT = re.compile(r"[0-9]+(\.[0-9]+)?")
MAX_AMOUNT = Decimal("999999999999.99")
# Below this, four units of a float's last place are under a hundredth of a cent.
FLOAT_CENTS_BELOW = 1e11
# "Not in the future" anywhere: it is already tomorrow at UTC+14 while today in UTC.
_EARLIEST_ZONE = timezone(timedelta(hours=14))




def _amount(value: object) -> object:
    """A purchase's amount as given: text must be plain digits (no signs, exponents,
    spaces, underscores or other scripts' digits slip through); a JSON number meant as
    money (19.99 arrives as the float nearest to it) is that amount, not one with
    seventeen decimal places. Anything else is left to the field to refuse."""
    if isinstance(value, str) and not _AMOUNT_TEXT.fullmatch(value):
        raise ValueError("not a plain decimal")
    if isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_AMOUNT:
        # As written (its shortest form), if that has at most two decimals. Else a sum a
        # client made of prices (0.1 + 0.2 is 0.30000000000000004) is its cents when it is
        # a few units of the float's last place from them; under FLOAT_CENTS_BELOW only,
        # where those units are far below a hundredth of a cent, so that 123456.789 or
        # 600000000000.0001 is refused for its decimals, not rounded.
        written = Decimal(repr(value))
        cents = Decimal(round(value * 100)) / 100
        if written == written.quantize(Decimal("0.01")) or abs(value) >= FLOAT_CENTS_BELOW \
                or abs(value - float(cents)) > 4 * math.ulp(value):
            return written
        return cents
    return value


# A purchase's amount, the one rule for imports and the API.
Amount = Annotated[Decimal, BeforeValidator(_amount),
                   Field(gt=0, max_digits=14, decimal_places=2)]


def _plain_attributes(value: Any) -> Any:
    # An empty CSV cell or a JSON null means "no attributes": the column holds {}. JSON
    # lines are parsed with exact decimals (for amounts); attribute values go back to
    # floats, the numbers CustomerAttributes takes.
    if value is None:
        return {}
    if isinstance(value, dict):
        return {key: float(item) if isinstance(item, Decimal) else item
                for key, item in value.items()}
    return value


def _country_code(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise ValueError("not an ISO 3166 alpha-2 code")
    return value


CustomerId = tickets.Identifier
# A customer's country, as the admin API (CustomerIn) and the import both take it; the
# schema lists the codes, so what it says is valid is what is accepted.
CountryCode = Annotated[request_bodies.UnicodeText, AfterValidator(_country_code), WithJsonSchema({
    "type": "string", "enum": sorted(COUNTRY_CODES),
    "description": "ISO 3166-1 alpha-2 in upper case, e.g. NL"})]
# A customer's own data for segment rules, as the admin API (CustomerIn) and the import
# both take it: flat, each value text, a number or true/false.
CustomerAttributes = Annotated[
    dict[tickets.AttributeName, tickets.AttributeValue],
    tickets.attributes_schema(MAX_CUSTOMER_ATTRIBUTES,
                              "The customer's own data, for segment rules"),
    request_bodies.at_most_entries(MAX_CUSTOMER_ATTRIBUTES)]
IsoDate = Annotated[date, BeforeValidator(moments.parse_date)]


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


class _Row(request_bodies.RequestBody):
    """A checked row; the fields it was given are `model_fields_set`, its source `line`."""

    model_config = ConfigDict(frozen=True)
    _line: int = PrivateAttr(default=0)

    @property
    def line(self) -> int:
        return self._line

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}

    @classmethod
    def parse(cls, line: int, values: dict[str, Any], *, today: date,
              now: datetime | None = None) -> Self | RowError:
        try:
            row = cls.model_validate(values, context={"today": today, "now": now})
        except ValidationError as error:
            return RowError(line, _reason(error.errors()))
        row._line = line
        return row


class CustomerRecord(_Row):
    customer_id: CustomerId
    customer_type: CustomerType
    name: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["name"])
    email: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["email"])
    birth_date: IsoDate | None = None
    gender: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["gender"])
    country: CountryCode | None = None
    language: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["language"])
    socio_economic_band: tickets.Text | None = Field(
        default=None, max_length=TEXT_LIMITS["socio_economic_band"])
    signup_date: IsoDate | None = None
    attributes: Annotated[CustomerAttributes, BeforeValidator(_plain_attributes)] = Field(
        default_factory=dict)

    @field_validator("birth_date")
    @classmethod
    def _not_born_yet(cls, value: date | None, info: ValidationInfo) -> date | None:
        today = (info.context or {}).get("today") or today_anywhere()
        if value is not None and value > today:
            raise ValueError("in the future")
        return value


class PurchaseRecord(_Row):
    customer_id: CustomerId
    amount: Amount
    currency: str = Field(pattern=CURRENCY.pattern)
    purchased_at: Annotated[datetime, BeforeValidator(moments.parse)]

    @field_validator("purchased_at")
    @classmethod
    def _not_sold_yet(cls, value: datetime, info: ValidationInfo) -> datetime:
        now = (info.context or {}).get("now") or datetime.now(UTC)
        if purchased_in_future(value, now=now):
            raise ValueError("in the future")
        return value


def purchased_in_future(purchased_at: datetime, *, now: datetime) -> bool:
    """Whether a purchase is dated later than our clock, past PURCHASE_CLOCK_SKEW."""
    return purchased_at > now + PURCHASE_CLOCK_SKEW


Record: TypeAlias = CustomerRecord | PurchaseRecord
RECORD_OF: dict[Kind, type[CustomerRecord] | type[PurchaseRecord]] = {
    "customers": CustomerRecord, "purchases": PurchaseRecord}


def today_anywhere() -> date:
    return datetime.now(_EARLIEST_ZONE).date()


def parse_record(kind: Kind, line: int, values: dict[str, Any], *,
                 today: date | None = None, now: datetime | None = None) -> Record | RowError:
    return RECORD_OF[kind].parse(line, values, today=today or today_anywhere(), now=now)


def unknown_columns(kind: Kind, names: list[str]) -> str | None:
    """The reason to refuse a header line's unknown column names, or None if all are
    known. The columns are named by position, not by their text: a file sent without its
    header line has its first row read as one, and that row's values (a name, an email)
    must not come back in the answer; a hint says so when no column is known."""
    fields = RECORD_OF[kind].model_fields
    unknown = [str(position) for position, name in enumerate(names, start=1)
               if name not in fields]
    if not unknown:
        return None
    shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more"
                                       if len(unknown) > 10 else "")
    missing = " (is the header line missing?)" if len(unknown) == len(names) else ""
    return (f"unknown columns at positions {shown}{missing}; accepted: "
            f"{', '.join(fields)}")


def _reason(errors: list[ErrorDetails]) -> str:
    missing, invalid, extra = [], [], []
    for error in errors:
        if not error["loc"]:  # about the row whole (request_bodies: too many fields)
            return request_bodies.message_of(error)
        field = str(error["loc"][0])
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
        parts.append(_unknown_fields(extra))
    return "; ".join(parts)


def _unknown_fields(names: list[str]) -> str:
    """Unknown keys: named only when one is a field's name (another kind of row's, e.g. a
    purchase's `amount` in a customer row); the others counted, with the fields they
    read close to, never repeated themselves: a key may be a value put in a key's place
    (an email, a name), which must not come back in the answer."""
    named = [name for name in names if name in ACCEPTS]
    others = [name for name in names if name not in ACCEPTS]
    close = sorted({match for name in others
                    for match in difflib.get_close_matches(name, ACCEPTS, n=1, cutoff=0.8)})
    parts = [f"unknown fields: {', '.join(named[:5])}"] if named else []
    if others:
        count = f"{len(others)} {'other ' if named else ''}unknown field" \
            f"{'s' if len(others) != 1 else ''}"
        parts.append(count + (f" (close to {', '.join(close)})" if close else ""))
    return "; ".join(parts)


def _no_constant(_name: str) -> None:
    raise ValueError("NaN and Infinity are not JSON")


# Built once: json.loads with options builds a decoder per call. A key given twice in
# an object is refused, as in a request body (json_text).
_EXACT_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant,
                               object_pairs_hook=json_text.unique_object)
_PLAIN_JSON = json.JSONDecoder(parse_constant=_no_constant,
                               object_pairs_hook=json_text.unique_object)


def json_object(text: str, *, exact: bool = True) -> dict[str, Any] | str:
    """The JSON object in `text`, or the reason it is not one; `exact` keeps decimals."""
    try:
        value = (_EXACT_JSON if exact else _PLAIN_JSON).decode(text)
    except json_text.RepeatedKeys as repeated:
        # Not named: a row's keys may be its values (attributes), which reasons never echo.
        [(_path, count)] = repeated.repeated[:1]
        return (f"a key is given {count} times in one object: keys must be unique in every"
                " JSON object; send it once")
    except (ValueError, RecursionError):
        return "not valid JSON"
    return value if isinstance(value, dict) else "not a JSON object"
