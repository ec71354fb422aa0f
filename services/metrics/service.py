"""The metrics service's use cases, each written once.

The edges only translate: the Kafka stage and the periodic jobs (tracker.py), the stats
API (api.py) and the parity API (parity_api.py) call these with what the bootstrap
(services/metrics/bootstrap.py) wired. Dependencies come in as arguments typed by
protocol, so the unit tests wire recording fakes through the same bootstrap.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import (
    AsyncGenerator,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from services.core import events
from services.metrics import clock_events, departments, parity, stats, timeline
from services.metrics.timeline import Observation, Timeline

if TYPE_CHECKING:
    from services.metrics.parity_store import ParityConfig

logger = logging.getLogger(__name__)

Change = Callable[[Timeline], tuple[Timeline, list[Observation]]]
# Responses may reach us a little after they happened (a department's report in flight,
# this service catching up): a deadline counts as passed unanswered only this much later.
REPORTING_GRACE = timedelta(seconds=15)


class Timelines(Protocol):
    """The timelines as the use cases read them (services/metrics/store.py)."""

    def routed_pages(self, since: datetime, department: str | None = None,
                     ) -> AsyncGenerator[Sequence[Timeline], None]:
        """Tickets routed since `since`, a page at a time; for a department, at least
        those it held. Read under `contextlib.aclosing`, so that a reader that fails
        between pages lets go of the store's connection at once."""

    async def open_per_department(self, *, backlog: bool = False) -> dict[str, int]: ...

    async def open_per_segment(self, *, backlog: bool = False) -> dict[str, int]: ...

    async def past_deadline(self, as_of: datetime, limit: int = 500) -> list[str]: ...

    async def ever_held(self, department: str) -> bool:
        """Whether a kept timeline was ever in the department's hands (stats.held_by)."""


class TableDepartments(Protocol):
    """The departments of the routing table in force; None when it cannot be read
    (table_departments.TableDepartments)."""

    async def __call__(self) -> Collection[str] | None: ...


class Updates(Protocol):
    """Changes to timelines, applied in order in one transaction (tracker.TimelineUpdates);
    the observations the changes made come back."""

    async def update_all(self, changes: Sequence[tuple[str, Change]]
                         ) -> list[Observation]: ...


class CustomerBands(Protocol):
    """ticket id -> its customer's protected-attribute bands (parity_store.TicketBands)."""

    async def __call__(self, ticket_ids: Collection[str], *,
                       today: date) -> dict[str, dict[str, str]]: ...


class Exporter(Protocol):
    """Where measurements go (services/metrics/exporter.py: Prometheus)."""

    def record(self, observations: Iterable[Observation]) -> None: ...

    def record_open_tickets(self, per_department: Mapping[str, int],
                            backlog: Mapping[str, int], *, known: Iterable[str]) -> None: ...

    def record_parity(self, parities: Sequence[parity.AttributeParity],
                      threshold: float) -> None: ...


# --- Lifecycle events ----------------------------------------------------------------------


def applied(ticket_event: events.TicketEvent, current: Timeline
            ) -> tuple[Timeline, list[Observation]]:
    """One lifecycle event applied to its ticket's timeline: moments, hand-overs, clocks."""
    updated, observations = timeline.apply(current, ticket_event)
    updated, clock_observations = clock_events.apply(updated, ticket_event)
    return updated, [*observations, *clock_observations]


async def record_events(updates: Updates, exporter: Exporter,
                        ticket_events: Sequence[events.TicketEvent]) -> list[Observation]:
    """Apply lifecycle events, in order, to their tickets' timelines (one transaction),
    then export what they show. Exported after the commit: a replay of the same events
    finds them already in the timeline and shows nothing twice."""
    observations = await updates.update_all([
        (ticket_event.ticket_id, functools.partial(applied, ticket_event))
        for ticket_event in ticket_events])
    exporter.record(observations)
    return observations


