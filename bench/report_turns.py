"""Report turns under a flood: how long one department's report takes while other
callers ask for reports over and over, with the turns (REPORTS_AT_ONCE, one report a
credential) and without them (every request computed at once, as before the turns), in
the same run on the same store.

    .venv/bin/python -m bench.report_turns [--tickets 30000] [--asks 5] [--rounds 2]

Writes `--tickets` timelines routed over six days to a fresh SQLite store
(bench/report_window.py), serves the metrics service's stats API on it (its ASGI app,
called in this process, on the loop the reports run on, as in the service) with a real
credential store. Floods of every department's report over seven days, each request
sent again as soon as it is answered (after 10 ms when refused):
- one admin credential with 8 requests in flight (a caller ignoring the turns);
- four admin credentials with one request in flight each (callers waiting for their
  answers: here the turns make a report wait behind those queued before it).
In each variant a department's credential asks for its own department's report `--asks`
times, one after the other, while a task asks to run every 10 ms (how late it runs is
what the service's stage, on the same loop, waits between two steps). The variants run
in one order, then the reverse, `--rounds` times in all. Prints, per variant, the
department's report time (median and most, over all rounds), how late the ticking task
ran, the flood's answers, and the process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI

from bench.report_window import DEPARTMENTS, timelines
from services.core import access, db, http, migrate, service_context
from services.core.credentials import Credentials
from services.core.report_turns import ReportTurns
from services.core.settings import Settings
from services.metrics import api, bootstrap, exporter, parity_store, worker
from services.metrics.store import TimelineStore

WEEK = {"window": "7d"}


class EveryRequestAtOnce(ReportTurns):
    """No turns: what the reports did before them."""

    def __init__(self) -> None:
        super().__init__(1)

    @asynccontextmanager
    async def turn(self, holder: str, gone: Callable[[], Awaitable[bool]] | None = None,
                   ) -> AsyncIterator[None]:
        yield


async def flood(client: httpx.AsyncClient, headers: dict[str, str], stop: asyncio.Event,
                answers: Counter[int]) -> None:
    while not stop.is_set():
        answer = await client.get("/v1/departments", params=WEEK, headers=headers)
        answers[answer.status_code] += 1
        if answer.status_code == 429:
            await asyncio.sleep(0.01)


async def tick(stop: asyncio.Event, late: list[float]) -> None:
    """How late a task that asked to run again in 10 ms runs: what the service's stage,
    sharing the loop with the reports, waits between two of its steps."""
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(0.01)
        late.append(time.perf_counter() - asked - 0.01)


async def variant(client: httpx.AsyncClient, flooders: list[dict[str, str]],
                  department: dict[str, str], asks: int,
                  ) -> tuple[list[float], Counter[int], float, list[float]]:
    stop, answers, late = asyncio.Event(), Counter[int](), list[float]()
    flooding = [asyncio.create_task(flood(client, headers, stop, answers))
                for headers in flooders]
    await asyncio.sleep(0.5)  # the flood under way
    ticking = asyncio.create_task(tick(stop, late))
    cpu, wall, took = time.process_time(), time.perf_counter(), []
    for _ in range(asks):
        started = time.perf_counter()
        answer = await client.get(f"/v1/departments/{DEPARTMENTS[0]}/stats", params=WEEK,
                                  headers=department)
        assert answer.status_code == 200, answer.text
        took.append(time.perf_counter() - started)
    cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    stop.set()
    await asyncio.gather(*flooding, ticking)
    return took, answers, cpu_share, late


async def run(count: int, asks: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'reports.db'}"
        await migrate.upgrade(url)
        engine = db.engine(url)
        try:
            sessions = db.sessions(engine)
            store = TimelineStore(sessions)
            async for batch in timelines(count, datetime.now(UTC)):
                async with engine.begin() as connection:
                    await store.save_many(connection, batch)
            settings = Settings(database_url=url)
            app = FastAPI()
            context = service_context.install(app, settings)
            context.provide(bootstrap.wire(
                settings, timelines=store, updates=worker.TimelineUpdates(store, sessions),
                bands=parity_store.TicketBands(sessions), exporter=exporter,
                in_table=bootstrap.table_in_force(settings, sessions)))
            app.include_router(api.api)
            http.install(app, ready=lambda: True)
            context.credentials = keys = Credentials(sessions)

            async def issued(role: access.Role, subject: str | None) -> dict[str, str]:
                _credential, token = await keys.issue(role, subject, label="bench")
                return {"Authorization": f"Bearer {token}"}

            one_admin = await issued(access.Role.ADMIN, None)
            admins = [await issued(access.Role.ADMIN, None) for _ in range(4)]
            department = await issued(access.Role.DEPARTMENT, DEPARTMENTS[0])
            turns = context.report_turns
            variants = {
                "alone": ([], turns),
                "1 credential x 8, every request at once (before)": ([one_admin] * 8,
                                                                     EveryRequestAtOnce()),
                "1 credential x 8, in turns": ([one_admin] * 8, turns),
                "4 credentials x 1, every request at once (before)": (
                    admins, EveryRequestAtOnce()),
                "4 credentials x 1, in turns": (admins, turns),
            }
            results: dict[str, tuple[list[float], Counter[int], list[float], list[float]]] = {
                name: ([], Counter(), [], []) for name in variants}
            order = list(variants)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://metrics", timeout=600) as client:
                for _round in range(rounds):
                    for name in order:
                        flooders, context.report_turns = variants[name]
                        took, answers, cpu, late = await variant(client, flooders, department,
                                                                 asks)
                        results[name][0].extend(took)
                        results[name][1].update(answers)
                        results[name][2].append(cpu)
                        results[name][3].extend(late)
                    order.reverse()
            print(f"{count:,} tickets (SQLite), reports over 7 days, REPORTS_AT_ONCE="
                  f"{settings.reports_at_once}; {rounds} rounds of {asks} asks:")
            for name, (took, answers, cpus, late) in results.items():
                print(f"  {name:<50} one department's report: median"
                      f" {statistics.median(took):5.2f} s, most {max(took):5.2f} s; a task"
                      f" due on the loop late p99 {1000 * quantile(late, 0.99):4.0f} ms,"
                      f" most {1000 * max(late):4.0f} ms; flood answered"
                      f" {dict(sorted(answers.items()))}; CPU"
                      f" {statistics.median(cpus):.2f} of a core")
        finally:
            await engine.dispose()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=30_000)
    parser.add_argument("--asks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(run(args.tickets, args.asks, args.rounds))


if __name__ == "__main__":
    main()
