"""Start a second router and a second segmenter mid-stream (their groups rebalance),
then stop (SIGTERM) the original instances: every ticket the intakes acknowledged is
in a department queue exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from services.local import ports
from services.local.processes import ServiceProcess
from tests.conftest import Pipeline, unique
from tests.faults import harness
from tests.faults.conftest import Results, Row


def second_instance(pipeline: Pipeline, name: str, logs: Path) -> ServiceProcess:
    port = ports.free_port()
    env = {**pipeline.env, f"{name.upper()}_PORT": str(port), "INSTANCE_ID": "1"}
    return ServiceProcess(name, port, env, logs / f"{name}-1.log")


async def test_scaling_out_and_in_loses_and_duplicates_nothing(
        kafka_bootstrap: str, seeded_sqlite: str, tmp_path: Path, results: Results) -> None:
    began = time.monotonic()
    logs = tmp_path / "logs"
    pipeline = Pipeline(kafka_bootstrap, seeded_sqlite, logs)
    originals = pipeline.services
    extra = [second_instance(pipeline, name, logs) for name in ("router", "segmenter")]
    intakes = [originals["router"].url]
    load = harness.Load(lambda: intakes, headers=pipeline.headers(), prefix=unique("scale"),
                        rate=30, limit=3000)
    exit_codes: dict[str, int | None] = {}
    async with harness.running(pipeline) as shutdown, \
            harness.Watch(kafka_bootstrap, harness.all_lanes(), load.owns) as watch:
        try:
            async with load:
                await load.run_for(2.0)
                for service in extra:
                    service.start()
                await asyncio.gather(*(asyncio.to_thread(service.wait_ready, 60)
                                       for service in extra))
                intakes.append(extra[0].url)
                await load.run_for(3.0)
                exit_codes["segmenter"] = await asyncio.to_thread(originals["segmenter"].stop)
                intakes.remove(originals["router"].url)
                exit_codes["router"] = await asyncio.to_thread(originals["router"].stop)
                stopped_at = time.monotonic()
                await load.run_for(3.0)
            outcome = await harness.settle(kafka_bootstrap, load, watch)
            drained = harness.drain_time(load, watch, stopped_at)
        finally:
            await asyncio.gather(*(asyncio.to_thread(service.stop) for service in extra))

    drained_text = "never" if drained is None else f"{drained:.1f}s"
    results.add(Row.of("5 add router+segmenter, SIGTERM originals", outcome,
                       seconds=time.monotonic() - began, recovery=(
        f"queues caught up {drained_text} after the originals stopped;"
        f" their exit codes {sorted(set(exit_codes.values()), key=str)}"
        f"{shutdown.describe()}")))
    # uvicorn raises the signal again once its shutdown is done: -SIGTERM is a clean end.
    assert set(exit_codes.values()) <= {0, -signal.SIGTERM}, exit_codes
    for name in exit_codes:
        log = originals[name].log_file.read_text(errors="replace")
        assert "Application shutdown complete" in log, f"{name} did not shut down cleanly"
    assert not outcome.lost, f"lost {sorted(outcome.lost)[:5]}; logs in {logs}"
    assert not outcome.duplicated, f"duplicated {sorted(outcome.duplicated)[:5]}"
