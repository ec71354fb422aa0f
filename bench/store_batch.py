"""What the router stage's store work costs a batch, beside a hand-written equivalent on
the same SQLite file, measured in the same run.

    .venv/bin/python -m bench.store_batch [--batch 20] [--batches 100] [--rounds 5]

For each batch of new tickets (routed in memory first, by the real `service.route` with
the table of config/routing.yaml, so only the store's part is timed), the stage does two
things (services/router/worker.py): before routing, `RoutedTickets.routed_before` looks
the batch's tickets up (one query); after, `RoutedTickets.record_first_dispatches` writes
them (the erasures of their customers read, then one INSERT, one transaction). The
baseline does the same SQL by hand with aiosqlite: the same lookup, then in one
transaction the same read of erasures and one `executemany` of the same rows (their
JSON and times written out as the store writes them). Both write to the migrated
schema, indexes and all, with the pragmas the services set (WAL, synchronous NORMAL).

Prints the process's CPU time (the driver's thread included) and the wall time a batch
(medians of the rounds, each of `--batches` batches), and the ratios to the baseline.
Small batches are what the stage writes at a few hundred tickets a second; large ones
what it writes when it falls behind.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bench import stage_work
from services.core import db, envelope, lifecycle, migrate, tickets
from services.core.settings import PROJECT_ROOT
from services.router import service_clocks, table_file
from services.router.service.route import route
from services.router.store import Dispatch, RoutedTickets

Batch = Sequence[Dispatch]


def dispatches(count: int, now: datetime | None = None) -> list[Dispatch]:
    """`count` new tickets, routed in memory as the stage routes them at `now` (by
    default the time of the call)."""
    table = table_file.load(PROJECT_ROOT / "config" / "routing.yaml")
    now = now or datetime.now(UTC)
    routed = []
    for n in range(count):
        record = stage_work.segmented(n)
        event = envelope.from_record(record.headers, record.value)
        ticket = tickets.SegmentedTicket.model_validate(event.data)
        routed.append(route(ticket, table=table, load=lambda: ({}, {}), now=now,
                            event_id=event.id, correlation_id=event.correlation_id).dispatch)
    return routed


def _when(moment: datetime | None) -> str | None:
    """A time as the store's SQLite columns hold it (db.UtcDateTime, naive UTC, always
    with its microseconds: a deadline at a calendar's opening has none)."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None).isoformat(
        sep=" ", timespec="microseconds")


def row_of(d: Dispatch) -> tuple[Any, ...]:
    """A dispatch as the baseline's INSERT takes it: its JSON and times written out."""
    return (d.ticket_id, d.department, d.segment, lifecycle.Status.ROUTED.value, d.priority,
            _when(d.deadline), 0, db.json_text(list(d.steps)), db.json_text(d.payload),
            _when(d.at), d.event_id, d.customer_id, d.platform, d.correlation_id,
            None if d.clocks is None else db.json_text(service_clocks.to_json(d.clocks)),
            None if d.clocks is None else _when(d.clocks.next_check()))


INSERT = ("INSERT INTO routed_tickets (ticket_id, department, segment, status, priority,"
          " first_response_deadline, escalated, trace, payload, updated_at, routed_event_id,"
          " customer_id, platform, correlation_id, service_clocks, next_clock_check)"
          " VALUES (" + ", ".join("?" * 16) + ") ON CONFLICT (ticket_id) DO NOTHING")


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class HandWritten:
    """The same SQL with aiosqlite alone, on one connection."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def __call__(self, batch: Batch) -> None:
        ids = [d.ticket_id for d in batch]
        async with self._connection.execute(
                "SELECT ticket_id, routed_event_id FROM routed_tickets WHERE ticket_id IN"
                f" ({_marks(len(ids))})", ids) as cursor:
            await cursor.fetchall()
        customers = sorted({d.customer_id for d in batch if d.customer_id is not None})
        async with self._connection.execute(
                "UPDATE erased_customers SET erased_at = erased_at WHERE customer_id IN"
                f" ({_marks(len(customers))}) RETURNING customer_id, erased_at",
                customers) as cursor:
            await cursor.fetchall()
        await self._connection.executemany(INSERT, [row_of(d) for d in batch])
        await self._connection.commit()


def the_stage(store: RoutedTickets) -> Callable[[Batch], Awaitable[None]]:
    async def write(batch: Batch) -> None:
        await store.routed_before([d.ticket_id for d in batch])
        await store.record_first_dispatches(batch)
    return write


async def measure(write: Callable[[Batch], Awaitable[None]],
                  batches: list[Batch]) -> tuple[float, float]:
    """CPU and wall milliseconds a batch."""
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        await write(batch)
    return ((time.process_time() - cpu) / len(batches) * 1e3,
            (time.perf_counter() - wall) / len(batches) * 1e3)


async def run_rounds(home: Path, routed: list[Dispatch], batch: int, batches: int,
                     rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Each contender's (CPU, wall) a batch, a round at a time, interleaved."""
    per_round = batch * batches
    stage_url = f"sqlite+aiosqlite:///{home / 'stage.db'}"
    await migrate.upgrade(stage_url)
    await migrate.upgrade(f"sqlite+aiosqlite:///{home / 'baseline.db'}")
    engine = db.engine(stage_url)
    connection = await aiosqlite.connect(home / "baseline.db")
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        await connection.execute(f"PRAGMA {pragma}")
    contenders: dict[str, Callable[[Batch], Awaitable[None]]] = {
        "hand-written (aiosqlite)": HandWritten(connection),
        "router stage's store": the_stage(RoutedTickets(db.sessions(engine)))}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    try:
        for n in range(rounds):  # interleaved: drift on a noisy machine hits both
            for k, (name, write) in enumerate(contenders.items()):
                start = (2 * n + k) * per_round
                part = routed[start:start + per_round]
                figures[name].append(await measure(write, [
                    part[i:i + batch] for i in range(0, per_round, batch)]))
    finally:
        await connection.close()
        await engine.dispose()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if min(args.batch, args.batches, args.rounds) < 1:
        parser.error("--batch, --batches and --rounds must be 1 or more")
    per_round = args.batch * args.batches
    routed = dispatches(per_round * args.rounds * 2)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        figures = await run_rounds(Path(folder), routed, args.batch, args.batches,
                                   args.rounds)
    base_cpu = statistics.median(cpu for cpu, _ in figures["hand-written (aiosqlite)"])
    base_wall = statistics.median(wall for _, wall in figures["hand-written (aiosqlite)"])
    print(f"batches of {args.batch} new tickets, {args.batches} a round, {args.rounds} rounds"
          " (medians; CPU includes the driver's thread):")
    for name, measured in figures.items():
        cpu = statistics.median(c for c, _ in measured)
        wall = statistics.median(w for _, w in measured)
        print(f"  {name:26s} CPU {cpu:6.2f} ms a batch ({cpu / base_cpu:4.2f}),"
              f" wall {wall:6.2f} ms ({wall / base_wall:4.2f});"
              f" {cpu / args.batch * 1e3:5.0f} us of CPU a ticket")


if __name__ == "__main__":
    asyncio.run(main())
