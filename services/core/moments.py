"""A moment as callers give it: RFC 3339 text with its offset (a date, 'T', a time to the
second with up to nine decimals, then 'Z' or +hh:mm), whose UTC moment every store can
hold. `0001-01-01T00:00:00+01:00` is valid RFC 3339, but its UTC moment is no date
Python, SQLite or PostgreSQL can hold. One definition for every API body, import row,
record's CloudEvents time (`ce_time`) and the simulator's command line. A day as they
give it (`parse_date`): YYYY-MM-DD. Pure."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from services.core import text_forms

# How far another system's clock (a reporter's, a platform's, an importer's) may run from
# ours, either way: a moment that little outside what is plausible is taken, not refused.
CLOCK_SKEW = timedelta(minutes=5)

EXAMPLE = "2026-01-31T09:30:00+01:00"
OUTSIDE_UTC = "outside the years 1 to 9999 once converted to UTC"
# ASCII digits only, and an offset's hours 00-23 and minutes 00-59 (RFC 3339's
# time-numoffset).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)",
    re.ASCII)
# A day: YYYY-MM-DD in ASCII digits, as a calendar's holidays and an import row's dates
# are written (date.fromisoformat alone also takes ISO week dates and compact forms:
# 2026-W01 is 2025-12-29, 20261225 a YAML integer).
DATE = text_forms.Form(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "a date like 2025-12-25")


def parse_date(text: object) -> date:
    """The day `text` gives (DATE); ValueError if it gives none (2025-02-30 too)."""
    if not isinstance(text, str) or not DATE.fullmatch(text):
        raise ValueError(f"not {DATE.words}")
    return date.fromisoformat(text)


def parse(text: object) -> datetime:
    """The moment `text` gives; ValueError, saying what is accepted, if it gives none."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 timestamp with offset, e.g. {EXAMPLE}")
    return within_utc(datetime.fromisoformat(text.upper()))


def within_utc(moment: datetime) -> datetime:
    """`moment` unchanged, if its UTC moment is a date; else ValueError."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUTSIDE_UTC) from None
    return moment
