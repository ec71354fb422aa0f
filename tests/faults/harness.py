"""What every fault scenario shares besides its load (`ticket_load`) and its watch on the
department queues (`lane_watch`): the pipeline's services run and stopped, and the final
count of tickets acknowledged (202) against tickets delivered.

Times are `time.monotonic()` seconds throughout (the event loop's clock too)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.router import table_file
from tests.conftest import (
    TEST_ROUTING_TABLE,
    Pipeline,
    department_lanes,
    read_topic,
)
from tests.faults.lane_watch import Watch
from tests.faults.ticket_load import Load


def all_lanes() -> list[str]:
    """Every lane topic of every department of the test routing table."""
    return department_lanes(*table_file.load(TEST_ROUTING_TABLE).departments)


@dataclass
class Shutdown:
    """How the pipeline's services ended when stopped (SIGTERM, SIGKILL after 20 s)."""

    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def unclean(self) -> list[str]:
        # uvicorn raises SIGTERM again after a clean shutdown; None: stopped earlier.
        return [name for name, code in self.exit_codes.items()
                if code not in (0, -signal.SIGTERM, None)]

    def describe(self) -> str:
        unclean = self.unclean()
        return f"; SIGTERM did not end {', '.join(unclean)} (killed)" if unclean else ""


@contextlib.asynccontextmanager
async def running(pipeline: Pipeline) -> AsyncIterator[Shutdown]:
    """Start the pipeline's services (blocking calls, off the event loop); stop them all
    at once after, and record how each ended."""
    shutdown = Shutdown()
    try:
        await asyncio.to_thread(pipeline.start)
        yield shutdown
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(service.stop)
                                       for service in pipeline.services.values()))
        shutdown.exit_codes.update(zip(pipeline.services, codes, strict=True))


def drain_time(load: Load, watch: Watch, since: float) -> float | None:
    """Seconds from `since` (the fault's end) until every ticket acknowledged by then was
    in a department queue; None if some never arrived."""
    due = [ticket_id for ticket_id, answer in load.acknowledged.items()
           if answer.answered_at <= since]
    if any(ticket_id not in watch.first_seen for ticket_id in due):
        return None
    return max([watch.first_seen[ticket_id] - since for ticket_id in due] + [0.0])


@dataclass(frozen=True)
class Outcome:
    """Tickets acknowledged over HTTP against copies found in the department queues."""

    sent: int
    acknowledged: frozenset[str]
    copies: Counter[str] = field(default_factory=Counter)
    subject_of: dict[str, str] = field(default_factory=dict)

    @property
    def delivered(self) -> set[str]:
        return set(self.acknowledged & self.copies.keys())

    @property
    def lost(self) -> set[str]:
        return set(self.acknowledged - self.copies.keys())

    @property
    def duplicated(self) -> set[str]:
        return {ticket_id for ticket_id, count in self.copies.items() if count > 1}

    @property
    def unacknowledged(self) -> set[str]:
        """Delivered although the POST got no 202 (503, or the intake died answering)."""
        return set(self.copies.keys() - self.acknowledged)

    @property
    def tickets_per_request(self) -> Counter[str]:
        """How many ticket ids each posted ticket (its subject) was delivered under."""
        return Counter(self.subject_of.values())


async def settle(bootstrap: str, load: Load, watch: Watch, *,
                 within: float = 90.0) -> Outcome:
    """Wait (bounded) until the watch saw every acknowledged ticket, then count them all
    afresh: a new `read_committed` reader over every lane, from the start."""
    acknowledged = load.acknowledged
    await watch.wait_for(acknowledged, within=within)
    watched = sum(count for ticket_id, count in watch.copies.items()
                  if load.owns_subject(watch.subject_of[ticket_id]))
    found = await read_topic(bootstrap, *all_lanes(), until=max(len(acknowledged), watched),
                             within=30.0, settle=1.0, keep=load.owns)
    return Outcome(sent=load.sent, acknowledged=frozenset(acknowledged),
                   copies=Counter(str(event.ticket_id) for event, _ in found),
                   subject_of={str(event.ticket_id): str(event.data["subject"])
                               for event, _ in found})
