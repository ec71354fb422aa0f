"""Durations as people write them: '15m', '4h', '2d', '1h30m', '45s'. One grammar for
the routing table, the metrics service's reading of it, the stats window (one term of
it: `parse_window`) and the department tool. Pure."""

from __future__ import annotations

import functools
import re
from datetime import timedelta

UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # largest first, as written
# The longest duration a setting may have: past it a deadline or an aging step means
# "never", and sums with it could leave the range of dates.
LONGEST = timedelta(days=366)
SHORTEST = timedelta(seconds=1)  # the grammar's smallest unit
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_MINUTES_A_DAY = 24 * 60
# A window is one term of the grammar: one number (no leading zero, at most 6 digits).
_ONE_TERM = re.compile(rf"[1-9][0-9]{{0,5}}[{''.join(UNIT_SECONDS)}]")


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


@functools.lru_cache(maxsize=256)
def format_duration(value: timedelta) -> str:
    """timedelta -> '1d', '4h', '1h30m', '45s' (the inverse of parse_duration).
    Remembered: the router writes its table's few targets into every ticket's
    explanation (README "Measured")."""
    total = int(value.total_seconds())
    minutes, seconds = divmod(total, 60)
    days, rest = divmod(minutes, _MINUTES_A_DAY)
    hours, minutes = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"),
                                                (seconds, "s")) if n)
    return text or "0m"


def parse_window(text: str) -> timedelta:
    """A window of statistics, one term of the grammar: '15m', '1h', '7d' -> timedelta
    (at most LONGEST); ValueError says what is accepted."""
    if not _ONE_TERM.fullmatch(text):
        raise ValueError("window must be a positive whole number (at most 6 digits, no"
                         " leading zero) followed by s, m, h or d (for example 15m, 1h, 7d)")
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("window must be at most 366d (8784h, 527040m)") from None


def _whole_numbers_up_to(limit: int) -> str:
    """A regular expression of the whole numbers 1 to `limit`, without leading zeros."""
    digits = str(limit)
    if set(digits) == {"9"}:
        return f"[1-9][0-9]{{0,{len(digits) - 1}}}"
    shorter = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    # Numbers as long as the limit: its first i digits, a smaller digit, then any digits.
    as_long = []
    for i, digit in enumerate(digits):
        lowest, rest = (1 if i == 0 else 0), len(digits) - i - 1
        if int(digit) > lowest:
            as_long.append(f"{digits[:i]}[{lowest}-{int(digit) - 1}]"
                           + (f"[0-9]{{{rest}}}" if rest else ""))
    return "|".join([*shorter, *as_long, digits])


# What parse_window accepts, as one pattern for the API schema (OpenAPI cannot bound
# the number in the text otherwise), so that clients and fuzzers know the 366-day bound.
WINDOW_PATTERN = "^(?:" + "|".join(
    f"(?:{_whole_numbers_up_to(min(999_999, int(LONGEST.total_seconds()) // seconds))}){unit}"
    for unit, seconds in UNIT_SECONDS.items()) + ")$"
