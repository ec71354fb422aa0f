"""Report turns under a flood: how long one department's report takes while another
caller asks for reports over and over, with the turns (REPORTS_AT_ONCE, one report a
credential) and without them (every request computed at once, as before the turns), in
the same run on the same store.

    .venv/bin/python -m bench.report_turns [--tickets 30000] [--flood 8] [--asks 5]

Writes `--tickets` timelines over six days to a fresh SQLite store (bench/report_window.py),
serves the metrics service's stats API on it (its ASGI app, called in this process, on
the loop the reports run on, as in the service) with a real credential store, then, per
variant: one admin credential sends `--flood` requests at once for every department's
report over seven days, each sent again as soon as it is answered (after 10 ms when
refused), while a department's credential asks for its own department's report
`--asks` times, one after the other. Prints the department's report time (median and
most), the flood's answers, and the process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
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
    async def turn(self, credential_id: str) -> AsyncIterator[None]:
        yield


async def flood(client: httpx.AsyncClient, headers: dict[str, str], stop: asyncio.Event,
                answers: Counter[int]) -> None:
    while not stop.is_set():
        answer = await client.get("/v1/departments", params=WEEK, headers=headers)
        answers[answer.status_code] += 1
        if answer.status_code == 429:
            await asyncio.sleep(0.01)


async def variant(client: httpx.AsyncClient, headers: dict[str, dict[str, str]],
                  flooders: int, asks: int) -> tuple[list[float], Counter[int], float]:
    stop, answers = asyncio.Event(), Counter[int]()
    flooding = [asyncio.create_task(flood(client, headers["admin"], stop, answers))
                for _ in range(flooders)]
    await asyncio.sleep(0.5)  # the flood under way
    cpu, wall, took = time.process_time(), time.perf_counter(), []
    for _ in range(asks):
        started = time.perf_counter()
        answer = await client.get(f"/v1/departments/{DEPARTMENTS[0]}/stats", params=WEEK,
                                  headers=headers["department"])
        assert answer.status_code == 200, answer.text
        took.append(time.perf_counter() - started)
    cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    stop.set()
    await asyncio.gather(*flooding)
    return took, answers, cpu_share


async def run(count: int, flooders: int, asks: int) -> None:
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
                bands=parity_store.TicketBands(sessions), exporter=exporter))
            app.include_router(api.api)
            http.install(app, ready=lambda: True)
            context.credentials = keys = Credentials(sessions)
            headers = {role: {"Authorization": f"Bearer {issued[1]}"} for role, issued in (
                ("admin", await keys.issue(access.Role.ADMIN, None, label="bench")),
                ("department", await keys.issue(access.Role.DEPARTMENT, DEPARTMENTS[0],
                                                label="bench")))}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://metrics", timeout=600) as client:
                print(f"{count:,} tickets (SQLite), reports over 7 days; a flood of"
                      f" {flooders} requests at once for every department's report:")
                turns = context.report_turns
                for name, flooding, chosen in (
                        ("alone", 0, turns),
                        ("flood, every request at once (before)", flooders,
                         EveryRequestAtOnce()),
                        (f"flood, in turns (REPORTS_AT_ONCE={settings.reports_at_once})",
                         flooders, turns)):
                    context.report_turns = chosen
                    took, answers, cpu = await variant(client, headers, flooding, asks)
                    print(f"  {name:<44} one department's report: median"
                          f" {statistics.median(took):6.2f} s, most {max(took):6.2f} s;"
                          f" flood answered {dict(sorted(answers.items()))};"
                          f" CPU {cpu:.2f} of a core")
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=30_000)
    parser.add_argument("--flood", type=int, default=8)
    parser.add_argument("--asks", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.tickets, args.flood, args.asks))


if __name__ == "__main__":
    main()
