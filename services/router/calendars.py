"""Opening hours and business-time deadlines. Pure decision code; time is passed in.

A calendar is a time zone, opening hours per weekday (local wall-clock times) and
holidays (whole local dates, closed). Business time is real elapsed time while the
calendar is open, so an interval that spans a DST change counts the hour it gains or
loses. Overnight hours like "22:00-06:00" open on the named day and close on the next;
a holiday closes its whole date, including the early hours of a shift that began the
evening before. Calendars are read from the routing table by table_calendars.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Mode = Literal["business", "always"]
Window = tuple[int, int]  # minutes after local midnight, [opens, closes), closes <= 1440

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_A_DAY = 24 * 60
_SEARCH_LIMIT_DAYS = 3700  # a calendar that stays closed for ten years never opens
_WINDOWS_KEPT = 4096  # dates a calendar keeps the windows of (Calendar.windows)
_NO_TIME = timedelta(0)
_A_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Calendar:
    time_zone: ZoneInfo
    hours: tuple[tuple[Window, ...], ...]  # seven entries, Monday first
    holidays: frozenset[date] = frozenset()

    # Each date's windows, computed once (the calendar is immutable; a reloaded table
    # brings new Calendar objects): every ticket of a day asks for the same few dates,
    # several times each (its deadline, the next opening, its clocks'), and a cache of
    # the calendar's own spares hashing the whole calendar a look-up.
    _windows: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def windows(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The open intervals of a local date, as UTC instants."""
        known = self._windows
        found = known.get(day)
        if found is None:
            if len(known) >= _WINDOWS_KEPT:
                known.clear()
            found = known[day] = _open_windows(self, day)
        return found

    def is_open(self, at: datetime) -> bool:
        _require_aware(at)
        day = at.astimezone(self.time_zone).date()
        return any(start <= at < end for start, end in self.windows(day))

    def opens_at(self, at: datetime) -> datetime:
        """`at` when open, else the next opening (UTC)."""
        return deadline(at, timedelta(0), self)

    def _instant(self, day: date, minutes: int) -> datetime:
        day, minutes = (day + timedelta(days=1), 0) if minutes == MINUTES_A_DAY else (day, minutes)
        local = datetime.combine(day, time(minutes // 60, minutes % 60), self.time_zone)
        # Wall-clock times in a DST gap resolve with the offset before the change
        # (02:30 becomes 03:30 summer time); ambiguous ones to the first occurrence.
        return local.astimezone(UTC)


def deadline(start: datetime, target: timedelta, calendar: Calendar | None,
             mode: Mode = "business") -> datetime:
    """`start` plus `target` of business time (UTC): the clock runs only while open.

    Without a calendar, or in mode "always", it is plain elapsed time.
    """
    _require_aware(start)
    if target < _NO_TIME:
        raise ValueError(f"a target cannot be negative: {target}")
    start = start.astimezone(UTC)
    if calendar is None or mode == "always":
        return start + target
    remaining = target
    day = start.astimezone(calendar.time_zone).date()
    for _ in range(_SEARCH_LIMIT_DAYS):
        for opens, closes in calendar.windows(day):
            if closes <= start:
                continue
            begin = max(opens, start)
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        day += _A_DAY
    raise ValueError("the calendar does not open within ten years")


def guaranteed_business_time(calendar: Calendar) -> timedelta:
    """Business time the calendar is sure to give within the span `deadline` searches,
    from any start: its whole weeks, less every holiday closing its longest day and an
    hour lost to each change to summer time. A target longer than this may find no
    deadline."""
    weekly = sum(closes - opens for day in calendar.hours for opens, closes in day)
    longest_day = max(sum(closes - opens for opens, closes in day) for day in calendar.hours)
    whole_weeks = _SEARCH_LIMIT_DAYS // 7 - 1
    summer_time_changes = _SEARCH_LIMIT_DAYS // 365 + 1
    minutes = whole_weeks * weekly - len(calendar.holidays) * longest_day \
        - summer_time_changes * 60
    return timedelta(minutes=max(minutes, 0))


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a time zone is required: {at.isoformat()} is naive")


def _open_windows(calendar: Calendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    if day in calendar.holidays:
        return ()
    found = []
    for opens, closes in calendar.hours[day.weekday()]:
        start, end = calendar._instant(day, opens), calendar._instant(day, closes)
        if start < end:  # a window entirely inside a DST gap has no length
            found.append((start, end))
    return tuple(found)


def business_time(start: datetime, end: datetime, calendar: Calendar | None) -> timedelta:
    """The business time between two instants: what a clock that ran from `start` to
    `end` has spent (the inverse of `deadline`). Without a calendar, elapsed time."""
    _require_aware(start)
    _require_aware(end)
    if end <= start:
        return timedelta(0)
    if calendar is None:
        return end - start
    spent = timedelta(0)
    # The day before: an overnight window of the evening before reaches into `start`'s day.
    day = start.astimezone(calendar.time_zone).date() - timedelta(days=1)
    last = end.astimezone(calendar.time_zone).date()
    while day <= last:
        for opens, closes in calendar.windows(day):
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta(0):
                spent += overlap
        day += timedelta(days=1)
    return spent
