"""Segmenter memory with a large customer base, beside the bare stage's, in the same run.

    .venv/bin/python -m bench.segmenter_memory [--customers 1000000] [--fill 120000]
        [--rate 300] [--seconds 120] [--zipf 1.0] [--unknown 0.05] [--store FILE] [--keep DIR]

Starts a Kafka broker (KRaft, loopback) in a temporary folder and a SQLite store holding
`--customers` customers (bench/customer_base.py: customers, purchases, value features and
tiers written in bulk; `--store FILE` keeps the store for the next run), then the real
segmenter process as the run command starts it, with its defaults (`python -m
services.segmenter`: exactly once, customer cache of its default size and lifetime) and,
beside it, the bare consume -> add a field -> produce -> commit stage of bench/baseline.py.
Every ticket goes to both. Their RSS (VmRSS) is sampled every 0.5 s through two phases:
- fill: `--fill` tickets, each from another customer (more customers than the cache
  holds), sent at once; the phase ends when the segmenter has committed them all (at most
  `--drain-timeout` seconds);
- load: a constant `--rate` tickets/s (open loop) for `--seconds`, customers drawn with
  Zipf-like popularity (the customer of rank r with weight 1/r**zipf, ranks shuffled over
  the base) and a share `--unknown` of ids the store does not know (new customers); the
  cache hit ratio this stream gives a cache of the segmenter's size and lifetime is
  stated (simulated beside the stream).
Prints RSS at start, peak and steady (median of the load's last third) and the growth
over the load (mean of its last quarter minus its second quarter), for both, and their
ratio. Stops by itself; every process it started is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from cachetools import TTLCache

from bench import baseline, customer_base
from devtools import ports, processes
from devtools.kafka_broker import LocalKafka
from services.core import envelope, kafka, migrate, tickets, topics
from services.core.settings import PROJECT_ROOT, Settings

MIB = 1024


class RssTimeline:
    """VmRSS of some processes, sampled in a thread: (seconds, phase, KiB) per process."""

    def __init__(self, pids: dict[str, int], every: float = 0.5) -> None:
        self.pids = pids
        self.every = every
        self.phase = "start"
        self.samples: dict[str, list[tuple[float, str, int]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._began = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, ValueError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.samples[name].append((time.monotonic() - self._began,
                                                       self.phase, int(line.split()[1])))

    def __enter__(self) -> RssTimeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def of(self, name: str, phase: str | None = None) -> list[int]:
        return [kib for _, p, kib in self.samples[name] if phase is None or p == phase]


def prepare_store(path: Path, customers: int) -> None:
    asyncio.run(migrate.upgrade(f"sqlite+aiosqlite:///{path}"))
    with contextlib.closing(sqlite3.connect(path)) as connection:
        held = connection.execute("SELECT count(*) FROM customers").fetchone()[0]
    if held >= customers:
        print(f"store {path}: {held} customers already", flush=True)
        return
    if held:
        raise SystemExit(f"{path} holds {held} customers, fewer than {customers}: remove it")
    began = time.monotonic()
    written = customer_base.write(str(path), customers)
    print(f"store {path}: wrote {written} in {time.monotonic() - began:.0f}s", flush=True)


def record(customer_id: str, n: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    ticket_id = str(uuid.uuid4())
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id=customer_id,
                            subject=f"Question {n}", body="Where is my order? " * 5,
                            channel="email", kind="question", received_at=datetime.now(UTC))
    event = envelope.Event(type="ticket.received", source="/bench", ticket_id=ticket_id,
                           correlation_id=ticket_id, data=ticket.model_dump(mode="json"))
    return envelope.to_value(event), envelope.to_headers(event)


class Load:
    """Tickets to the segmenter's topic and the bare stage's, the same to both."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.sent = 0

    async def send(self, customer_id: str) -> None:
        value, headers = record(customer_id, self.sent)
        key = customer_id.encode()
        await self.producer.send(topics.INCOMING, value, key=key, headers=headers)
        await self.producer.send(baseline.INCOMING, value, key=key)
        self.sent += 1


def popularity(customers: int, zipf: float, unknown: float, seed: int = 3
               ) -> Iterator[str]:
    """Customer ids, endlessly: Zipf-like ranks shuffled over the base, some unknown."""
    rng = random.Random(seed)
    weights = list(itertools.accumulate(1 / rank ** zipf for rank in range(1, customers + 1)))
    stride = 7919  # a prime not dividing the base: rank -> customer is one to one
    while True:
        if rng.random() < unknown:
            yield f"new-{rng.randrange(10**9):09d}"
        else:
            rank = rng.choices(range(customers), cum_weights=weights)[0]
            yield customer_base.customer_id(rank * stride % customers)


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta)


