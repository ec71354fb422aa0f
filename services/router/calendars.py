"""Opening hours and business-time deadlines. Pure decision code; time is passed in.

A calendar is a time zone, opening hours per weekday (local wall-clock times) and
holidays (whole local dates, closed). Business time is real elapsed time while the
calendar is open, so an interval that spans a DST change counts the hour it gains or
loses. Overnight hours like "22:00-06:00" open on the named day and close on the next;
a holiday closes its whole date, including the early hours of a shift that began the
evening before.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.core import durations
from services.core.config_files import ConfigError, line_of

Mode = Literal["business", "always"]
Window = tuple[int, int]  # minutes after local midnight, [opens, closes), closes <= 1440

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 24 * 60
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")
_SEARCH_LIMIT_DAYS = 3700  # a calendar that stays closed for ten years never opens


@dataclass(frozen=True)
class Calendar:
    time_zone: ZoneInfo
    hours: tuple[tuple[Window, ...], ...]  # seven entries, Monday first
    holidays: frozenset[date] = frozenset()

    def windows(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The open intervals of a local date, as UTC instants."""
        return _open_windows(self, day)

    def is_open(self, at: datetime) -> bool:
        _require_aware(at)
        day = at.astimezone(self.time_zone).date()
        return any(start <= at < end for start, end in self.windows(day))

    def opens_at(self, at: datetime) -> datetime:
        """`at` when open, else the next opening (UTC)."""
        return deadline(at, timedelta(0), self)

    def _instant(self, day: date, minutes: int) -> datetime:
        day, minutes = (day + timedelta(days=1), 0) if minutes == _DAY else (day, minutes)
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
    if target < timedelta(0):
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
        day += timedelta(days=1)
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


def config_duration(value: Any, *, source: str, line: int | None, entry: str,
                    field: str) -> timedelta:
    if not isinstance(value, str):
        raise ConfigError(source, line, entry, f"{field} must be a duration like '4h'")
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise ConfigError(source, line, entry, f"{field}: {exc}") from exc


def parse_calendar(document: Any, *, source: str, line: int | None, entry: str) -> Calendar:
    """{time_zone, hours: {mon-fri: "08:00-18:00", sat: "10:00-12:00, 13:00-15:00"},
    holidays: [2025-12-25, ...]}; weekdays not named are closed."""
    line = line_of(document) or line

    def fail(problem: str) -> ConfigError:
        return ConfigError(source, line, entry, f"calendar: {problem}")

    if not isinstance(document, dict):
        raise fail("must be a mapping with time_zone, hours and holidays")
    unknown = sorted(set(document) - {"time_zone", "hours", "holidays", "__line__"})
    if unknown:
        raise fail(f"unknown keys {unknown}; accepted: time_zone, hours, holidays")
    zone_name = document.get("time_zone")
    try:
        if not isinstance(zone_name, str):
            raise ValueError
        zone = ZoneInfo(zone_name)
    except (ValueError, OSError, ZoneInfoNotFoundError) as exc:
        raise fail(f"time_zone {zone_name!r} is not an IANA time zone like"
                   " 'Europe/Amsterdam'") from exc
    hours = document.get("hours")
    if not isinstance(hours, dict):
        raise fail("hours must map weekdays to opening hours, e.g. mon-fri: '08:00-18:00'")
    try:
        weekly = _weekly_hours(hours)
        holidays = frozenset(_holiday(value) for value in _holidays(document))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if not any(weekly):
        raise fail("opens on no day of the week; leave the calendar out for 24/7")
    return Calendar(zone, weekly, holidays)


def _weekly_hours(hours: Mapping[str, Any]) -> tuple[tuple[Window, ...], ...]:
    per_day: list[list[Window]] = [[] for _ in WEEKDAYS]
    named: set[int] = set()
    for key, value in hours.items():
        if key == "__line__":
            continue
        days = _days(str(key))
        if named & set(days):
            raise ValueError(f"{WEEKDAYS[min(named & set(days))]} is given twice in hours")
        named |= set(days)
        for opens, closes in _windows(key, value):
            for weekday in days:
                if closes > opens:
                    per_day[weekday].append((opens, closes))
                else:  # overnight: open until midnight, then on into the next day
                    per_day[weekday].append((opens, _DAY))
                    if closes:
                        per_day[(weekday + 1) % 7].append((0, closes))
    return tuple(_merged(windows) for windows in per_day)


def _days(key: str) -> list[int]:
    days: list[int] = []
    for part in key.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"{key!r} is not a weekday or range like 'mon-fri' or 'sat,sun'")
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if end < start:
            raise ValueError(f"{key!r}: a range runs from Monday to Sunday, like 'mon-fri'")
        days.extend(range(start, end + 1))
    return days


def _windows(key: str, value: Any) -> list[Window]:
    if value == "closed":
        return []
    if not isinstance(value, str):
        raise ValueError(f"hours of {key!r} must be text like '08:00-18:00' or 'closed'")
    windows = []
    for part in value.split(","):
        opens, separator, closes = part.strip().partition("-")
        if not separator:
            raise ValueError(f"{key}: {part.strip()!r} is not a range like '08:00-18:00'")
        window = (_minutes(opens, key), _minutes(closes, key))
        if window[0] == window[1] or window[0] == _DAY:
            raise ValueError(f"{key}: {part.strip()!r} opens and closes at the same time;"
                             " use '00:00-24:00' for a whole day")
        windows.append(window)
    return windows


def _minutes(clock: str, key: str) -> int:
    match = _CLOCK.match(clock.strip())
    hour, minute = (int(match.group(1)), int(match.group(2))) if match else (99, 99)
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise ValueError(f"{key}: {clock.strip()!r} is not a time between 00:00 and 24:00")
    return hour * 60 + minute


def _merged(windows: list[Window]) -> tuple[Window, ...]:
    merged: list[Window] = []
    for opens, closes in sorted(windows):
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return tuple(merged)


def _holidays(document: Mapping[str, Any]) -> list[Any]:
    holidays = document.get("holidays")
    if holidays is None:
        return []
    if not isinstance(holidays, list):
        raise ValueError("holidays must be a list of dates like 2025-12-25")
    return holidays


def _holiday(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"holiday {value!r} is not a date like 2025-12-25") from None


@functools.lru_cache(maxsize=4096)
def _open_windows(calendar: Calendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    # Every ticket of a day asks for the same few dates: computed once each (a calendar
    # is immutable; a reloaded table brings new Calendar objects).
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
