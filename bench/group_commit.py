"""The intake's publisher alone: callers per second through the transactional group commit
(one producer, then the default INTAKE_PRODUCERS and INTAKE_GATHER_MS) beside a plain
idempotent `acks=all` producer (the hand-written intake's), on one broker in one run.

    .venv/bin/python -m bench.group_commit [--callers 1,16,64] [--seconds 4] [--runs 3]

Each caller publishes one ticket-sized record and waits for its acknowledgement (for the
group commit: its transaction's commit), then the next, for `--seconds`. Prints the
median of `--runs` per figure and the ratio to the plain producer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


async def per_second(publisher: AnyPublisher, callers: int, seconds: float) -> float:
    await publisher.publish([record(-1)])  # connected (and, for transactions, initialised)
    done = 0
    end = time.monotonic() + seconds

    async def caller(number: int) -> None:
        nonlocal done
        while time.monotonic() < end:
            await publisher.publish([record(number)])
            done += 1

    began = time.monotonic()
    await asyncio.gather(*(caller(n) for n in range(callers)))
    rate = done / (time.monotonic() - began)
    await publisher.close()
    return rate


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
                  ) -> dict[tuple[str, int], list[float]]:
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    await kafka.ensure_topics(settings, [TOPIC])
    found: dict[tuple[str, int], list[float]] = {}
    for run in range(runs):
        for name, make in publishers(settings, run).items():
            for count in callers:
                rate = await per_second(make(), count, seconds)
                found.setdefault((name, count), []).append(rate)
                print(f"  run {run + 1}: {name}, {count} callers: {rate:,.0f}/s", flush=True)
    return found


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
    names = list(dict.fromkeys(name for name, _ in found))
    print(f"\n{'publisher (median of ' + str(args.runs) + ')':<34}"
          + "".join(f"{str(c) + ' callers':>14}" for c in callers))
    for name in names:
        cells = []
        for count in callers:
            rate = statistics.median(found[(name, count)])
            base = statistics.median(found[(names[0], count)])
            cells.append(f"{rate:>8,.0f} {rate / base:4.2f}x")
        print(f"{name:<34}" + "".join(f"{cell:>14}" for cell in cells))


if __name__ == "__main__":
    main()
