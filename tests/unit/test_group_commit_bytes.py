"""The intake's group commit bounds a transaction by its records' bytes as well as by its
requests: a platform sending the largest tickets, within its rate limit, would otherwise
fill the transactions other platforms' requests share with megabytes, past their
deadline. Its committer stands in for the broker here (it records each transaction and
commits it): which requests go together is decided before any Kafka call."""

from __future__ import annotations

import asyncio
from typing import Any

from services.core import envelope, transactional_publisher
from services.core.settings import Settings
from services.core.transactional_publisher import (
    MAX_REQUESTS_PER_TRANSACTION,
    MAX_TRANSACTION_BYTES,
    TransactionalPublisher,
)


def ticket(n: int, *, size: int) -> envelope.Record:
    return envelope.Record("tickets.incoming", f"t-{n}".encode(), b"x" * size, [])


async def transactions(sizes: list[int]) -> tuple[list[list[int]], int]:
    """The requests (by their number) each transaction held, and how many committed."""
    publisher = TransactionalPublisher(Settings(), client_id="tests",
                                       transactional_id="tests-intake", producers=1)
    committed: list[list[int]] = []
    committer = publisher._committers[0]
    release = asyncio.Event()

    async def commit(batch: list[Any]) -> None:
        await release.wait()  # every request queued before the first is taken further
        committed.append([int(request.records[0].key.decode()[2:]) for request in batch])
        transactional_publisher._settle(batch, None)

    committer.commit = commit  # type: ignore[method-assign]
    calls = [asyncio.create_task(publisher.publish([ticket(n, size=size)]))
             for n, size in enumerate(sizes)]
    for _ in range(100):
        await asyncio.sleep(0)
    release.set()
    done = await asyncio.gather(*calls, return_exceptions=True)
    await publisher.close()
    return committed, sum(result is None for result in done)


async def test_large_requests_share_no_transaction_past_the_bytes_bound() -> None:
    large, small = 900_000, 500
    sizes = [small, *[large] * 9, small, small]
    committed, ok = await transactions(sizes)
    assert ok == len(sizes)
    assert sorted(n for batch in committed for n in batch) == list(range(len(sizes)))
    for batch in committed:
        assert sum(ticket(n, size=sizes[n]).size for n in batch) <= MAX_TRANSACTION_BYTES
    # First come, first taken: four of the large ones fit the bound, a fifth does not.
    assert committed == [[0, 1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]


async def test_a_request_larger_than_the_bound_goes_alone() -> None:
    sizes = [MAX_TRANSACTION_BYTES + 1, 10]
    committed, ok = await transactions(sizes)
    assert (committed, ok) == ([[0], [1]], 2)


async def test_small_requests_are_bounded_by_their_count() -> None:
    sizes = [100] * (MAX_REQUESTS_PER_TRANSACTION + 20)
    committed, ok = await transactions(sizes)
    assert ok == len(sizes)
    assert [len(batch) for batch in committed] == [MAX_REQUESTS_PER_TRANSACTION, 20]


async def test_a_gathering_ends_once_a_transactions_bytes_are_queued() -> None:
    """The wait for more callers (INTAKE_GATHER_MS) ends once a full transaction is
    queued: 500 requests, or their bytes at the bound. Read right after the callers
    queued, before a committer runs (tasks run in the order they were made)."""
    for sizes, full in (([500] * 10, False), ([900_000] * 5, True)):
        publisher = TransactionalPublisher(Settings(), client_id="tests",
                                           transactional_id="tests-intake", producers=1,
                                           gather_seconds=1.0)
        publisher._committers[0].commit = settle  # type: ignore[method-assign]
        calls = [asyncio.create_task(publisher.publish([ticket(n, size=size)]))
                 for n, size in enumerate(sizes)]
        await asyncio.sleep(0)
        assert len(publisher._queue) == len(sizes)
        assert publisher._full.is_set() is full
        await asyncio.gather(*calls)
        await publisher.close()


async def settle(batch: list[Any]) -> None:
    transactional_publisher._settle(batch, None)