async def drive(bootstrap: str, args: argparse.Namespace, rss: RssTimeline) -> dict[str, float]:
    settings = Settings()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await producer.start()
    await admin.start()
    load = Load(producer)
    figures: dict[str, float] = {}

    async def drained(what: str) -> None:
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            done = await committed(admin, "segmenter", topics.INCOMING)
            if done >= load.sent:
                break
            await asyncio.sleep(1)
        figures[f"segmenter committed after {what}"] = done
        figures[f"tickets sent by the end of {what}"] = load.sent

    try:
        rss.phase = "fill"
        began = time.monotonic()
        stride = 104_729
        for n in range(args.fill):
            await load.send(customer_base.customer_id(n * stride % args.customers))
        await producer.flush()
        await drained("fill")
        figures["fill seconds"] = time.monotonic() - began
        rss.phase = "load"
        cache: TTLCache[str, bool] = TTLCache(settings.customer_cache_size,
                                              settings.customer_cache_ttl_seconds)
        hits = 0
        stream = popularity(args.customers, args.zipf, args.unknown)
        began = time.monotonic()
        load_sent = 0
        while (elapsed := time.monotonic() - began) < args.seconds:
            while load_sent < elapsed * args.rate:
                customer_id = next(stream)
                hits += customer_id in cache
                cache[customer_id] = True
                await load.send(customer_id)
                load_sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        figures["load tickets"] = load_sent
        figures["offered rate, tickets/s"] = load_sent / args.seconds
        figures["stated cache hit ratio"] = hits / max(1, load_sent)
        rss.phase = "drain"
        await drained("load")
    finally:
        await admin.close()
        await producer.stop()
    return figures


def summary(kib: list[int]) -> dict[str, float]:
    if not kib:
        return {}
    quarter = max(1, len(kib) // 4)
    return {"peak": max(kib) / MIB, "steady": statistics.median(kib[-max(1, len(kib) // 3):])
            / MIB, "growth": (statistics.mean(kib[-quarter:])
                              - statistics.mean(kib[quarter:2 * quarter] or kib)) / MIB}


def _measure(kib: list[int], what: str) -> float:
    if not kib:
        return 0.0
    return kib[0] / MIB if what == "first" else summary(kib)[what]


def report(rss: RssTimeline, figures: dict[str, float]) -> None:
    for name, value in figures.items():
        print(f"{name:45s} {value:,.2f}" if isinstance(value, float) and value < 10
              else f"{name:45s} {value:,.0f}")
    print(f"\n{'RSS, MB':32s} {'segmenter':>10s} {'bare stage':>11s} {'ratio':>6s}")
    rows: list[tuple[str, str | None, str]] = [("at start (no ticket yet)", "start", "first")]
    rows += [(f"{phase}: {what}", phase, what)
             for phase in ("fill", "load") for what in ("peak", "steady", "growth")]
    rows.append(("overall peak", None, "peak"))
    for label, phase, what in rows:
        ours, bare = (_measure(rss.of(name, phase), what) for name in ("segmenter", "bare"))
        ratio = f"{ours / bare:6.1f}" if bare > 1 else "     -"
        print(f"{label:32s} {ours:10.0f} {bare:11.0f} {ratio}")
    samples = rss.samples["segmenter"]
    print("\nsegmenter RSS over time (s, phase, MB):")
    for at, phase, kib in samples[::max(1, len(samples) // 16)] + samples[-1:]:
        print(f"  {at:7.1f} {phase:6s} {kib / MIB:7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--fill", type=int, default=120_000,
                        help="tickets from distinct customers before the load")
    parser.add_argument("--rate", type=float, default=300.0, help="tickets/s during the load")
    parser.add_argument("--seconds", type=float, default=120.0, help="the load's duration")
    parser.add_argument("--zipf", type=float, default=1.0, help="popularity exponent")
    parser.add_argument("--unknown", type=float, default=0.05,
                        help="share of tickets from ids the store does not know")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--store", type=Path, help="the SQLite store, kept (made if absent)")
    parser.add_argument("--keep", type=Path, help="keep the broker, store and logs here")
    args = parser.parse_args()

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    home = args.keep or Path(tempfile.mkdtemp(prefix="bench-memory-"))
    home.mkdir(parents=True, exist_ok=True)
    store = args.store or home / "store.db"
    broker = LocalKafka(home / "kafka", heap="512m")
    segmenter: processes.ServiceProcess | None = None
    bare: subprocess.Popen[bytes] | None = None
    try:
        prepare_store(store, args.customers)
        broker.start()
        bootstrap = broker.bootstrap_servers
        asyncio.run(kafka.ensure_topics(Settings(kafka_bootstrap_servers=bootstrap),
                                        [*topics.PIPELINE, *baseline.TOPICS]))
        service_ports = {name: ports.free_port() for name in processes.SERVICES}
        env = processes.service_env(bootstrap=bootstrap,
                                    database_url=f"sqlite+aiosqlite:///{store}",
                                    ports=service_ports)
        segmenter = processes.ServiceProcess("segmenter", service_ports["segmenter"], env,
                                             home / "logs" / "segmenter.log")
        segmenter.start()
        with (home / "logs" / "bare.log").open("ab") as log:
            bare = subprocess.Popen(
                [sys.executable, "-m", "bench.baseline", "stage", "--bootstrap", bootstrap,
                 "--source", baseline.INCOMING, "--target", baseline.SEGMENTED,
                 "--group", "baseline.segmenter", "--add", "segment"],
                cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        segmenter.wait_ready(timeout=300)
        assert segmenter.process is not None
        with RssTimeline({"segmenter": segmenter.process.pid, "bare": bare.pid}) as rss:
            time.sleep(2)
            figures = asyncio.run(drive(bootstrap, args, rss))
        report(rss, figures)
    except KeyboardInterrupt:
        print("interrupted; stopping", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if segmenter is not None:
            segmenter.stop()
        if bare is not None:
            ports.terminate(bare, 20)
        broker.stop()
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
