"""How many bytes a request body may hold, and how many a credential may send a window
(`INTAKE_BYTE_RATE_LIMIT`): its byte rate read and checked, and when a body refused over
it would fit again. The counting is rate_limits.RateLimits', on limits' sliding window counter;
this module only reads and reckons.

A rate of requests does not bound what they cost: a megabyte of JSON costs the intake
some 63 ms of CPU to read (README, "Measured"), so one platform within its 100 requests
a second could send 100 MiB a second and take several cores."""

from __future__ import annotations

import math

import limits

from services.core import rate_windows, text_forms

# The largest request body a service reads (but its streamed uploads): body_limit.BodyLimit.
MAX_BODY_BYTES = 1 << 20
DEFAULT_BYTE_RATE = "4MiB/second"

_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
ACCEPTED = ("a number of bytes a window, such as 4MiB/second, 240 MiB per minute or"
            " 1048576/second: units B, KiB, MiB, GiB as written, the window in lower case;"
            " one rate, at most one space between its parts ('per' takes one each side),"
            " none around it")
# A budget of body bytes as people write it, INTAKE_BYTE_RATE_LIMIT and a credential's
# `byte_rate_limit` alike (one grammar: the units and the windows as written, in that
# case): the number, its unit, and the window that `limits` reads (rate_windows', as a
# rate of requests takes it). The least it takes, LEAST, is `parse`'s: no pattern can say
# it.
BYTE_RATE = text_forms.Form(
    r"^([1-9][0-9]{0,9}) ?(B|KiB|MiB|GiB)?( ?/ ?| per )"
    rf"({rate_windows.PATTERN})$", ACCEPTED)
# The least a window must hold, in words: `parse` refuses less, saying it, and a
# credential's `byte_rate_limit` is described with it.
LEAST = ("at least 1MiB a window, the largest body a request may send"
         f" ({MAX_BODY_BYTES} bytes)")


def parse(rate: str) -> limits.RateLimitItem:
    """The rate `rate` says, as limits' item of that many bytes a window; ValueError
    saying what is taken. A window must hold the largest body a request may send
    (MAX_BODY_BYTES), or such a body could never be taken."""
    match = BYTE_RATE.fullmatch(rate)
    if match is None:
        raise ValueError(ACCEPTED)
    item = limits.parse(f"{int(match[1]) * _UNITS[match[2]]}/{match[4]}")
    if item.amount < MAX_BODY_BYTES:
        raise ValueError(f"{LEAST}, or such a body is never taken; {ACCEPTED}")
    return item


def check(rate: str) -> str:
    """`rate`, if `parse` takes it; else its ValueError."""
    parse(rate)
    return rate


def seconds_until_fits(*, budget: int, window: float, cost: int, previous: int,
                       previous_ttl: float, current: int, current_ttl: float) -> float:
    """How long until `cost` more bytes fit in a budget of `budget` a `window` seconds,
    as limits' sliding window counter counts it (its `get_sliding_window`: the previous
    window's count and how long it still weighs, the current one's and its time to live,
    which runs a window past the current window's end). A cost fits while
    floor(previous * previous_ttl / window + current) + cost <= budget: the previous
    window's count weighs less as the window slides, until the current window ends and
    its count becomes the previous one, weighing less in turn."""
    if cost > budget:
        return window  # never fits: no body the limits let through is so large
    room = budget - cost + 1  # the weighted count must fall below it
    if math.floor(previous * previous_ttl / window + current) + cost <= budget:
        return 0.0
    if current < room:
        # Within the current window: previous * (previous_ttl - t) / window + current
        # falls below room.
        return max(0.0, previous_ttl - (room - current) * window / previous)
    current_ends_in = current_ttl - window
    return current_ends_in + window * (1 - room / current)
