"""The intake's transactional publisher against a real broker: callers shared between
several transactional producers, each call committed exactly once, a successor fencing
its predecessor's producers."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.core import envelope, kafka
from services.core.settings import Settings
from services.core.transactional_publisher import TransactionalPublisher
from tests import waits
from tests.conftest import read_topic, unique


def _event(n: int) -> envelope.Event:
    return envelope.Event(type="test.published", source="tests", ticket_id=f"t-{n}",
                          correlation_id=f"t-{n}", data={"n": n})


def _transactions() -> float:
    return REGISTRY.get_sample_value("routing_intake_transaction_requests_count") or 0.0


def _fenced() -> float:
    return REGISTRY.get_sample_value("routing_intake_producers_fenced_total") or 0.0


def _hold_first_producer(publisher: TransactionalPublisher) -> asyncio.Event:
    """Hold the first producer's transactions open until the event returned is set."""
    held, released = publisher._committers[0], asyncio.Event()
    commit = held.commit

    async def held_open(batch: list[Any]) -> None:
        await released.wait()
        await commit(batch)

    held.commit = held_open  # type: ignore[method-assign]
    return released


# Let the event loop run other tasks until a condition holds (bounded).
_turns_until = functools.partial(waits.until, every=0, looks=10_000)


class TestSharedProducers:
    async def test_concurrent_callers_are_each_committed_once(
            self, settings: Settings) -> None:
        topic = unique("group-commit")
        await kafka.ensure_topics(settings, [topic])
        publisher = TransactionalPublisher(settings, client_id="tests",
                                           transactional_id=unique("intake"), producers=3)
        callers = 60

        def wave(numbers: range) -> list[asyncio.Task[None]]:
            return [asyncio.create_task(publisher.publish(
                [kafka.Output(topic, f"k{n % 7}", _event(n))])) for n in numbers]

        try:
            first = wave(range(30))
            await _turns_until(lambda: len(publisher._queue) == 30)  # they queue up
            await _turns_until(lambda: not publisher._queue)  # a committer takes them
            # The first wave is in a committer's transaction, not yet committed: the
            # second is taken by another producer meanwhile.
            assert not any(task.done() for task in first)
            second = wave(range(30, callers))
            await asyncio.gather(*first, *second)
            started = sum(committer.connected for committer in publisher._committers)
        finally:
            await publisher.close()
        read = await read_topic(settings.kafka_bootstrap_servers, topic, until=callers)
        counts = Counter(event.data["n"] for event, _ in read)
        assert counts == Counter(range(callers))
        assert started >= 2

    async def test_under_load_a_free_producer_gathers_callers_into_one_transaction(
            self, settings: Settings) -> None:
        """Callers coming often (a few loop turns apart, within the 2 s window): the
        first is taken at once (nothing known of the rate yet) by a producer held open
        here until the next two are queued; a free producer does not take the second
        alone, it waits for the third to join. Three callers, two transactions (the
        intake's histogram of requests a transaction)."""
        topic = unique("group-commit-gather")
        await kafka.ensure_topics(settings, [topic])
        publisher = TransactionalPublisher(settings, client_id="tests",
                                           transactional_id=unique("intake"), producers=3,
                                           gather_seconds=2.0)
        released = _hold_first_producer(publisher)

        def call(n: int) -> asyncio.Task[None]:
            return asyncio.create_task(publisher.publish(
                [kafka.Output(topic, f"k{n}", _event(n))]))

        transactions_before = _transactions()
        try:
            first = call(0)
            await _turns_until(lambda: len(publisher._queue) == 1)
            await _turns_until(lambda: not publisher._queue)  # taken by the held producer
            second = call(1)
            await _turns_until(lambda: len(publisher._queue) == 1)
            third = call(2)
            # Without the gathering, a free producer would have taken the second alone.
            await _turns_until(lambda: len(publisher._queue) == 2)
            released.set()
            await asyncio.gather(first, second, third)
        finally:
            released.set()
            await publisher.close()
        assert _transactions() - transactions_before == 2
        read = await read_topic(settings.kafka_bootstrap_servers, topic, until=3)
        assert sorted(event.data["n"] for event, _ in read) == [0, 1, 2]

    async def test_callers_coming_less_often_than_the_window_are_not_held(
            self, settings: Settings) -> None:
        """A first caller, and one that comes a second after the last (less often than
        the 0.2 s window), are taken at once, whether or not a transaction is in flight:
        the wait would only delay them."""
        topic = unique("group-commit-sparse")
        await kafka.ensure_topics(settings, [topic])
        publisher = TransactionalPublisher(settings, client_id="tests",
                                           transactional_id=unique("intake"), producers=2,
                                           gather_seconds=0.2)
        released = _hold_first_producer(publisher)
        try:
            first = asyncio.create_task(publisher.publish(
                [kafka.Output(topic, "k0", _event(0))]))
            await _turns_until(lambda: len(publisher._queue) == 1)
            await _turns_until(lambda: not publisher._queue, looks=100)  # the held one
            await asyncio.sleep(1.0)
            second = asyncio.create_task(publisher.publish(
                [kafka.Output(topic, "k1", _event(1))]))
            await _turns_until(lambda: len(publisher._queue) == 1)
            # Gathering for 0.2 s would keep it queued far longer than these turns.
            await _turns_until(lambda: not publisher._queue, looks=100)
            released.set()
            await asyncio.gather(first, second)
        finally:
            released.set()
            await publisher.close()

    async def test_closing_ends_a_producers_wait_and_commits_what_it_gathered(
            self, settings: Settings) -> None:
        """With a window of an hour (and callers' deadlines further still), callers
        coming often stay queued while a producer waits; closing ends the wait and
        commits them (a wait that closing did not end would hold this test)."""
        topic = unique("group-commit-close")
        await kafka.ensure_topics(settings, [topic])
        publisher = TransactionalPublisher(
            settings.model_copy(update={"produce_timeout_seconds": 7200.0}),
            client_id="tests", transactional_id=unique("intake"), producers=1,
            gather_seconds=3600.0)

        def call(n: int) -> asyncio.Task[None]:
            return asyncio.create_task(publisher.publish(
                [kafka.Output(topic, f"k{n}", _event(n))]))

        await call(0)  # the first is taken at once: nothing is known of the rate yet
        later = [call(1), call(2)]
        await _turns_until(lambda: len(publisher._queue) == 2)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(publisher._queue) == 2  # gathered, not taken
        await publisher.close()
        await asyncio.gather(*later)
        read = await read_topic(settings.kafka_bootstrap_servers, topic, until=3)
        assert sorted(event.data["n"] for event, _ in read) == [0, 1, 2]

    async def test_each_producer_has_its_own_transactional_id(
            self, settings: Settings) -> None:
        publisher = TransactionalPublisher(settings, client_id="tests",
                                           transactional_id="intake-x", producers=2)
        ids = [committer._transactional_id for committer in publisher._committers]
        assert ids == ["intake-x-0", "intake-x-1"]
        await publisher.close()

    async def test_a_successor_with_the_same_ids_fences_its_predecessor(
            self, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
        topic = unique("group-commit-fence")
        await kafka.ensure_topics(settings, [topic])
        same_id = unique("intake")
        first = TransactionalPublisher(settings, client_id="tests", transactional_id=same_id,
                                       producers=1)
        second = TransactionalPublisher(settings, client_id="tests",
                                        transactional_id=same_id, producers=1)
        fenced_before = _fenced()
        try:
            await first.publish([kafka.Output(topic, "k", _event(1))])
            await second.publish([kafka.Output(topic, "k", _event(2))])
            assert _fenced() == fenced_before  # starting fences no live caller's request
            # The predecessor's producer was fenced: its next call fails, and is not
            # delivered later. Still running, it says what happened: two processes with
            # one INSTANCE_ID.
            with caplog.at_level(logging.ERROR, logger="services.core.transactional_publisher"), \
                    pytest.raises(kafka.PublishFailed):
                await first.publish([kafka.Output(topic, "k", _event(3))])
        finally:
            await first.close()
            await second.close()
        read = await read_topic(settings.kafka_bootstrap_servers, topic, until=2)
        assert sorted(event.data["n"] for event, _ in read) == [1, 2]
        assert _fenced() == fenced_before + 1
        fenced = [record for record in caplog.records if "INSTANCE_ID" in record.message]
        assert [(getattr(record, "transactional_id", None), getattr(record, "times_fenced", None))
                for record in fenced] == [(f"{same_id}-0", 1)]
