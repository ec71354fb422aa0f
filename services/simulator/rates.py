"""The departments' measured response rates: how long, in business time, a department
took per first response over a window of history. Pure decision code.

A department is busy while at least one of its tickets awaits a first response; over
that busy time (counted only while its calendar is open) it gave its first responses, so
the mean service time is the busy business time over the number of first responses. For
one agent answering first come, first served this is exactly the mean of the service
times, whatever their distribution.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from services.router import calendars
from services.simulator.engine import Served


def mean_service_seconds(served: Iterable[Served],
                         calendar_of: Callable[[str], calendars.Calendar | None],
                         ) -> dict[str, float]:
    """Per department that answered at least one ticket: seconds per first response."""
    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for ticket in served:
        if ticket.first_response_at is not None:
            busy[ticket.department].append((ticket.received_at, ticket.first_response_at))
    measured = {}
    for department, intervals in busy.items():
        calendar = calendar_of(department)
        total = sum((calendars.business_time(start, end, calendar)
                     for start, end in _merged(intervals)), timedelta(0))
        measured[department] = total.total_seconds() / len(intervals)
    return measured


def _merged(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
