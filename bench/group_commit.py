"""The intake's publisher alone: callers per second through the transactional group commit
(one producer, then the default INTAKE_PRODUCERS and INTAKE_GATHER_MS) beside a plain
idempotent `acks=all` producer (the hand-written intake's), on one broker in one run.

    .venv/bin/python -m bench.group_commit [--callers 1,16,64] [--seconds 4] [--runs 3]

Each caller publishes one ticket-sized record and waits for its acknowledgement (for the
group commit: its transaction's commit), then the next, for `--seconds`. Prints the
median of `--runs` per figure and the ratio to the plain producer: callers per second,
and the CPU this process spent a call (user and system: the Kafka client's work, and the
bench's own making of each record, the same for every publisher; the broker runs apart)
and, for the group commit, a transaction, after a second of the same load (each of a
group commit's producers starts at its first transaction). With one caller every
transaction holds one record, so the difference to the plain producer's CPU a call is
what a transaction itself costs the client (its requests to add the partition, to
commit, and those asked again while the broker finishes the last one's markers).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY

from devtools.kafka_broker import LocalKafka
from services.core import envelope, kafka
from services.core.settings import Settings
from services.core.transactional_publisher import TransactionalPublisher

TOPIC = "bench.group-commit"
BODY = "x" * 600  # about a ticket's record


def record(n: int) -> kafka.Output:
    return kafka.Output(TOPIC, f"customer-{n % 97}", envelope.Event(
        type="bench", source="bench", ticket_id=f"t-{n}", correlation_id=f"t-{n}",
        data={"n": n, "body": BODY}))


AnyPublisher = kafka.Publisher | TransactionalPublisher


@dataclass(frozen=True)
class Measured:
    per_second: float
    cpu_ms_a_call: float
    cpu_ms_a_transaction: float | None  # None: no transactions (the plain producer)


def transactions() -> float:
    return REGISTRY.get_sample_value("routing_intake_transaction_requests_count") or 0.0


WARM_UP_SECONDS = 1.0


async def measured(publisher: AnyPublisher, callers: int, seconds: float) -> Measured:
    """The callers for `seconds`, after a warm-up of the same load: each of a group
    commit's producers starts at its first transaction (connection, init_transactions),
    and that is not what a call costs."""
    done = 0

    async def caller(number: int, until: float) -> None:
        nonlocal done
        while time.monotonic() < until:
            await publisher.publish([record(number)])
            done += 1

    warm_until = time.monotonic() + WARM_UP_SECONDS
    await asyncio.gather(*(caller(n, warm_until) for n in range(callers)))
    done = 0
    began, cpu, committed = time.monotonic(), time.process_time(), transactions()
    await asyncio.gather(*(caller(n, began + seconds) for n in range(callers)))
    rate = done / (time.monotonic() - began)
    cpu_ms = 1000 * (time.process_time() - cpu)
    committed = transactions() - committed
    await publisher.close()
    return Measured(rate, cpu_ms / done, cpu_ms / committed if committed else None)


def publishers(settings: Settings, run: int) -> dict[str, Callable[[], AnyPublisher]]:
    return {
        "plain idempotent producer": lambda: kafka.Publisher(settings, client_id="bench"),
        "group commit, 1 producer": lambda: TransactionalPublisher(
            settings, client_id="bench", transactional_id=f"bench-one-{run}", producers=1),
        f"group commit, {settings.intake_producers} producers": lambda: TransactionalPublisher(
            settings, client_id="bench", transactional_id=f"bench-pool-{run}",
            producers=settings.intake_producers,
            gather_seconds=settings.intake_gather_ms / 1000),
    }


async def measure(bootstrap: str, callers: list[int], seconds: float, runs: int
                  ) -> dict[tuple[str, int], list[Measured]]:
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    await kafka.ensure_topics(settings, [TOPIC])
    found: dict[tuple[str, int], list[Measured]] = {}
    for run in range(runs):
        for name, make in publishers(settings, run).items():
            for count in callers:
                figures = await measured(make(), count, seconds)
                found.setdefault((name, count), []).append(figures)
                print(f"  run {run + 1}: {name}, {count} callers: {figures.per_second:,.0f}/s,"
                      f" CPU {figures.cpu_ms_a_call:.3f} ms a call"
                      + ("" if figures.cpu_ms_a_transaction is None else
                         f", {figures.cpu_ms_a_transaction:.3f} ms a transaction"),
                      flush=True)
    return found


def median(figures: list[Measured], field: str) -> float | None:
    values = [getattr(figure, field) for figure in figures]
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def table(found: dict[tuple[str, int], list[Measured]], callers: list[int], runs: int,
          field: str, title: str, digits: int) -> None:
    names = list(dict.fromkeys(name for name, _ in found))
    # Against the plain producer (the first): its callers per second, or its CPU a call.
    base_field = field if field == "per_second" else "cpu_ms_a_call"
    print(f"\n{title + ' (median of ' + str(runs) + ')':<60}"
          + "".join(f"{str(c) + ' callers':>16}" for c in callers))
    for name in names:
        cells = []
        for count in callers:
            value = median(found[(name, count)], field)
            base = median(found[(names[0], count)], base_field)
            cells.append("-" if value is None else f"{value:>9,.{digits}f} "
                         + (f"{value / base:4.2f}x" if base else ""))
        print(f"{name:<60}" + "".join(f"{cell:>16}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    callers = [int(c) for c in args.callers.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="bench-group-commit-") as home, \
            LocalKafka(Path(home) / "kafka", heap="768m").running() as bootstrap:
        found = asyncio.run(measure(bootstrap, callers, args.seconds, args.runs))
    table(found, callers, args.runs, "per_second", "callers per second", 0)
    table(found, callers, args.runs, "cpu_ms_a_call", "CPU ms a call", 3)
    table(found, callers, args.runs, "cpu_ms_a_transaction",
          "CPU ms a transaction (ratio to a plain call)", 3)


if __name__ == "__main__":
    main()
