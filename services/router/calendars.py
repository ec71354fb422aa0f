"""Opening hours and business-time deadlines. Pure decision code; time is passed in.

A calendar is a time zone, opening hours per weekday (local wall-clock times) and
holidays (whole local dates, closed). Business time is real elapsed time while the
calendar is open, so an interval that spans a DST change counts the hour it gains or
loses. Overnight hours like "22:00-06:00" open on the named day and close on the next;
a holiday closes its whole date, including the early hours of a shift that began the
evening before. Calendars are read from the routing table by table_calendars.py.
"""

from __future__ import annotations

import functools
import itertools
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
    from any start from 1970 to 2100: at least its whole weeks, less every holiday
    closing its longest day and what its zone's clocks going forward can take. A target
    longer than this may find no deadline."""
    weekly = sum(closes - opens for day in calendar.hours for opens, closes in day)
    longest_day = max(sum(closes - opens for opens, closes in day) for day in calendar.hours)
    whole_weeks = _SEARCH_LIMIT_DAYS // 7 - 1
    given = timedelta(minutes=whole_weeks * weekly - len(calendar.holidays) * longest_day)
    given -= _most_skipped(calendar.time_zone, timedelta(minutes=longest_day))
    return max(given, _NO_TIME)


def _most_skipped(zone: ZoneInfo, longest_day: timedelta) -> timedelta:
    """The most opening time the zone's clocks going forward can take within the span
    `deadline` searches. A change takes at most the time it skips, from one window (the
    one open across its end: wall-clock times in the gap count at the offset before),
    so at most a day's opening hours too."""
    changes = _clocks_forward(zone)
    span = _SEARCH_LIMIT_DAYS // 7 + 2  # in weeks, with room for the weeks sampled
    most = taken = _NO_TIME
    first = 0
    for week, skipped in changes:
        taken += min(skipped, longest_day)
        while changes[first][0] <= week - span:
            taken -= min(changes[first][1], longest_day)
            first += 1
        most = max(most, taken)
    return most


# The years whose changes of clock are counted: tickets' clocks run in them, and the
# database's zones repeat one yearly rule well before their end.
_CHANGES_FROM, _CHANGES_UNTIL = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
_A_WEEK = timedelta(days=7)


@functools.cache
def _clocks_forward(zone: ZoneInfo) -> tuple[tuple[int, timedelta], ...]:
    """Each time the zone's clocks go forward (to summer time, or to a later standard
    offset) from 1970 to 2100, as the week it falls in (counted from 1970) and the time
    it skips. Sampled weekly: no zone of the database goes forward and back within a
    week in those years (a daily and a three-hourly sampling find the same changes)."""
    weeks = (_CHANGES_UNTIL - _CHANGES_FROM) // _A_WEEK
    offsets = [zone.utcoffset(_CHANGES_FROM + week * _A_WEEK) or _NO_TIME
               for week in range(weeks + 1)]
    return tuple((week, later - earlier)
                 for week, (earlier, later) in enumerate(itertools.pairwise(offsets), start=1)
                 if later > earlier)


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
