"""The departments' measured response rates: how long, in business time, a department
took per first response over a window of history. Pure decision code.

A department is busy while at least one of its tickets awaits a first response (is in
its backlog, from its routing: `Served.in_backlog`); over that busy time (counted only
while its calendar is open) it gave its first responses, so the mean service time is the
busy business time over the number of first responses. For one agent answering first
come, first served this is exactly the mean of the service times, whatever their
distribution.

A department whose first responses took no business time at all (each given while its
calendar was closed, or at the instant its ticket came in) answered nonetheless: it is
taken to answer in a second, the floor of every measure, rather than in no time (an
exponential draw needs a positive mean) or never (as a department with no measured rate
is replayed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from services.router import calendars
from services.simulator.engine import Served

FASTEST_MEAN_SERVICE_SECONDS = 1.0


def mean_service_seconds(served: Iterable[Served],
                         calendar_of: Callable[[str], calendars.Calendar | None],
                         ) -> dict[str, float]:
    """Per department that answered at least one ticket: seconds per first response, at
    least FASTEST_MEAN_SERVICE_SECONDS."""
    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for ticket in served:
        since, until = ticket.in_backlog()
        if until is not None:
            busy[ticket.department].append((since, until))
    measured = {}
    for department, intervals in busy.items():
        calendar = calendar_of(department)
        total = sum((calendars.business_time(start, end, calendar)
                     for start, end in _merged(intervals)), timedelta(0))
        measured[department] = max(total.total_seconds() / len(intervals),
                                   FASTEST_MEAN_SERVICE_SECONDS)
    return measured


def _merged(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
