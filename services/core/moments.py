"""A moment given by a caller (RFC 3339 with an offset) that every store can hold: once
converted to UTC it must still fall within the years 1 to 9999. `0001-01-01T00:00+01:00`
is a valid timestamp whose UTC moment is not a date Python, SQLite or PostgreSQL can
hold. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

OUTSIDE_UTC = "outside the years 1 to 9999 once converted to UTC"


def within_utc(moment: datetime) -> datetime:
    """`moment` unchanged, if its UTC moment is a date; else ValueError."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUTSIDE_UTC) from None
    return moment
