"""Durations as people write them: '15m', '4h', '2d', '1h30m', '45s'. One grammar for
the routing table, the metrics service's reading of it, the stats window and the
department tool. Pure."""

from __future__ import annotations

import re
from datetime import timedelta

UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # largest first, as written
# The longest duration a setting may have: past it a deadline or an aging step means
# "never", and sums with it could leave the range of dates.
LONGEST = timedelta(days=366)
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_MINUTES_A_DAY = 24 * 60


def parse_duration(text: str, *, longest: timedelta = LONGEST) -> timedelta:
    """'15m', '4h', '2d', '1h30m', '45s' -> timedelta (positive, at most `longest`)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like '15m', '4h', '2d' or '1h30m'")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    # Summed as whole seconds first: timedelta itself overflows past 999999999 days.
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if total > longest.total_seconds():
        raise ValueError(f"{text!r} is longer than {format_duration(longest)}, the longest"
                         " allowed")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """timedelta -> '1d', '4h', '1h30m', '45s' (the inverse of parse_duration)."""
    total = int(value.total_seconds())
    minutes, seconds = divmod(total, 60)
    days, rest = divmod(minutes, _MINUTES_A_DAY)
    hours, minutes = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"),
                                                (seconds, "s")) if n)
    return text or "0m"
