"""The intake's group commit bounds a transaction by its records' bytes as well as by its
requests: a platform sending the largest tickets, within its rate limit, would otherwise
fill the transactions other platforms' requests share with megabytes, past their
deadline. Its committer stands in for the broker here (it records each transaction and
commits it): which requests go together is decided before any Kafka call."""

from __future__ import annotations

import asyncio
from typing import Any

from services.core import envelope, kafka, transactional_publisher
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


def test_a_record_is_counted_as_a_producer_writes_it() -> None:
    assert ticket(1, size=1000).size >= 1000
    assert kafka.records([ticket(1, size=10)])[0].size == ticket(1, size=10).size
