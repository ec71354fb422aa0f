"""What every fault scenario shares besides its load (`ticket_load`) and its watch on the
department queues (`lane_watch`): the pipeline's services run and stopped, and the final
count of tickets acknowledged (202) against tickets delivered.

Times are `time.monotonic()` seconds throughout (the event loop's clock too)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.kafka_broker import LocalKafka
from services.core import envelope, topics
from services.router import table_file
from tests.conftest import (
    TEST_ROUTING_TABLE,
    Pipeline,
    department_lanes,
    read_topic,
    readable,
    unique,
)
from tests.faults import kafka_logs
from tests.faults.lane_watch import Watch
from tests.faults.ticket_load import Load


def all_lanes() -> list[str]:
    """Every lane topic of every department of the test routing table."""
    return department_lanes(*table_file.load(TEST_ROUTING_TABLE).departments)


@dataclass
class Shutdown:
    """How the pipeline's services ended when stopped (SIGTERM, SIGKILL after 20 s)."""

    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def unclean(self) -> list[str]:
        # uvicorn raises SIGTERM again after a clean shutdown; None: stopped earlier.
        return [name for name, code in self.exit_codes.items()
                if code not in (0, -signal.SIGTERM, None)]

    def describe(self) -> str:
        unclean = self.unclean()
        return f"; SIGTERM did not end {', '.join(unclean)} (killed)" if unclean else ""


@contextlib.asynccontextmanager
async def running(pipeline: Pipeline) -> AsyncIterator[Shutdown]:
    """Start the pipeline's services (blocking calls, off the event loop); stop them all
    at once after, and record how each ended."""
    shutdown = Shutdown()
    try:
        await asyncio.to_thread(pipeline.start)
        yield shutdown
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(service.stop)
                                       for service in pipeline.services.values()))
        shutdown.exit_codes.update(zip(pipeline.services, codes, strict=True))


def drain_time(load: Load, watch: Watch, since: float) -> float | None:
    """Seconds from `since` (the fault's end) until every ticket acknowledged by then was
    in a department queue; None if some never arrived."""
    due = [ticket_id for ticket_id, answer in load.acknowledged.items()
           if answer.answered_at <= since]
    if any(ticket_id not in watch.first_seen for ticket_id in due):
        return None
    return max([watch.first_seen[ticket_id] - since for ticket_id in due] + [0.0])


@dataclass(frozen=True)
class Outcome:
    """Tickets acknowledged over HTTP against copies found in the department queues."""

    sent: int
    acknowledged: frozenset[str]
    copies: Counter[str] = field(default_factory=Counter)
    subject_of: dict[str, str] = field(default_factory=dict)

    @property
    def delivered(self) -> set[str]:
        return set(self.acknowledged & self.copies.keys())

    @property
    def lost(self) -> set[str]:
        return set(self.acknowledged - self.copies.keys())

    @property
    def duplicated(self) -> set[str]:
        return {ticket_id for ticket_id, count in self.copies.items() if count > 1}

    @property
    def unacknowledged(self) -> set[str]:
        """Delivered although the POST got no 202 (503, or the intake died answering)."""
        return set(self.copies.keys() - self.acknowledged)

    @property
    def tickets_per_request(self) -> Counter[str]:
        """How many ticket ids each posted ticket (its subject) was delivered under."""
        return Counter(self.subject_of.values())


async def settle(bootstrap: str, load: Load, watch: Watch, *,
                 within: float = 90.0) -> Outcome:
    """Wait (bounded) until the watch saw every acknowledged ticket, then count them all
    afresh: a new `read_committed` reader over every lane, from the start."""
    acknowledged = load.acknowledged
    await watch.wait_for(acknowledged, within=within)
    watched = sum(count for ticket_id, count in watch.copies.items()
                  if load.owns_subject(watch.subject_of[ticket_id]))
    found = await read_topic(bootstrap, *all_lanes(), until=max(len(acknowledged), watched),
                             within=30.0, settle=1.0, keep=load.owns)
    return Outcome(sent=load.sent, acknowledged=frozenset(acknowledged),
                   copies=Counter(str(event.ticket_id) for event, _ in found),
                   subject_of={str(event.ticket_id): str(event.data["subject"])
                               for event, _ in found})


async def lost_by_the_broker(broker: LocalKafka, ticket_ids: set[str]) -> set[str]:
    """Of tickets acknowledged and not delivered, those Kafka itself lost after taking
    their intake transaction's commit: each of the ticket's records on `tickets.incoming`
    (one per attempt: a retry with the same Idempotency-Key keeps the ticket id) is
    aborted (a `read_committed` reader went past its offset without it), yet the
    coordinator's log shows its transaction prepared to commit
    (`kafka_logs.committed_by_the_coordinator`). An attempt answered 503 whose commit the
    broker took therefore never excuses another attempt lost some other way.

    A single broker killed between a transaction's commit and its markers does this (Kafka
    4.4.0, KAFKA-20734): when the controller fences the restarted broker's old
    registration, every partition is briefly without a leader, and a coordinator
    completing a commit then takes them for deleted and writes them no markers; each such
    partition's records go with the producer's next transaction, committed or aborted.
    With three brokers a partition keeps a leader. Any other loss is not counted here."""
    if not ticket_ids:
        return set()

    def wanted(event: envelope.Event) -> bool:
        return event.ticket_id in ticket_ids

    bootstrap = broker.bootstrap_servers
    written, _ = await _read_all(bootstrap, topics.INCOMING, "read_uncommitted", wanted)
    committed, passed = await _read_all(bootstrap, topics.INCOMING, "read_committed", wanted)
    aborted = {request: place for request, place in written.items()
               if request not in committed and place.offset < passed.get(place.partition, 0)}
    if not aborted:
        return set()
    records = kafka_logs.batches(await asyncio.to_thread(
        broker.dump_log, {f"{topics.INCOMING}-{place.partition}" for place in aborted.values()}))
    states = kafka_logs.transaction_states(await asyncio.to_thread(
        broker.dump_log, broker.partitions("__transaction_state"), transaction_log=True))
    taken = {request for request, place in aborted.items()
             if kafka_logs.committed_by_the_coordinator(
                 f"{topics.INCOMING}-{place.partition}", place.offset, place.created_ms,
                 records, states)}
    attempts: dict[str, set[tuple[str, str]]] = {}
    for request in written:
        attempts.setdefault(request[0], set()).add(request)
    return {ticket_id for ticket_id, requests in attempts.items() if requests <= taken}


@dataclass(frozen=True)
class _Place:
    """Where a record is, and when its producer made it (its CreateTime)."""

    partition: int
    offset: int
    created_ms: int


async def _read_all(bootstrap: str, topic: str, isolation_level: str,
                    keep: Callable[[envelope.Event], bool],
                    ) -> tuple[dict[tuple[str, str], _Place], dict[int, int]]:
    """The topic's events that `keep` keeps, by (ticket id, time), with where each is;
    and, by partition, the offset the reader got to (for `read_committed`, the last
    stable offset: a record before it and not read was aborted)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique("lost"),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level=isolation_level)
    found: dict[tuple[str, str], _Place] = {}
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        ends: dict[TopicPartition, int] = {}
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for event, record in readable(batch):
                if keep(event):
                    found[(str(event.ticket_id), event.time.isoformat())] = _Place(
                        record.partition, record.offset, record.timestamp)
            assigned = consumer.assignment()
            if assigned and not ends:
                ends = await consumer.end_offsets(list(assigned))
            if ends and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                break
        reached = {tp.partition: await consumer.position(tp) for tp in ends}
    finally:
        await consumer.stop()
    return found, reached
