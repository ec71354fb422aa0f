"""One definition of a moment a caller gives (services/core/moments.py), used by every
API body (http.Timestamp) and by the purchase import: RFC 3339 text with its offset,
whose UTC moment is a date. And of a day (moments.parse_date), used by a calendar's
holidays, the customer import's dates and an API body's (http.Day): YYYY-MM-DD."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from services.core import config_files, http, moments
from services.router import table_calendars
from services.segmenter import rows

TIMESTAMP = TypeAdapter(http.Timestamp)
DAY = TypeAdapter(http.Day)
TODAY = datetime(2026, 12, 3, tzinfo=UTC).date()


def imported(moment: object) -> bool:
    row = rows.parse_record("purchases", 1, {"customer_id": "c-1", "amount": "1.00",
                                             "currency": "EUR", "purchased_at": moment},
                            today=TODAY)
    return not isinstance(row, rows.RowError)


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-01-31T09:30:00+01:00", datetime(2026, 1, 31, 8, 30, tzinfo=UTC)),
    ("2026-01-31t08:30:00z", datetime(2026, 1, 31, 8, 30, tzinfo=UTC)),
    ("2026-01-31T08:30:00.123456789Z", datetime(2026, 1, 31, 8, 30, 0, 123456, tzinfo=UTC)),
    ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC)),
])
def test_the_api_and_the_import_take_the_same_moments(text: str, moment: datetime) -> None:
    assert TIMESTAMP.validate_python(text) == moment
    assert imported(text)


@pytest.mark.parametrize("text", [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",  # no UTC date
    "2026-01-31 09:30:00+01:00", "2026-01-31T09:30+01:00", "2026-01-31T09:30:00",
    "2026-02-30T09:30:00Z", "20260131T093000Z", 1767225600, 1767225600.5, True, None,
    # An offset's minutes past 59 (read as +01:00 before), digits that are not ASCII.
    "2026-01-31T09:30:00+00:60", "2026-01-31T09:30:00+24:00",
    "\u0662\u0660\u0662\u0666-01-31T09:30:00Z",
])
def test_the_api_and_the_import_refuse_the_same_moments(text: object) -> None:
    with pytest.raises(ValidationError) as refused:
        TIMESTAMP.validate_python(text)
    [error] = refused.value.errors()
    assert error["type"] == "value_error"
    if isinstance(text, str) and text.startswith(("0001", "9999")):
        assert moments.OUTSIDE_UTC in error["msg"]
    elif text != "2026-02-30T09:30:00Z":  # a day February has not: said by the calendar
        assert f"not an RFC 3339 timestamp with offset, e.g. {moments.EXAMPLE}" in error["msg"]
    assert not imported(text)


def test_a_moment_from_our_own_code_is_taken_as_it_is() -> None:
    moment = datetime(2026, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    assert TIMESTAMP.validate_python(moment) is moment
    with pytest.raises(ValidationError):
        TIMESTAMP.validate_python(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))


def holiday(text: str) -> date | None:
    """The holiday a calendar in a routing table written `- {text}` takes, or None."""
    try:
        calendar = table_calendars.parse_calendar(config_files.load_yaml(
            "routing.yaml", "time_zone: UTC\nhours: {mon: '09:00-17:00'}\n"
                            f"holidays:\n  - {text}\n"), source="routing.yaml", line=1,
            entry="care")
    except config_files.ConfigError:
        return None
    [day] = calendar.holidays
    return day


def born(text: str) -> date | None:
    """The birth date a customer imported with `text` has, or None."""
    row = rows.parse_record("customers", 1, {"customer_id": "c-1",
                                             "customer_type": "individual",
                                             "birth_date": text}, today=TODAY)
    return None if isinstance(row, rows.RowError) else row.birth_date  # type: ignore[union-attr]


def given(value: object) -> date | None:
    """The day an API body (PUT /v1/customers' birth_date, signup_date) takes, or None;
    refused with what is accepted."""
    try:
        return DAY.validate_python(value)
    except ValidationError as refused:
        [error] = refused.errors()
        assert error["type"] == "value_error"
        if value != "2026-02-30":  # a day February has not: said by the calendar
            assert moments.DATE.words in error["msg"]
        return None


@pytest.mark.parametrize("value", [
    "2026-12-25T00:00:00+05:00", "2026-12-25 00:00", "2026-12-25T00:00:00Z",
    b"2026-12-25", 1767225600, 1767225600.5, True, None,
    datetime(2026, 12, 25, tzinfo=UTC),
])
def test_an_api_body_refuses_what_the_import_refuses(value: object) -> None:
    """A time of day, bytes, a number (seconds since 1970 to pydantic) or a datetime is
    no day, in an API body as in an import row (PUT /v1/customers took them once)."""
    assert given(value) is None
    if isinstance(value, str):
        assert born(value) is None


def test_a_day_from_our_own_code_is_taken_as_it_is() -> None:
    assert given(date(2026, 12, 25)) == date(2026, 12, 25)


def test_the_schema_still_says_a_date() -> None:
    assert DAY.json_schema() == {"type": "string", "format": "date"}


@pytest.mark.parametrize(("text", "day"), [
    ("2025-12-25", date(2025, 12, 25)), ("2026-W01", None), ("2026W527", None),
    ("20261225", None), ("2026-12-25T00:00:00", None), ("2026-02-30", None),
    ("2026-1-05", None), ("\u0662\u0660\u0662\u0665-12-25", None),
])
def test_a_holiday_and_the_import_take_the_same_days(text: str, day: date | None) -> None:
    """YYYY-MM-DD in ASCII digits, a day the calendar has; not an ISO week date
    (2026-W01 is 2025-12-29) nor a compact one, which date.fromisoformat alone takes."""
    assert holiday(text) == day
    assert born(text) == day
    assert given(text) == day
    if day is None:
        with pytest.raises(ValueError):
            moments.parse_date(text)
    else:
        assert moments.parse_date(text) == day
