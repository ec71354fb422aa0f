"""Recording fakes of the metrics service's adapters, for unit tests of its use cases:
wired by the same bootstrap as the real ones (services/metrics/bootstrap.py), no
sockets."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from services.core import targets
from services.core.settings import Settings
from services.metrics import bootstrap, parity, service, stats
from services.metrics.timeline import Observation, Timeline


class FakeTimelines:
    """Timelines in memory, read and changed as the store does (service.Timelines and
    service.Updates); each transaction is recorded."""

    PAGE_ROWS = 2  # small, so that the use cases' tests count across pages

    def __init__(self, *timelines: Timeline) -> None:
        self.saved = {timeline.ticket_id: timeline for timeline in timelines}
        self.transactions: list[list[str]] = []  # the tickets each update_all changed
        self.asked_held: list[str] = []  # the departments ever_held was asked about

    async def update_all(self, changes: Sequence[tuple[str, service.Change]]
                         ) -> list[Observation]:
        observations: list[Observation] = []
        for ticket_id, change in changes:
            current = self.saved.get(ticket_id) or Timeline(ticket_id=ticket_id)
            self.saved[ticket_id], seen = change(current)
            observations += seen
        self.transactions.append([ticket_id for ticket_id, _ in changes])
        return observations

    async def routed_pages(self, since: datetime, department: str | None = None,
                           ) -> AsyncGenerator[list[Timeline], None]:
        routed = [t for t in self.saved.values()
                  if t.routed_at is not None and t.routed_at >= since
                  and (department is None or t.department == department
                       or t.escalated_at is not None or t.transferred_at is not None)]
        for first in range(0, len(routed), self.PAGE_ROWS):  # as the store: pages
            yield routed[first:first + self.PAGE_ROWS]

    async def open_per_department(self, *, backlog: bool = False) -> dict[str, int]:
        return self._open_per("department", backlog=backlog)

    async def open_per_segment(self, *, backlog: bool = False) -> dict[str, int]:
        return self._open_per("segment", backlog=backlog)

    def _open_per(self, field: str, *, backlog: bool) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.saved.values():
            name = getattr(t, field)
            if (name and t.routed_at is not None and t.resolved_at is None
                    and not (backlog and (t.first_response_at is not None
                                          or t.paused_at is not None))):
                counts[name] = counts.get(name, 0) + 1
        return counts

    async def past_deadline(self, as_of: datetime, limit: int = 500) -> list[str]:
        return [t.ticket_id for t in self.saved.values()
                if t.first_response_deadline is not None
                and targets.past_due(t.first_response_deadline, as_of)
                and t.target_outcome is None and t.department and t.segment][:limit]


    async def ever_held(self, department: str) -> bool:
        self.asked_held.append(department)
        return any(stats.held_by(t, department) for t in self.saved.values())


class FakeTable:
    """The routing table's departments as the test set them (None: a table that cannot
    be read); counts how often it was read."""

    def __init__(self, departments: Collection[str] | None) -> None:
        self.departments, self.reads = departments, 0

    async def __call__(self) -> Collection[str] | None:
        self.reads += 1
        return self.departments


class FakeBands:
    """Customers' bands per ticket as the test set them; records what it was asked."""

    def __init__(self, bands: Mapping[str, dict[str, str]] | None = None) -> None:
        self.bands = dict(bands or {})
        self.asked: list[set[str]] = []

    async def __call__(self, ticket_ids: Collection[str], *,
                       today: date) -> dict[str, dict[str, str]]:
        self.asked.append(set(ticket_ids))
        return {t: self.bands[t] for t in ticket_ids if t in self.bands}


class FakeExporter:
    """Records every measurement exported, in order."""

    def __init__(self) -> None:
        self.exported: list[tuple[str, Any]] = []

    def record(self, observations: Iterable[Observation]) -> None:
        self.exported.append(("observations", list(observations)))

    def record_open_tickets(self, per_department: Mapping[str, int],
                            backlog: Mapping[str, int], *, known: Iterable[str]) -> None:
        self.exported.append(("open_tickets", (dict(per_department), dict(backlog),
                                               set(known))))

    def record_parity(self, parities: Sequence[parity.AttributeParity],
                      threshold: float) -> None:
        self.exported.append(("parity", (list(parities), threshold)))

    def observations(self) -> list[Observation]:
        return [o for kind, batch in self.exported if kind == "observations" for o in batch]


def wired(*timelines: Timeline, settings: Settings | None = None,
          bands: Mapping[str, dict[str, str]] | None = None,
          in_table: Collection[str] | None = ()) -> tuple[
        bootstrap.Metrics, FakeTimelines, FakeExporter]:
    """The metrics context as the service builds it, with recording fakes; `in_table`:
    the departments of the routing table in force (None: it cannot be read)."""
    store, exporter = FakeTimelines(*timelines), FakeExporter()
    metrics = bootstrap.wire(settings or Settings(), timelines=store, updates=store,
                             bands=FakeBands(bands), exporter=exporter,
                             in_table=FakeTable(in_table))
    return metrics, store, exporter
