"""Reading a department's calendar from the routing table: time zone, opening hours per
weekday, holidays (the calendar itself, and business time, are in calendars.py)."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.core import moments
from services.core.config_files import ConfigError, item_line, line_of, unknown_keys
from services.router import calendars

_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")

# Files of the time zone database that name no place but the host's own setting: a
# calendar in one would open at other hours on each machine (and container) it runs on.
_HOSTS_OWN_ZONES = frozenset({"localtime", "posixrules"})


@functools.cache
def _zone_names() -> frozenset[str]:
    """The time zones a calendar may name: the database's own names, written as it writes
    them. Not a name that opens only where files' names ignore case (`europe/paris`),
    nor a copy under `posix/` or `right/` (whose clocks count leap seconds: 27 s off)."""
    return frozenset(zoneinfo.available_timezones()) - _HOSTS_OWN_ZONES


def parse_calendar(document: Any, *, source: str, line: int | None,
                   entry: str) -> calendars.Calendar:
    """{time_zone, hours: {mon-fri: "08:00-18:00", sat: "10:00-12:00, 13:00-15:00"},
    holidays: [2025-12-25, ...]}; weekdays not named are closed."""
    line = line_of(document) or line

    def fail(problem: str, at: int | None = None) -> ConfigError:
        return ConfigError(source, at or line, entry, f"calendar: {problem}")

    if not isinstance(document, dict):
        raise fail("must be a mapping with time_zone, hours and holidays")
    unknown = unknown_keys(document, ("time_zone", "hours", "holidays"))
    if unknown:
        raise fail(f"unknown keys {unknown}; accepted: time_zone, hours, holidays")
    zone_name = document.get("time_zone")
    try:
        if not isinstance(zone_name, str) or zone_name not in _zone_names():
            raise ValueError
        zone = ZoneInfo(zone_name)
    except (ValueError, OSError, ZoneInfoNotFoundError) as exc:
        raise fail(f"time_zone {zone_name!r} is not an IANA time zone like"
                   " 'Europe/Amsterdam' (written as the database writes it)") from exc
    hours = document.get("hours")
    if not isinstance(hours, dict):
        raise fail("hours must map weekdays to opening hours, e.g. mon-fri: '08:00-18:00'")
    try:
        weekly = _weekly_hours(hours)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    listed = document.get("holidays")
    listed = [] if listed is None else listed
    if not isinstance(listed, list):
        raise fail("holidays must be a list of dates like 2025-12-25")
    holidays: set[date] = set()
    for index, value in enumerate(listed):
        try:
            holidays.add(_holiday(value))
        except ValueError as exc:
            raise fail(str(exc), item_line(listed, index, line)) from exc
    if not any(weekly):
        raise fail("opens on no day of the week; leave the calendar out for 24/7")
    return calendars.Calendar(zone, weekly, frozenset(holidays))


def _weekly_hours(hours: Mapping[str, Any]) -> tuple[tuple[calendars.Window, ...], ...]:
    per_day: list[list[calendars.Window]] = [[] for _ in calendars.WEEKDAYS]
    named: set[int] = set()
    for key, value in hours.items():
        if key == "__line__":
            continue
        days = _days(str(key))
        if named & set(days):
            twice = calendars.WEEKDAYS[min(named & set(days))]
            raise ValueError(f"{twice} is given twice in hours")
        named |= set(days)
        for opens, closes in _windows(key, value):
            for weekday in days:
                if closes > opens:
                    per_day[weekday].append((opens, closes))
                else:  # overnight: open until midnight, then on into the next day
                    per_day[weekday].append((opens, calendars.MINUTES_A_DAY))
                    if closes:
                        per_day[(weekday + 1) % 7].append((0, closes))
    return tuple(_merged(windows) for windows in per_day)


def _days(key: str) -> list[int]:
    days: list[int] = []
    for part in key.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in calendars.WEEKDAYS or (last and last not in calendars.WEEKDAYS):
            raise ValueError(f"{key!r} is not a weekday or range like 'mon-fri' or 'sat,sun'")
        start, end = calendars.WEEKDAYS.index(first), calendars.WEEKDAYS.index(last or first)
        if end < start:
            raise ValueError(f"{key!r}: a range runs from Monday to Sunday, like 'mon-fri'")
        days.extend(range(start, end + 1))
    return days


def _windows(key: str, value: Any) -> list[calendars.Window]:
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
        if window[0] == window[1] or window[0] == calendars.MINUTES_A_DAY:
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


def _merged(windows: list[calendars.Window]) -> tuple[calendars.Window, ...]:
    merged: list[calendars.Window] = []
    for opens, closes in sorted(windows):
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return tuple(merged)


def _holiday(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return moments.parse_date(value)
    except ValueError:
        raise ValueError(f"holiday {value!r} is not {moments.DATE.words}") from None
