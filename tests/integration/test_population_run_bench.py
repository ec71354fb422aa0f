"""bench.population_run sets the population run beside the one it replaced on the same
store: both come to the same tiers, and the run reads each customer's purchases once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench import customer_base, population_run
from services.core import migrate


async def test_both_ways_change_the_same_tiers_and_the_run_reads_purchases_once(
        tmp_path: Path) -> None:
    base = tmp_path / "base.db"
    await migrate.upgrade(f"sqlite+aiosqlite:///{base}")
    customer_base.write(str(base), 5_000)  # 3 pages of the run's 2,000
    now = datetime.now(UTC)

    runs = {way: await population_run.measure(base, way, tmp_path / f"{way}.db", now)
            for way in population_run.WAYS}

    assert runs["project"].changes == runs["twice"].changes
    assert runs["project"].changes  # the base's tiers are not the cutoffs' yet
    assert runs["project"].purchase_reads == 3
    assert runs["twice"].purchase_reads == 6
