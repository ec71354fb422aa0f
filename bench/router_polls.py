"""What the router's polls of its routed tickets cost against the history the store keeps:
the load sample (backlog, oldest open ticket, first responses in the last hour), which
each router process runs every LOAD_SAMPLE_SECONDS, and the escalation check.

Each store (SQLite, a fresh file) holds the same open tickets (`--open`, spread over
departments, routed or picked up, some past their deadline) and, besides them,
`--history` resolved tickets answered days ago. The baseline is the same polls on a store
holding the open tickets alone, measured in the same run: what the polls are about. It
does so on the newest schema without the polls' indexes (`POLL_INDEXES`, dropped: the
store as it was before v0015 gave them) and with them, and prints the CPU milliseconds
of each poll (median of `--repeats`, the process's CPU time, the database's thread
included) and the ratio to the baseline.

    .venv/bin/python -m bench.router_polls [--history 200000] [--open 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import db, lifecycle, migrate
from services.router import models
from services.router.load import RESPONSE_RATE_WINDOW
from services.router.models import RoutedTicketRow
from services.router.store import RoutedTickets

DEPARTMENTS = ("customer_care", "key_accounts", "public_sector", "sales", "business_desk")
# The routed tickets' indexes the polls search (services/router/models.py). An older
# revision cannot stand for "before them": the store's own queries name every column the
# newest one has.
POLL_INDEXES = tuple(str(index.name) for index in models.POLL_INDEXES)
SCHEMAS = ("without the polls' indexes", "with them")
Poll = Callable[[RoutedTickets, datetime], Awaitable[object]]
POLLS: dict[str, Poll] = {
    "backlog": lambda store, _now: store.backlog(),
    "oldest_open": lambda store, _now: store.oldest_open(),
    "first_responses_since": lambda store, now: store.first_responses_since(
        now - RESPONSE_RATE_WINDOW),
    "due_for_escalation": lambda store, now: store.due_for_escalation(now),
}


def _rows(count: int, start: int, now: datetime, *, resolved: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n in range(start, start + count):
        if resolved:  # answered and resolved days ago
            at = now - timedelta(days=2, seconds=n % 86_400)
            status, answered = lifecycle.Status.RESOLVED, at
        else:  # open: a third past its deadline
            at = now - timedelta(minutes=n % 90)
            status = (lifecycle.Status.ROUTED, lifecycle.Status.PICKED_UP)[n % 2]
            answered = None
        rows.append({"ticket_id": f"t-{n}", "department": DEPARTMENTS[n % len(DEPARTMENTS)],
                     "segment": "retail", "status": str(status), "priority": 3,
                     "first_response_deadline": at + timedelta(hours=1),
                     "first_response_at": answered, "escalated": False,
                     "trace": [{"at": at.isoformat(), "step": str(status)}], "payload": {},
                     "updated_at": at, "customer_id": f"c-{n % 5000}", "platform": "p"})
    return rows


async def fill(engine: AsyncEngine, open_tickets: int, history: int, now: datetime) -> None:
    """The open tickets, then the history, written through the store's own table (its
    column types)."""
    async with engine.begin() as connection:
        await connection.execute(insert(cast(Table, RoutedTicketRow.__table__)), [
            *_rows(open_tickets, 0, now, resolved=False),
            *_rows(history, open_tickets, now, resolved=True)])


async def measure(path: Path, indexed: bool, open_tickets: int, history: int,
                  repeats: int) -> dict[str, float]:
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url, "head")
    now = datetime.now(UTC)
    engine = db.engine(url)
    store = RoutedTickets(db.sessions(engine))
    medians: dict[str, float] = {}
    try:
        if not indexed:
            async with engine.begin() as connection:
                for name in POLL_INDEXES:
                    await connection.execute(text(f"DROP INDEX {name}"))
        await fill(engine, open_tickets, history, now)
        for name, poll in POLLS.items():
            await poll(store, now)  # warm: the connection, the statement's compilation
            spent = []
            for _ in range(repeats):
                started = time.process_time()
                await poll(store, now)
                spent.append(time.process_time() - started)
            medians[name] = 1000 * statistics.median(spent)
    finally:
        await engine.dispose()
    return medians


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=200_000)
    parser.add_argument("--open", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"{args.open} open tickets; history: {args.history} resolved tickets besides them;"
          f" CPU ms a poll, median of {args.repeats}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for indexed, schema in enumerate(SCHEMAS):
            baseline = await measure(Path(folder, f"{indexed}-open.db"), bool(indexed),
                                     args.open, 0, args.repeats)
            kept = await measure(Path(folder, f"{indexed}-history.db"), bool(indexed),
                                 args.open, args.history, args.repeats)
            print(f"schema {schema}:", flush=True)
            for name in POLLS:
                print(f"  {name:22} open only {baseline[name]:7.2f}  with history"
                      f" {kept[name]:8.2f}  ratio {kept[name] / max(baseline[name], 1e-3):6.1f}",
                      flush=True)
            total = sum(kept.values()), sum(baseline.values())
            print(f"  {'all four':22} open only {total[1]:7.2f}  with history {total[0]:8.2f}"
                  f"  ratio {total[0] / max(total[1], 1e-3):6.1f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