async def check_deadlines(timelines: Timelines, updates: Updates, exporter: Exporter, *,
                          now: datetime, grace: timedelta = REPORTING_GRACE) -> int:
    """Decide the first-response targets whose deadline passed (by `grace`) unanswered;
    how many were missed."""
    as_of = now - grace
    due = await timelines.past_deadline(as_of)
    if not due:
        return 0
    # One transaction for all of them, not one a ticket: a busy service misses many.
    observations = await updates.update_all([
        (ticket_id, functools.partial(timeline.check_deadline, as_of=as_of))
        for ticket_id in due])
    exporter.record(observations)
    missed = sum(1 for o in observations if isinstance(o, timeline.TargetDecided))
    if missed:
        logger.info("first-response deadlines passed unanswered", extra={"tickets": missed})
    return missed


async def measure_backlog(timelines: Timelines, exporter: Exporter, *,
                          departments: Iterable[str]) -> dict[str, int]:
    """Open tickets per department that holds them, exported with each one's backlog
    (known departments with none: 0)."""
    open_now = await timelines.open_per_department()
    exporter.record_open_tickets(open_now, await timelines.open_per_department(backlog=True),
                                 known=departments)
    return open_now


# --- Statistics ----------------------------------------------------------------------------


async def unknown_department(timelines: Timelines, table: Collection[str] | None,
                             department: str) -> departments.UnknownDepartment | None:
    """Why the stats API knows no department `department` (departments.py), or None
    when it does: the departments of the table in force (`TableDepartments`' answer)
    settle it first, the store only a name the table lacks. A table that cannot be read
    settles nothing: any name is answered, as before the table was asked, rather than a
    real department refused."""
    if table is None or department in table or await timelines.ever_held(department):
        return None
    return departments.UnknownDepartment.of(department, table)


async def department_stats(timelines: Timelines, department: str, window: timedelta, *,
                           now: datetime) -> stats.ServiceStats:
    """How fast one department answered over the window, and its backlog now."""
    tally = stats.Tally(window, now=now, department=department)
    await _count_window(timelines, tally.add, now - window, department=department)
    backlog = await timelines.open_per_department(backlog=True)
    return tally.stats(backlog.get(department, 0))


async def all_departments(timelines: Timelines, window: timedelta, *,
                          now: datetime) -> dict[str, stats.ServiceStats]:
    """The same for every department that held tickets in the window or holds some now."""
    tallies = stats.Tallies.per_department(window, now=now)
    await _count_window(timelines, tallies.add, now - window)
    return tallies.stats(await timelines.open_per_department(backlog=True))


async def segment_stats(timelines: Timelines, window: timedelta, *,
                        now: datetime) -> dict[str, stats.ServiceStats]:
    """The statistics per segment, side by side, so a gap in service shows."""
    tallies = stats.Tallies.per_segment(window, now=now)
    await _count_window(timelines, tallies.add, now - window)
    return tallies.stats(await timelines.open_per_segment(backlog=True))


async def _count_window(timelines: Timelines, count: Callable[[Timeline], None],
                        since: datetime, department: str | None = None) -> None:
    """Each ticket routed since `since` counted, a page at a time."""
    async with aclosing(timelines.routed_pages(since, department=department)) as pages:
        async for page in pages:
            for routed in page:
                count(routed)


# --- Service parity ------------------------------------------------------------------------


async def parity_stats(timelines: Timelines, bands: CustomerBands, config: ParityConfig, *,
                       now: datetime) -> Sequence[parity.AttributeParity]:
    """Parity of the tickets routed in the window, per protected attribute: a page of
    tickets at a time, with their customers' bands."""
    tally = parity.ParityTally(config.attributes, now=now)
    # The window's read holds its connection while each page's bands are read on
    # another (two of the pool's at once).
    async with aclosing(timelines.routed_pages(now - config.window)) as pages:
        async for page in pages:
            found = await bands({t.ticket_id for t in page}, today=now.date())
            for routed in page:
                tally.add(routed, found.get(routed.ticket_id, {}))
    return tally.parities(config.policy)


async def export_parity(timelines: Timelines, bands: CustomerBands, exporter: Exporter,
                        config: ParityConfig, *, now: datetime) -> None:
    """The periodic parity measurement, exported as gauges."""
    exporter.record_parity(await parity_stats(timelines, bands, config, now=now),
                           config.policy.threshold)
