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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bench.rules_eval import sample_customer
from services.core import envelope, kafka, tickets
from services.core.settings import PROJECT_ROOT
from services.router import table_file
from services.router import worker as router_worker
from services.segmenter import rules_file
from services.segmenter import worker as segmenter_worker
from services.segmenter.profiles import Customer

Record = tuple[envelope.Headers, bytes]


def record(event: envelope.Event) -> Record:
    return envelope.to_headers(event), envelope.to_value(event)


def received(n: int) -> Record:
    ticket_id = str(uuid.uuid4())
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id=f"c-{n % 100}",
                            subject=f"Question {n}", body="Where is my order?" * 5,
                            channel="email", kind="question", received_at=datetime.now(UTC))
    return record(envelope.Event(type="ticket.received", source="/bench", ticket_id=ticket_id,
                                 correlation_id=ticket_id,
                                 data=ticket.model_dump(mode="json")))


def segmented(n: int) -> Record:
    segment, tier = [("government", "most_valuable"), ("business", "existing"),
                     ("growth", "most_growable"), ("general", "existing")][n % 4]
    ticket_id = str(uuid.uuid4())
    ticket = tickets.SegmentedTicket(
        ticket_id=ticket_id, customer_id=f"c-{n % 100}", subject=f"Question {n}",
        body="Where is my order?" * 5, channel="email", kind="question",
        received_at=datetime.now(UTC),
        segmentation=tickets.Segmentation(segment=segment, rule="r", rules_version="v",
                                          customer_known=True, tier=tier))
    return record(envelope.Event(type="ticket.segmented", source="/bench",
                                 ticket_id=ticket_id, correlation_id=ticket_id,
                                 data=ticket.model_dump(mode="json")))


Transform = Callable[[envelope.Event], Awaitable[list[kafka.Output]]]


async def per_ticket(transform: Transform, records: list[Record]) -> float:
    """Microseconds of CPU a ticket: read, transformed, its outputs written out."""
    started = time.process_time()
    for headers, value in records:
        kafka.records(await transform(envelope.from_record(headers, value)))
    return (time.process_time() - started) / len(records) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    customers = {f"c-{n}": sample_customer(n) for n in range(100)}

    async def lookup(customer_id: str, *, now: datetime) -> Customer:
        return customers[customer_id]

    rule_set = rules_file.load(PROJECT_ROOT / "config" / "segments.yaml")
    segmenter = segmenter_worker.SegmentTicket(lookup=lookup, current_rules=lambda: rule_set)
    table = table_file.load(PROJECT_ROOT / "config" / "routing.yaml")
    router = router_worker.RouteTicket(lambda: table)
    stages: dict[str, tuple[Transform, list[Record]]] = {
        "segmenter": (segmenter, [received(n) for n in range(args.tickets)]),
        "router": (router, [segmented(n) for n in range(args.tickets)]),
    }
    print(f"{args.tickets} tickets x {args.rounds} rounds, us of CPU a ticket in memory:")
    for name, (transform, records) in stages.items():
        rounds = []
        for _ in range(args.rounds):
            await segmenter.prefetch([])  # each round a batch of its own
            await router.prefetch([])
            rounds.append(await per_ticket(transform, records))
        print(f"  {name:10s} least {min(rounds):6.0f}   median {statistics.median(rounds):6.0f}")


if __name__ == "__main__":
    asyncio.run(main())
