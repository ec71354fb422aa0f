"""Freeze the segmenter (SIGSTOP) for longer than its consumer group's session timeout
(aiokafka's default: 10 s), then let it go on (SIGCONT): its group throws it out and
takes it back, and every ticket is in a department queue exactly once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conftest import Pipeline, unique
from tests.faults import harness, lane_watch, ticket_load
from tests.faults.conftest import Results, Row

PAUSE_SECONDS = 15.0


async def test_paused_segmenter_rejoins_without_loss_or_duplicates(
        kafka_bootstrap: str, seeded_sqlite: str, tmp_path: Path, results: Results) -> None:
    began = time.monotonic()
    pipeline = Pipeline(kafka_bootstrap, seeded_sqlite, tmp_path / "logs")
    segmenter = pipeline.services["segmenter"]
    intake = pipeline.url("router")
    load = ticket_load.Load(lambda: [intake], headers=pipeline.headers(), prefix=unique("pause"),
                            rate=30, limit=3000)
    async with harness.running(pipeline) as shutdown, \
            lane_watch.Watch(kafka_bootstrap, harness.all_lanes(), load.owns) as watch:
        async with load:
            await load.run_for(3.0)
            segmenter.signal(signal.SIGSTOP)
            paused_at = time.monotonic()
            try:
                await load.run_for(PAUSE_SECONDS)
            finally:
                segmenter.signal(signal.SIGCONT)
            resumed_at = time.monotonic()
            await load.run_for(2.0)
        outcome = await harness.settle(kafka_bootstrap, load, watch)
        drained = harness.drain_time(load, watch, resumed_at)

    routed_while_paused = watch.seen_between(paused_at + 1.0, resumed_at)
    drained_text = "never" if drained is None else f"{drained:.1f}s"
    results.add(Row.of(f"4 SIGSTOP segmenter {PAUSE_SECONDS:.0f}s", outcome,
                       seconds=time.monotonic() - began, recovery=(
        f"queues caught up {drained_text} after SIGCONT; routed while paused:"
        f" {routed_while_paused}"
        f"{shutdown.describe()}")))
    assert not outcome.lost, f"lost {sorted(outcome.lost)[:5]}; logs in {tmp_path / 'logs'}"
    assert not outcome.duplicated, f"duplicated {sorted(outcome.duplicated)[:5]}"
