"""What a stage does for each ticket in memory, measured alone: microseconds of CPU per
ticket for the segmenter's and the router's transforms, with no Kafka, no store and no
event loop work beyond the calls themselves.

    .venv/bin/python -m bench.stage_work [--tickets 3000] [--rounds 5]

Each ticket is read from the bytes a record holds (its CloudEvents headers and JSON
value), goes through the stage's real transform, and its outputs (the ticket for the
next topic and its lifecycle event) are written out as records:
- segmenter: `SegmentTicket` with the rules of config/segments.yaml, its customers given
  from memory (what its cache holds for a warm customer);
- router: `RouteTicket` with the table of config/routing.yaml, no store (a stage's
  store write is one statement a share, measured in bench/stage_throughput.py).

The objects each stage holds once built are frozen out of the garbage collector's
passes, as a stage's start freezes them (services/core/collector.py).

Why: bench/stage_throughput.py sets a stage beside a bare consume-and-produce loop. The
bare loop's time a ticket plus this work is the least a stage can take, so
bare / (bare + this) is the highest ratio a stage can reach without cutting this work.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from bench.rules_eval import sample_customer
from services.core import collector, envelope, kafka, tickets, topics
from services.core.settings import PROJECT_ROOT
from services.router import table_file
from services.router import worker as router_worker
from services.segmenter import rules_file
from services.segmenter import worker as segmenter_worker
from services.segmenter.profiles import Customer

CUSTOMERS = 100


class Stage(Protocol):
    """A stage's transform, as its pipeline calls it (services/core/pipeline.py)."""

    async def prefetch(self, events: Sequence[envelope.Event]) -> None: ...

    async def __call__(self, event: envelope.Event) -> Sequence[kafka.Publishable]: ...


def segmenter() -> Stage:
    """The segmenter's transform with the rules of config/segments.yaml, every customer
    known and given from memory (what its cache holds for a warm customer)."""
    customers = {f"c-{n}": sample_customer(n) for n in range(CUSTOMERS)}

    async def lookup(customer_id: str, *, now: datetime) -> Customer:
        return customers[customer_id]

    rule_set = rules_file.load(PROJECT_ROOT / "config" / "segments.yaml")
    return segmenter_worker.SegmentTicket(lookup=lookup, current_rules=lambda: rule_set)


def router() -> Stage:
    """The router's transform with the table of config/routing.yaml, without a store."""
    table = table_file.load(PROJECT_ROOT / "config" / "routing.yaml")
    return router_worker.RouteTicket(lambda: table)


def received(n: int) -> envelope.Record:
    """The n-th ticket as the intake writes it to `tickets.incoming`."""
    ticket_id = str(uuid.uuid4())
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id=f"c-{n % CUSTOMERS}",
                            subject=f"Question {n}", body="Where is my order?" * 5,
                            channel="email", kind="question", received_at=datetime.now(UTC))
    return envelope.encode(topics.INCOMING, ticket.customer_id, envelope.Event(
        type="ticket.received", source="/bench", ticket_id=ticket_id,
        correlation_id=ticket_id, data=ticket.model_dump(mode="json")))


def segmented(n: int) -> envelope.Record:
    """The n-th ticket as the segmenter writes it to `tickets.segmented`."""
    segment, tier = [("government", "most_valuable"), ("business", "existing"),
                     ("growth", "most_growable"), ("general", "existing")][n % 4]
    ticket_id = str(uuid.uuid4())
    ticket = tickets.SegmentedTicket(
        ticket_id=ticket_id, customer_id=f"c-{n % CUSTOMERS}", subject=f"Question {n}",
        body="Where is my order?" * 5, channel="email", kind="question",
        received_at=datetime.now(UTC),
        segmentation=tickets.Segmentation(segment=segment, rule="r", rules_version="v",
                                          customer_known=True, tier=tier))
    return envelope.encode(topics.SEGMENTED, ticket.customer_id, envelope.Event(
        type="ticket.segmented", source="/bench", ticket_id=ticket_id,
        correlation_id=ticket_id, data=ticket.model_dump(mode="json")))


# Each stage, and the records it reads.
STAGES: dict[str, tuple[Callable[[], Stage], Callable[[int], envelope.Record]]] = {
    "segmenter": (segmenter, received), "router": (router, segmented)}


def _dropped(_records: list[envelope.Record]) -> None:
    """Outputs not kept: the measurement holds no more than the stage would."""


async def through(stage: Stage, records: Sequence[envelope.Record],
                  written: Callable[[list[envelope.Record]], object] = _dropped) -> None:
    """Each record read, transformed and its outputs written out (handed to `written`),
    in a batch of their own, as the stage's loop starts one for a share."""
    await stage.prefetch([])
    for record in records:
        written(kafka.records(await stage(envelope.from_record(record.headers,
                                                                record.value))))


async def per_ticket(stage: Stage, records: Sequence[envelope.Record]) -> float:
    """Microseconds of CPU a ticket going `through` the stage."""
    started = time.process_time()
    await through(stage, records)
    return (time.process_time() - started) / len(records) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.tickets < 1 or args.rounds < 1:
        parser.error("--tickets and --rounds must be 1 or more")
    print(f"{args.tickets} tickets x {args.rounds} rounds, us of CPU a ticket in memory:")
    for name, (build, record) in STAGES.items():
        stage = build()
        # As a stage does when it starts consuming (core/pipeline.py): what it holds for
        # good is left out of the collector's passes; the records read come after.
        collector.freeze_what_is_loaded()
        records = [record(n) for n in range(args.tickets)]
        rounds = [await per_ticket(stage, records) for _ in range(args.rounds)]
        print(f"  {name:10s} least {min(rounds):6.0f}   median {statistics.median(rounds):6.0f}")


if __name__ == "__main__":
    asyncio.run(main())
