"""THE BASELINE for bench/e2e.py: a hand-written Kafka pipeline, not the project's code.

What an engineer would write by hand for the same job, at least once (and, with
`--exactly-once`, the same stages as Kafka's transactions make them exactly once):
- an intake: FastAPI `POST /v1/tickets` validating a small pydantic model and producing
  the ticket to `<prefix>incoming` with aiokafka (`acks=all`, idempotent producer),
  answering 202 once the broker has acknowledged it (503 if it has not within 5 s);
- two bare stages, each consume -> add a field -> produce -> wait for the
  acknowledgements -> commit the consumed offsets: `<prefix>incoming` -> `<prefix>segmented`
  (adds `segment`) and `<prefix>segmented` -> `<prefix>dept.lane` (adds `department`);
- exactly once (`stage --exactly-once`, on the `baseline_eo.` topics): each stage reads
  `read_committed` and writes each batch in a transaction of one transactional producer
  (begin -> produce -> wait for the acknowledgements -> the consumed offsets into the
  transaction -> commit), what the project's stages do per partition.

Run as separate processes by bench/e2e.py:
    BASELINE_BOOTSTRAP=127.0.0.1:9092 BASELINE_TOPIC=baseline.incoming \
        uvicorn bench.baseline:app --port 8090 --no-access-log
    python -m bench.baseline stage --bootstrap 127.0.0.1:9092 --source baseline.incoming \
        --target baseline.segmented --group baseline.segmenter --add segment
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

PREFIX = "baseline."
EXACTLY_ONCE_PREFIX = "baseline_eo."


def topics(prefix: str) -> tuple[str, str, str]:
    """incoming, segmented and the department lane, under `prefix`."""
    return f"{prefix}incoming", f"{prefix}segmented", f"{prefix}dept.lane"


TOPICS = INCOMING, SEGMENTED, LANE = topics(PREFIX)


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128)
    subject: str = Field(min_length=1, max_length=500)
    body: str = Field(max_length=50_000)
    channel: Literal["email", "web", "chat", "phone", "social", "api"]
    kind: Literal["question", "complaint", "suggestion", "request", "incident",
                  "other"] | None = None


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    producer = AIOKafkaProducer(bootstrap_servers=os.environ["BASELINE_BOOTSTRAP"],
                                acks="all", enable_idempotence=True)
    await producer.start()
    app.state.producer = producer
    try:
        yield
    finally:
        await producer.stop()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/tickets", status_code=202)
async def post_ticket(ticket: TicketIn) -> dict[str, str]:
    producer: AIOKafkaProducer = app.state.producer
    ticket_id = uuid.uuid4().hex
    value = json.dumps({**ticket.model_dump(), "ticket_id": ticket_id,
                        "received_at": datetime.now(UTC).isoformat()}).encode()
    try:
        await asyncio.wait_for(
            producer.send_and_wait(os.environ.get("BASELINE_TOPIC", INCOMING), value,
                                   key=ticket.customer_id.encode()), 5.0)
    except (KafkaError, TimeoutError) as exc:
        raise HTTPException(503, "Kafka did not acknowledge", {"Retry-After": "5"}) from exc
    return {"ticket_id": ticket_id, "status": "accepted"}


def segment_of(ticket: dict[str, object]) -> str:
    customer = str(ticket.get("customer_id", ""))
    return ("government" if customer.startswith("gov") else
            "business" if customer.startswith("org") else "general")


def department_of(ticket: dict[str, object]) -> str:
    return {"government": "public_sector", "business": "business_desk"}.get(
        str(ticket.get("segment")), "customer_care")


async def forward(producer: AIOKafkaProducer,
                  batch: dict[TopicPartition, list[ConsumerRecord]], target: str,
                  field: str, decide: Callable[[dict[str, object]], str]) -> None:
    """Each record with its field added, sent to `target`; returns once acknowledged."""
    acks = []
    for records in batch.values():
        for record in records:
            ticket = json.loads(record.value)
            ticket[field] = decide(ticket)
            acks.append(await producer.send(target, json.dumps(ticket).encode(),
                                            key=record.key))
    await asyncio.gather(*acks)


async def stage(bootstrap: str, source: str, target: str, group: str, field: str,
                *, exactly_once: bool = False) -> None:
    """consume -> add a field -> produce -> wait for the acks -> commit, until SIGTERM;
    exactly once: the produce and the consumed offsets in one transaction per batch."""
    decide = segment_of if field == "segment" else department_of
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if exactly_once else "read_uncommitted")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        transactional_id=f"{group}.{source}" if exactly_once else None)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            if not batch:
                continue
            if not exactly_once:
                await forward(producer, batch, target, field, decide)
                await consumer.commit()
                continue
            async with producer.transaction():  # left by an exception: aborted
                await forward(producer, batch, target, field, decide)
                await producer.send_offsets_to_transaction(
                    {partition: records[-1].offset + 1
                     for partition, records in batch.items()}, group)
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="the baseline's bare stage")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("stage")
    run.add_argument("--bootstrap", required=True)
    run.add_argument("--source", required=True)
    run.add_argument("--target", required=True)
    run.add_argument("--group", required=True)
    run.add_argument("--add", choices=["segment", "department"], required=True)
    run.add_argument("--exactly-once", action="store_true",
                     help="read_committed, and each batch and its offsets in a transaction")
    args = parser.parse_args()
    asyncio.run(stage(args.bootstrap, args.source, args.target, args.group, args.add,
                      exactly_once=args.exactly_once))


if __name__ == "__main__":
    main()
