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
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import baseline, customer_base, rss_timeline, ticket_stream
from devtools import ports, processes
from devtools.kafka_broker import LocalKafka
from services.core import kafka, migrate, topics
from services.core.settings import PROJECT_ROOT, Settings


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
        settings = processes.one_machine(Settings(kafka_bootstrap_servers=bootstrap))
        asyncio.run(kafka.ensure_topics(settings, [*topics.PIPELINE, *baseline.TOPICS]))
        service_ports = ports.free_ports_by_name(processes.SERVICES)
        env = processes.service_env(bootstrap=bootstrap,
                                    database_url=f"sqlite+aiosqlite:///{store}",
                                    ports=service_ports,
                                    topic_partitions=settings.kafka_topic_partitions)
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
        pids = {"segmenter": segmenter.process.pid, "bare": bare.pid}
        with rss_timeline.RssTimeline(pids) as rss:
            time.sleep(2)
            figures = asyncio.run(ticket_stream.drive(bootstrap, args, rss))
        rss_timeline.report(rss, figures)
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
