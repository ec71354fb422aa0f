"""First-response targets: met or missed, and the histogram edges they call for.
Pure decision code.

A ticket's target is met when its first response came no later than its deadline, and
missed when it came later or when the deadline passed with no response at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

from services.core import durations

Outcome = Literal["met", "missed"]
OUTCOMES: tuple[Outcome, ...] = ("met", "missed")

# Bucket edges in seconds: minutes for chat, hours and days for e-mail.
DEFAULT_RESPONSE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
                            3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0)
TARGET_KEY = "first_response_target"


def first_response_outcome(responded_at: datetime | None, deadline: datetime | None,
                           as_of: datetime | None = None) -> Outcome | None:
    """met, missed, or None while it cannot be told yet (or there is no deadline).

    `as_of` is the moment up to which every response is known: without it, only a
    response can decide; with it, a deadline passed by then without one is missed."""
    if deadline is None:
        return None
    if responded_at is not None:
        return "met" if responded_at <= deadline else "missed"
    if as_of is not None and as_of > deadline:
        return "missed"
    return None


def parse_duration(value: object) -> float | None:
    """A target in seconds, read with the routing table's own grammar ('15m', '4h',
    '1h30m'); None if it is not one (the router refuses such a table anyway)."""
    if not isinstance(value, str):
        return None
    try:
        return durations.parse_duration(value).total_seconds()
    except ValueError:
        return None


def target_values(document: Any) -> Iterator[object]:
    """Every `first_response_target` value in a routing table, wherever it stands (per
    route, as a default, under service levels ...): the file's layout is still moving."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            if key == TARGET_KEY:
                if isinstance(value, Mapping):  # e.g. per tier: {most_valuable: 15m, ...}
                    yield from value.values()
                else:
                    yield value
            else:
                yield from target_values(value)
    elif isinstance(document, list):
        for item in document:
            yield from target_values(item)


def targets_in(document: Any) -> tuple[list[float], list[str]]:
    """(target seconds, values that could not be read) of a routing table document."""
    seconds: list[float] = []
    unreadable: list[str] = []
    for value in target_values(document):
        parsed = parse_duration(value)
        if parsed is None:
            unreadable.append(repr(value)[:40])
        else:
            seconds.append(parsed)
    return seconds, unreadable


def bucket_edges(defaults: Iterable[float], targets: Iterable[float]) -> tuple[float, ...]:
    """The default edges with every target added: 'answered within the target' is then a
    bucket count, exact rather than interpolated."""
    return tuple(sorted({float(edge) for edge in [*defaults, *targets]}))
