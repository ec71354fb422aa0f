"""Poison records of every kind, produced straight to `tickets.incoming` and
`tickets.segmented` while good tickets flow: each lands once in `tickets.dlq` with its
reason and source in the headers, and the good tickets are unaffected."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from aiokafka import ConsumerRecord

from services.core import topics
from tests.conftest import Pipeline, read_topic, unique
from tests.faults import harness, poison
from tests.faults.conftest import Results, Row


async def test_poison_goes_to_dead_letters_and_good_tickets_flow(
        kafka_bootstrap: str, seeded_sqlite: str, tmp_path: Path, results: Results) -> None:
    began = time.monotonic()
    prefix = unique("poison")
    records = [record for topic in (topics.INCOMING, topics.SEGMENTED)
               for record in poison.poisons(topic, subject=f"{prefix} subject")]
    pipeline = Pipeline(kafka_bootstrap, seeded_sqlite, tmp_path / "logs")
    intake = pipeline.url("router")
    load = harness.Load(lambda: [intake], headers=pipeline.headers(),
                        prefix=unique("poison-good"), rate=40, limit=3000)

    def ours(record: ConsumerRecord) -> bool:
        return record.key is not None and record.key.startswith(f"{prefix}:".encode())

    async with harness.running(pipeline) as shutdown, \
            harness.Watch(kafka_bootstrap, harness.all_lanes(), load.owns) as watch:
        async with load:
            await load.run_for(2.0)
            produced = await poison.produce(kafka_bootstrap, prefix, records)
            await load.run_for(6.0)
        outcome = await harness.settle(kafka_bootstrap, load, watch)
        dead = await poison.read_dead_letters(kafka_bootstrap, ours, until=len(produced))
        routed_poison = await read_topic(
            kafka_bootstrap, *harness.all_lanes(), until=0, within=10.0, settle=1.0,
            keep=lambda event: str(event.data.get("subject", "")).startswith(prefix))

    copies = Counter(record.key for record in dead)
    problems = []
    for record in dead:
        expected, partition, offset = produced[record.key]
        headers = {name: raw.decode() for name, raw in record.headers}
        if (headers.get("dlq_source_topic"), headers.get("dlq_source_partition"),
                headers.get("dlq_source_offset")) != (expected.topic, str(partition),
                                                      str(offset)):
            problems.append(f"{expected.topic} {expected.kind}: wrong source {headers}")
        if expected.reason not in headers.get("dlq_error", "") \
                or headers.get("dlq_error_class") != expected.error_class:
            problems.append(f"{expected.topic} {expected.kind}: reason"
                            f" {headers.get('dlq_error_class')}: {headers.get('dlq_error')}")
        if record.value != expected.value:
            problems.append(f"{expected.topic} {expected.kind}: value changed")
    missing = [f"{p.topic} {p.kind}" for key, (p, _, _) in produced.items() if key not in copies]
    twice = [key.decode() for key, count in copies.items() if count > 1]
    results.add(Row.of("6 poison records", outcome, seconds=time.monotonic() - began,
                       recovery=(
        f"{len(produced)} poison ({len(produced) // 2} kinds x 2 topics): {len(copies)} in"
        f" DLQ, {len(twice)} twice, {len(problems)} wrong headers, {len(routed_poison)}"
        f" routed"
        f"{shutdown.describe()}")))
    assert not missing, f"not dead-lettered: {missing}"
    assert not twice, f"dead-lettered more than once: {twice}"
    assert not problems, "\n".join(problems)
    assert not routed_poison, "a poison record reached a department queue"
    assert not outcome.lost, f"lost {sorted(outcome.lost)[:5]}; logs in {tmp_path / 'logs'}"
    assert not outcome.duplicated, f"duplicated {sorted(outcome.duplicated)[:5]}"
