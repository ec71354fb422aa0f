"""SIGKILL the intake (the router process) several times while tickets are posted: every
ticket it acknowledged is in a department queue exactly once. (Killing the segmenter
too is `test_crash_exactly_once.py`.)

The restarted intake's producer fences its killed predecessor, whose open transaction is
aborted: a ticket is delivered without a 202 only when its transaction was committed in
the moment between the commit and the answer, which the client never got (the row's
"no-202 delivered")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.conftest import Pipeline, unique
from tests.faults import harness, lane_watch, ticket_load
from tests.faults.conftest import Results, Row

KILLS = 3


async def test_sigkill_intake_loses_and_duplicates_nothing(
        kafka_bootstrap: str, seeded_sqlite: str, tmp_path: Path, results: Results) -> None:
    began = time.monotonic()
    pipeline = Pipeline(kafka_bootstrap, seeded_sqlite, tmp_path / "logs")
    router = pipeline.services["router"]
    load = ticket_load.Load(lambda: [router.url], headers=pipeline.headers(),
                            prefix=unique("intake-kill"), rate=40, limit=3000)
    downtimes: list[float] = []
    async with harness.running(pipeline) as shutdown, \
            lane_watch.Watch(kafka_bootstrap, harness.all_lanes(), load.owns) as watch:
        async with load:
            for _ in range(KILLS):
                await load.run_for(1.5)
                router.kill()
                killed_at = time.monotonic()
                router.start()
                await asyncio.to_thread(router.wait_ready, 60)
                await load.run_for(0.5)
                back = load.first_acknowledged_after(killed_at)
                assert back is not None, f"the intake did not come back; see {router.log_file}"
                downtimes.append(back - killed_at)
            await load.run_for(2.0)
        outcome = await harness.settle(kafka_bootstrap, load, watch)

    results.add(Row.of(f"1 SIGKILL intake x{KILLS}", outcome,
                       seconds=time.monotonic() - began, recovery=(
        f"intake answers 202 again {min(downtimes):.1f}-{max(downtimes):.1f}s after a kill"
        f"{shutdown.describe()}")))
    # Each restart leaves the intake down for a while: many POSTs find nobody listening.
    assert len(outcome.acknowledged) > 100, "the intake should accept tickets between kills"
    assert not outcome.lost, f"lost {sorted(outcome.lost)[:5]}; logs in {tmp_path / 'logs'}"
    assert not outcome.duplicated, f"duplicated {sorted(outcome.duplicated)[:5]}"
    # Delivered without a 202: the POST got no answer (the intake died answering), never
    # a 503.
    refused = {answer.subject for answer in load.answers if answer.status == 503}
    delivered_refused = refused & {outcome.subject_of[ticket_id]
                                   for ticket_id in outcome.unacknowledged}
    assert not delivered_refused, f"answered 503, yet delivered: {sorted(delivered_refused)}"
