"""Warm a freshly started broker's JIT before anything is measured on it.

A new Kafka JVM compiles its hot paths while it serves: measured on this machine, under
50 one-record transactions a second with one `read_committed` reader, its compiler
threads used about 0.45 of a core in the first 10 s, 0.26 after 20 s, 0.12 after 60 s
and 0.04 after 80 s, against 0.15-0.25 for the broker's own request handling. Whatever
ran first on the broker paid for that (and took it from the pipeline's processes on a
2-core machine).

`warm` runs what the pipelines will ask of the broker (idempotent sends, transactions
with their offsets, `read_committed` fetches, group commits) on a scratch topic, as fast
as it goes, until the compiler threads' CPU over the last few seconds falls under a
bound, or a time limit passes; it says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.core import kafka
from services.core.settings import Settings

TOPIC = "bench.warmup"
COMPILER_THREADS = ("C1 CompilerThre", "C2 CompilerThre")  # /proc comm, cut at 15 chars
SETTLED_CORES = 0.05  # the compiler threads' CPU, in cores, under which the JIT is settled


@dataclass(frozen=True)
class Warmed:
    seconds: float
    compiler_cores: float  # the compiler threads' CPU over the last window, in cores
    settled: bool  # under the bound (else the time limit ran out)


def compiler_ticks(pid: int) -> dict[str, int]:
    """Clock ticks each of the JVM's JIT compiler threads has used so far, by thread id
    (the JVM starts and ends compiler threads as the load goes)."""
    ticks: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().strip() in COMPILER_THREADS:
                fields = (task / "stat").read_text().rpartition(")")[2].split()
                ticks[task.name] = int(fields[11]) + int(fields[12])
    return ticks


def compiler_seconds_between(before: dict[str, int], after: dict[str, int]) -> float:
    """CPU seconds the compiler threads used between two readings, summed over the
    threads alive at the second (one started meanwhile counts from zero; one ended
    meanwhile is left out, and its total with it)."""
    used = sum(ticks - before.get(thread, 0) for thread, ticks in after.items())
    return max(used, 0) / os.sysconf("SC_CLK_TCK")


async def _load(bootstrap: str, stop: asyncio.Event) -> None:
    group = f"warmup-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group,
                                isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="latest")
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    transactional = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                     enable_idempotence=True, transactional_id=group)

    async def read() -> None:
        while not stop.is_set():
            if await consumer.getmany(timeout_ms=200):
                await consumer.commit()

    reader: asyncio.Task[None] | None = None
    try:
        for client in (consumer, plain, transactional):
            await client.start()
        reader = asyncio.create_task(read())
        n = 0
        while not stop.is_set():
            n += 1
            await plain.send_and_wait(TOPIC, b"w" * 600, key=str(n).encode())
            async with transactional.transaction():
                await (await transactional.send(TOPIC, b"t" * 600, key=str(n).encode()))
                await transactional.send_offsets_to_transaction(
                    {TopicPartition(TOPIC, 0): n}, f"{group}-transactions")
    finally:
        stop.set()
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)
        for client in (transactional, plain, consumer):
            with contextlib.suppress(Exception):
                await client.stop()


async def warm(bootstrap: str, pid: int, *, max_seconds: float = 150.0,
               window: float = 5.0, bound_cores: float = SETTLED_CORES) -> Warmed:
    """Load the broker until its compiler threads used under `bound_cores` over the last
    `window` seconds (after at least two windows), or for `max_seconds`."""
    await kafka.ensure_topics(Settings(kafka_bootstrap_servers=bootstrap), [TOPIC])
    stop = asyncio.Event()
    load = asyncio.create_task(_load(bootstrap, stop))
    began = time.monotonic()
    cores = float("inf")
    try:
        while time.monotonic() - began < max_seconds and not load.done():
            before = compiler_ticks(pid)
            await asyncio.sleep(window)
            cores = compiler_seconds_between(before, compiler_ticks(pid)) / window
            if cores < bound_cores and time.monotonic() - began >= 2 * window:
                break
    finally:
        stop.set()
        await load
    return Warmed(time.monotonic() - began, cores, cores < bound_cores)


def until_settled(pid: int, max_seconds: float, window: Callable[[], object]) -> Warmed:
    """Run `window` (a pipeline's own load for a while) again and again until the
    broker's compiler threads used under SETTLED_CORES over one (after two at least), or
    `max_seconds` passed; the last window may end after them.

    The broker's own warm-up (`warm`) leaves it compiling again for each pipeline's
    requests: under the project's closed loop right after it, its compiler threads used
    0.31, 0.13, 0.09 and 0.05 of a core in four windows of 15 s."""
    began, windows, cores = time.monotonic(), 0, float("inf")
    while time.monotonic() - began < max_seconds:
        before, started = compiler_ticks(pid), time.monotonic()
        window()
        cores = compiler_seconds_between(before, compiler_ticks(pid)) / (
            time.monotonic() - started)
        windows += 1
        if windows >= 2 and cores < SETTLED_CORES:
            break
    return Warmed(time.monotonic() - began, cores, cores < SETTLED_CORES)
