"""bench/store_batch.py compares like with like: its hand-written baseline stores each
ticket of a batch as the router stage's store does (the same columns, the same JSON and
times), on the same schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bench import store_batch
from services.core import db, migrate
from services.router.store import RoutedTickets

COLUMNS = ("ticket_id, department, segment, status, priority, first_response_deadline,"
           " escalated, trace, payload, updated_at, routed_event_id, customer_id, platform,"
           " correlation_id, service_clocks, next_clock_check")


async def stored(path: Path) -> list[tuple[Any, ...]]:
    async with aiosqlite.connect(path) as connection, connection.execute(
            f"SELECT {COLUMNS} FROM routed_tickets ORDER BY ticket_id") as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


# Routed within the departments' hours, a deadline is a moment after now (with its
# microseconds); routed after hours, it counts from an opening hour (none).
WITHIN_HOURS = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)  # a Wednesday
AFTER_HOURS = datetime(2026, 12, 4, 21, 30, 0, 654321, tzinfo=UTC)  # a Friday evening


@pytest.mark.parametrize("now", [WITHIN_HOURS, AFTER_HOURS], ids=["within", "after"])
async def test_both_contenders_store_a_batch_alike(tmp_path: Path, now: datetime) -> None:
    batch = store_batch.dispatches(6, now)
    for name in ("stage.db", "baseline.db"):
        await migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path / name}")
    engine = db.engine(f"sqlite+aiosqlite:///{tmp_path / 'stage.db'}")
    try:
        await store_batch.the_stage(RoutedTickets(db.sessions(engine)))(batch)
    finally:
        await engine.dispose()
    async with aiosqlite.connect(tmp_path / "baseline.db") as connection:
        await store_batch.HandWritten(connection)(batch)

    by_stage, by_hand = await stored(tmp_path / "stage.db"), await stored(tmp_path / "baseline.db")
    assert len(by_stage) == len(batch)
    assert by_hand == by_stage
