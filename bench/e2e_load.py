"""Load and observation for bench/e2e.py: an open-loop HTTP generator on raw keep-alive
connections and the department-lane reader (a separate process, `read_committed`); the
closed-loop generators are in bench/closed_loop.py."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

BODY = "The invoice of last month is missing from my account. Could you send it again?"


def ticket_body(customer_id: str, subject: str) -> bytes:
    return orjson.dumps({"customer_id": customer_id, "subject": subject, "body": BODY,
                         "channel": "email", "kind": "question"})


def post_request(port: int, token: str | None, body: bytes) -> bytes:
    head = (f"POST /v1/tickets HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    return head.encode() + b"\r\n" + body


def percentile(values: list[float], q: float) -> float:
    """Nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Connection:
    """One HTTP/1.1 keep-alive connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = True
        self.used = 0  # answers read on it

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
            elif name == b"transfer-encoding":
                raise ValueError("chunked answers are not expected")
        if length:
            await self.reader.readexactly(length)
        self.used += 1
        return status

    def close(self) -> None:
        self.writer.close()


@dataclass
class Sent:
    subject: str
    scheduled: float  # wall clock (time.time()), as every figure here
    sent: float
    answered: float
    status: int  # 0: no answer within the timeout, or the connection failed
    error: str = ""  # why there was no answer


async def open_loop(port: int, rate: float, seconds: float,
                    make_request: Callable[[int], tuple[str, bytes]], *,
                    answer_within: float = 10.0, max_connections: int = 1024
                    ) -> list[Sent]:
    """Send round(rate * seconds) requests at fixed times, whatever the server does: a
    request due while every open connection is busy opens another (up to
    `max_connections`)."""
    idle: list[Connection] = []
    results: list[Sent] = []
    slots = asyncio.Semaphore(max_connections)

    async def one(subject: str, request: bytes, scheduled: float) -> None:
        async with slots:
            connection = idle.pop() if idle else None
            sent = time.time()
            error = ""
            try:
                if connection is None:
                    connection = await asyncio.wait_for(Connection.open(port), answer_within)
                sent = time.time()
                try:
                    status = await asyncio.wait_for(connection.exchange(request),
                                                    answer_within)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if connection.used == 0:
                        raise
                    # The server closed this idle keep-alive connection (uvicorn: after
                    # 5 s): send again on a new one, as HTTP clients do.
                    connection.close()
                    connection = await asyncio.wait_for(Connection.open(port), answer_within)
                    sent = time.time()
                    status = await asyncio.wait_for(connection.exchange(request),
                                                    answer_within)
                if connection.reusable:
                    idle.append(connection)
                else:
                    connection.close()
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                status, error = 0, type(exc).__name__
                if connection is not None:
                    connection.close()
            results.append(Sent(subject, scheduled, sent, time.time(), status, error))

    loop = asyncio.get_running_loop()
    total = round(rate * seconds)
    start = loop.time() + 0.1
    wall = time.time() - loop.time()
    tasks = []
    n = 0
    while n < total:
        now = loop.time()
        while n < total and start + n / rate <= now:
            subject, request = make_request(n)
            tasks.append(asyncio.create_task(one(subject, request, wall + start + n / rate)))
            n += 1
        if n < total:
            await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return results


async def assigned(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """The partitions of `topics`, once a consumer without a group has them all."""
    for _ in range(600):
        partitions = list(consumer.assignment())
        if partitions and {p.topic for p in partitions} >= set(topics):
            return sorted(partitions)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no partitions assigned for {topics}")


def subject_of(value: bytes) -> str | None:
    """A bench ticket's subject, from a record of any hop: the ticket itself, a CloudEvent
    carrying it as its data, or data holding it as `ticket`."""
    with contextlib.suppress(orjson.JSONDecodeError):
        found = orjson.loads(value)
        for _ in range(3):
            if not isinstance(found, dict):
                return None
            if isinstance(found.get("subject"), str):
                return str(found["subject"])
            found = found.get("data", found.get("ticket"))
    return None


def reader_process(bootstrap: str, topics: list[str], hops: list[str], pipe: Pipe) -> None:
    """Entry point of the lane reader's process."""
    asyncio.run(read_lanes(bootstrap, topics, hops, pipe))


async def read_lanes(bootstrap: str, topics: list[str], hops: list[str], pipe: Pipe) -> None:
    """Read the lanes from their current end (`read_committed`), noting when each subject
    is first and again seen; told the accepted subjects, stop once all are seen and
    `settle` more seconds passed (duplicates show), or at the drain deadline; send back
    {subject: [wall-clock read times]} and, for each topic of `hops` (the topics a ticket
    crosses on its way, read alike), {topic: {subject: first read time}}."""
    consumer = AIOKafkaConsumer(*topics, *hops, bootstrap_servers=bootstrap,
                                isolation_level="read_committed", enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = await assigned(consumer, [*topics, *hops])
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        pipe.send("ready")
        seen: dict[str, list[float]] = {}
        crossed: dict[str, dict[str, float]] = {hop: {} for hop in hops}
        missing: set[str] | None = None
        settle = deadline = math.inf
        complete_at: float | None = None
        while True:
            batch = await consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.time()
            for partition, records in batch.items():
                if partition.topic in crossed:
                    for record in records:
                        subject = subject_of(record.value)
                        if subject is not None:
                            crossed[partition.topic].setdefault(subject, now)
                    continue
                for record in records:
                    with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                        subject = orjson.loads(record.value)["subject"]
                        seen.setdefault(subject, []).append(now)
                        if missing is not None:
                            missing.discard(subject)
            if missing is None and pipe.poll():
                # (accepted subjects, settle, grace deadline[, drain deadline]): past the
                # grace, wait on (at most to the drain deadline) for the stragglers, so
                # that the next step starts without this one's backlog.
                expected, settle, grace_end, *drain = pipe.recv()
                deadline = drain[0] if drain else grace_end
                missing = set(expected) - seen.keys()
            if missing is not None:
                if not missing and complete_at is None:
                    complete_at = now
                if (complete_at is not None and now - complete_at >= settle) or now >= deadline:
                    break
        pipe.send((seen, crossed))
    finally:
        await consumer.stop()


async def lane_offsets(bootstrap: str, topics: list[str]) -> int:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = await assigned(consumer, topics)
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def wait_quiet(bootstrap: str, topics: list[str], *, still: float = 3.0,
                     limit: float = 120.0) -> float:
    """Wait until no record is added to `topics` for `still` seconds (a backlog drained),
    at most `limit` seconds; returns how long it took."""
    began = time.monotonic()
    last = await lane_offsets(bootstrap, topics)
    unchanged_since = time.monotonic()
    while time.monotonic() - began < limit:
        await asyncio.sleep(1.0)
        now = await lane_offsets(bootstrap, topics)
        if now != last:
            last, unchanged_since = now, time.monotonic()
        elif time.monotonic() - unchanged_since >= still:
            break
    return time.monotonic() - began
