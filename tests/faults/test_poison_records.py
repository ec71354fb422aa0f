"""Poison of every class, while good tickets flow through the whole pipeline on
PostgreSQL (whose columns have lengths, as SQLite's do not):

- records written straight to `tickets.incoming`, `tickets.segmented` and
  `tickets.events`: unreadable envelopes, tickets and lifecycle events that break their
  contract, values longer than the store's columns, reports the pipeline did not write
  (a department forging another's response). Each lands in `tickets.dlq` once per stage
  that reads it, with its reason and source in the headers;
- odd tickets posted over HTTP at the same time as good ones (a 65-bit integer, NaN,
  invalid Unicode, over-long fields, an oversized body): each is refused alone with a
  4xx naming its field, and never reaches a department.

The good tickets: all accepted, each delivered once. And the stages still move: a
ticket posted after the poison is routed, its (genuine) response counted by the router
and the metrics, while the forged response for another ticket is counted by neither."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
from aiokafka import ConsumerRecord

from tests.conftest import Pipeline, read_topic, unique
from tests.faults import harness, lane_watch, poison, ticket_load
from tests.faults.conftest import Results, Row


async def wait_for(check: object, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.5)
    return False


async def test_poison_is_dead_lettered_odd_tickets_refused_and_the_flow_goes_on(
        kafka_bootstrap: str, seeded_postgres: str, tmp_path: Path,
        results: Results) -> None:
    began = time.monotonic()
    prefix = unique("poison")
    pipeline = Pipeline(kafka_bootstrap, seeded_postgres, tmp_path / "logs")
    intake = pipeline.url("router")
    load = ticket_load.Load(lambda: [intake], headers=pipeline.headers(),
                            prefix=unique("poison-good"), rate=40, limit=3000)
    admin = pipeline.headers("admin")
    odd = poison.odd_tickets(f"{prefix} odd")

    def ours(record: ConsumerRecord) -> bool:
        return record.key is not None and record.key.startswith(f"{prefix}:".encode())

    async with harness.running(pipeline) as shutdown, \
            lane_watch.Watch(kafka_bootstrap, harness.all_lanes(), load.owns) as watch, \
            httpx.AsyncClient(timeout=30.0) as client:
        async with load:
            await load.run_for(2.0)
            for _ in range(120):  # a loaded machine may take a while to answer the first
                if load.acknowledged:
                    break
                await load.run_for(0.5)
            target = next(iter(load.acknowledged))  # a real ticket a forger aims at
            records = poison.all_poisons(f"{prefix} subject", target)
            produced, answers = await asyncio.gather(
                poison.produce(kafka_bootstrap, prefix, records),
                asyncio.gather(*(client.post(
                    f"{intake}/v1/tickets", content=ticket.body,
                    headers={**pipeline.headers(), "content-type": "application/json"})
                    for ticket in odd)))
            await load.run_for(6.0)
        outcome = await harness.settle(kafka_bootstrap, load, watch)
        expected_letters = sum(len(p.readers) for p in records)
        dead = await poison.read_dead_letters(kafka_bootstrap, ours, until=expected_letters)
        leaked = await read_topic(
            kafka_bootstrap, *harness.all_lanes(), until=0, within=10.0, settle=1.0,
            keep=lambda event: str(event.data.get("subject", "")).startswith(prefix))

        # The stages still move: a later ticket of the forged ticket's customer (so the
        # same department) is routed, and its genuine response counted once.
        target_state = (await client.get(f"{intake}/v1/tickets/{target}",
                                          headers=admin)).json()
        later = await client.post(f"{intake}/v1/tickets", headers=pipeline.headers(), json={
            "customer_id": load.customer_of(load.acknowledged[target].subject),
            "subject": f"{load.prefix} later", "body": "after the poison", "channel": "api"})
        later_id = later.json()["ticket_id"]
        assert await watch.wait_for([later_id], within=60), "a later ticket was not routed"
        reported = await client.post(f"{intake}/v1/tickets/{later_id}/events",
                                     json={"type": "responded"}, headers=admin)
        department = (await client.get(f"{intake}/v1/tickets/{later_id}",
                                        headers=admin)).json()["department"]

        async def router_saw_it() -> bool:
            state = (await client.get(f"{intake}/v1/tickets/{later_id}", headers=admin)).json()
            return bool(state["status"] == "responded")

        async def responded_in_metrics() -> int:
            stats = await client.get(
                f"{pipeline.url('metrics')}/v1/departments/{department}/stats?window=1h",
                headers=admin)
            return int(stats.json()["responded"])

        router_moved = await wait_for(router_saw_it, within=30)
        metrics_moved = await wait_for(responded_in_metrics, within=30)
        await asyncio.sleep(2.0)  # a forged response, had it been taken, would show now
        responded = await responded_in_metrics()
        target_after = (await client.get(f"{intake}/v1/tickets/{target}",
                                          headers=admin)).json()

    copies = Counter((record.key, dict(record.headers).get("dlq_stage", b"").decode())
                     for record in dead)
    problems = []
    for record in dead:
        expected, partition, offset = produced[record.key]
        headers = {name: (raw or b"").decode(errors="replace") for name, raw in record.headers}
        where = f"{expected.topic} {expected.kind} ({headers.get('dlq_stage')})"
        if (headers.get("dlq_source_topic"), headers.get("dlq_source_partition"),
                headers.get("dlq_source_offset")) != (expected.topic, str(partition),
                                                      str(offset)):
            problems.append(f"{where}: wrong source {headers}")
        if expected.reason not in headers.get("dlq_error", "") \
                or headers.get("dlq_error_class") != expected.error_class:
            problems.append(f"{where}: reason {headers.get('dlq_error_class')}:"
                            f" {headers.get('dlq_error')}")
        if record.value != (expected.value or b""):
            problems.append(f"{where}: value changed")
    missing = [f"{p.topic} {p.kind} by {stage}" for key, (p, _, _) in produced.items()
               for stage in p.readers if (key, stage) not in copies]
    twice = [f"{key.decode()} by {stage}" for (key, stage), n in copies.items() if n > 1]
    unexpected = [f"{key.decode()} by {stage}" for key, stage in copies
                  if stage not in produced[key][0].readers]
    odd_answers = {ticket.kind: (answer.status_code, answer.json()) for ticket, answer
                   in zip(odd, answers, strict=True)}
    misanswered = [f"{ticket.kind}: {odd_answers[ticket.kind]}" for ticket in odd
                   if odd_answers[ticket.kind][0] != ticket.status or (
                       ticket.field is not None and ticket.field not in
                       [f["field"] for f in odd_answers[ticket.kind][1].get("fields", [])])]
    results.add(Row.of("6 poison records and odd tickets", outcome,
                       seconds=time.monotonic() - began, recovery=(
        f"{len(produced)} poison records ({len(records)} kinds on 3 topics):"
        f" {len(copies)}/{expected_letters} dead-lettered by their readers, {len(twice)}"
        f" twice, {len(problems)} wrong; {len(odd)} odd tickets refused alone"
        f" ({len(misanswered)} wrong answers), {len(leaked)} reached a queue; later ticket"
        f" routed and its response counted (router {router_moved}, metrics"
        f" {metrics_moved}), forged response counted by neither"
        f"{shutdown.describe()}")))
    assert not misanswered, misanswered
    assert not missing, f"not dead-lettered: {missing}"
    assert not twice, f"dead-lettered more than once: {twice}"
    assert not unexpected, f"dead-lettered by a stage not among its readers: {unexpected}"
    assert not problems, "\n".join(problems)
    assert not leaked, "a poison record or an odd ticket reached a department queue"
    assert not outcome.lost, f"lost {sorted(outcome.lost)[:5]}; logs in {tmp_path / 'logs'}"
    assert not outcome.duplicated, f"duplicated {sorted(outcome.duplicated)[:5]}"
    assert len(outcome.acknowledged) == outcome.sent  # no good ticket refused
    assert reported.status_code == 202
    assert router_moved and metrics_moved
    assert responded == 1, "the forged response was counted by the metrics"
    assert target_state["status"] == target_after["status"] == "routed"
