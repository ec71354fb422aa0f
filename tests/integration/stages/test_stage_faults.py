"""How a stage meets each class of fault, on a real broker: a record at fault is set
aside to the dead letters with its reason and the batch goes on; an outage is waited
out; a transient failure is retried a bounded number of times."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy.exc import DataError, OperationalError

from services.core import envelope, faults, kafka, pipeline, service_context
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import app as router_app
from services.router import worker
from tests import waits
from tests.conftest import department_lanes, read_topic, unique
from tests.faults import poison
from tests.integration.stages.stage_records import TABLE, publish, segmented_event


class Scripted:
    """The real router transform, with faults scripted per ticket (a Batching and
    Prefetching transform, as the real stages are)."""

    def __init__(self) -> None:
        self._route = worker.RouteTicket(lambda: TABLE)
        self.in_batch: list[str] = []
        self.bad_in_transform: set[str] = set()
        self.bad_in_batch_write: set[str] = set()
        self.never_ready: set[str] = set()
        self.tries: Counter[str] = Counter()  # of the tickets never ready
        self.outage_calls = 0  # the next calls meet the store unreachable
        self.silent_calls = 0  # the next calls meet a store that does not answer
        self.seconds_a_record = 0.0  # how long each record takes
        self.calls = 0
        self.ready_during_outage: list[int] = []  # what /readyz answers meanwhile
        self.waiting_during_outage: list[float | None] = []  # routing_stage_waiting_for_outage
        self.runner: StageRunner | None = None
        # A router service (its app, without its lifespan) whose main stage the runner
        # is: its /readyz is asked during the outage.
        self.context: service_context.ServiceContext | None = None
        self.follows = False  # the runner is the service's follower, not its main stage
        self.service: httpx.AsyncClient | None = None

    async def prefetch(self, events: Sequence[envelope.Event]) -> None:
        self.in_batch = []
        await self._route.prefetch(events)  # a new batch, as the stage starts each attempt

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        self.calls += 1
        if self.outage_calls:
            self.outage_calls -= 1
            if self.runner is not None:
                self.waiting_during_outage.append(waiting_for_outage(self.runner))
            if self.service is not None:
                readyz = await self.service.get("/readyz")
                self.ready_during_outage.append(readyz.status_code)
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("store down"))
        if self.silent_calls:
            self.silent_calls -= 1
            raise TimeoutError  # what a statement past its limit raises (db.engine)
        ticket_id = event.ticket_id or ""
        await asyncio.sleep(self.seconds_a_record)
        if ticket_id in self.bad_in_transform:
            raise KeyError("a value the code did not expect")
        if ticket_id in self.never_ready:
            self.tries[ticket_id] += 1
            raise faults.Transient("its state is not written yet")
        self.in_batch.append(ticket_id)
        return list(await self._route(event))

    async def finish_batch(self) -> None:
        if self.bad_in_batch_write & set(self.in_batch):
            # What PostgreSQL says of a value longer than its column.
            raise DataError("INSERT ...", {}, ValueError("value too long"))


async def run_stage(settings: Settings, transform: Scripted, events: list[envelope.Event],
                    producer: AIOKafkaProducer, *, wanted: int, dead: int,
                    after: Callable[[], Awaitable[None]] | None = None,
                    ) -> tuple[list[str], list[dict[str, str]], StageRunner]:
    """Publish the events, run a router stage with the transform until `wanted` are in
    the lanes and `dead` in the dead letters, then `after()`, before the stage stops; the
    routed ids and the dead letters' headers."""
    ids = {event.ticket_id for event in events}
    # A topic of its own: the shared broker's tickets.segmented holds other tests' records.
    source = unique("segmented")
    await kafka.ensure_topics(settings, [source])
    for event in events:
        await publish(producer, source, event)
    runner = StageRunner(settings, name=unique("stage"), source_topic=source,
                         group_id=unique("router"), transform=transform)
    transform.runner = runner
    if transform.context is not None and transform.follows:
        transform.context.followers = [runner]
    elif transform.context is not None:
        transform.context.stage = runner
    runner.loop._retry_pause = 0.05
    runner.loop._max_retry_pause = 0.2
    await runner.start()
    try:
        routed = await read_topic(settings.kafka_bootstrap_servers,
                                  *department_lanes(*TABLE.departments), until=wanted,
                                  within=60, settle=1.0, keep=lambda e: e.ticket_id in ids)
        letters = await poison.read_dead_letters(
            settings.kafka_bootstrap_servers,
            lambda record: dict(record.headers).get("ce_ticketid", b"").decode() in ids,
            until=dead, within=30)
        if after is not None:
            await after()
    finally:
        await runner.stop()
    return ([str(event.ticket_id) for event, _ in routed],
            [{name: raw.decode() for name, raw in record.headers} for record in letters],
            runner)


class TestRecordAtFault:
    async def test_an_unexpected_error_on_one_record_dead_letters_it_and_the_rest_flow(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        events = [segmented_event("government") for _ in range(5)]
        transform = Scripted()
        transform.bad_in_transform = {str(events[2].ticket_id)}
        routed, letters, _ = await run_stage(stage_settings, transform, events, raw_producer,
                                             wanted=4, dead=1)
        assert sorted(routed) == sorted(str(e.ticket_id) for e in events
                                        if e is not events[2])
        assert [letter["ce_ticketid"] for letter in letters] == [events[2].ticket_id]
        assert letters[0]["dlq_error_class"] == "KeyError"
        assert letters[0]["dlq_error"] == "unexpected KeyError while processing the record"
        assert "did not expect" not in str(letters)  # the message may hold the data

    async def test_a_batch_write_failing_on_one_record_sets_only_that_record_aside(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        events = [segmented_event("government") for _ in range(6)]
        transform = Scripted()
        transform.bad_in_batch_write = {str(events[4].ticket_id)}
        routed, letters, runner = await run_stage(stage_settings, transform, events,
                                                  raw_producer, wanted=5, dead=1)
        assert sorted(routed) == sorted(str(e.ticket_id) for e in events
                                        if e is not events[4])
        assert [letter["ce_ticketid"] for letter in letters] == [events[4].ticket_id]
        assert letters[0]["dlq_error_class"] == "DataError"
        assert letters[0]["dlq_source_topic"].startswith("segmented-")
        assert runner.loop.dead_lettered == 1


class TestTransient:
    async def test_a_record_that_never_becomes_ready_is_dead_lettered_after_bounded_tries(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        events = [segmented_event("government") for _ in range(3)]
        transform = Scripted()
        transform.never_ready = {str(events[0].ticket_id)}
        routed, letters, _ = await run_stage(stage_settings, transform, events, raw_producer,
                                             wanted=2, dead=1)
        assert sorted(routed) == sorted(str(e.ticket_id) for e in events[1:])
        assert [letter["ce_ticketid"] for letter in letters] == [events[0].ticket_id]
        assert letters[0]["dlq_error"] == "its state is not written yet"
        assert letters[0]["dlq_error_class"] == "Transient"
        # Tried, then retried MAX_ATTEMPTS times (the last alone): README's "at most 5".
        assert transform.tries == {events[0].ticket_id: 1 + pipeline.MAX_ATTEMPTS}


class TestTooLargeForItsTransaction:
    async def test_a_share_past_the_transaction_timeout_is_tried_smaller(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        """Twenty records taking 0.15 s each, in transactions given 1 s: a share of all
        of them never finishes in time, and retried whole (as an outage is) it never
        would. Halved at each timeout, every ticket is routed once."""
        events = [segmented_event("government") for _ in range(20)]
        transform = Scripted()
        transform.seconds_a_record = 0.15
        ids = {event.ticket_id for event in events}
        source = unique("segmented")
        await kafka.ensure_topics(stage_settings, [source])
        for event in events:  # one key: one partition, one share
            await publish(raw_producer, source, event)
        runner = StageRunner(stage_settings, name=unique("stage"), source_topic=source,
                             group_id=unique("router"), transform=transform)
        runner.loop.transaction_timeout_seconds = 1.0
        runner.loop._retry_pause = 0.05
        runner.loop._max_retry_pause = 0.2
        await runner.start()
        try:
            routed = await read_topic(stage_settings.kafka_bootstrap_servers,
                                      *department_lanes(*TABLE.departments),
                                      until=len(events), within=90,
                                      keep=lambda e: e.ticket_id in ids)
        finally:
            await runner.stop()
        assert Counter(event.ticket_id for event, _ in routed) == dict.fromkeys(ids, 1)
        assert runner.loop.dead_lettered == 0


@contextlib.asynccontextmanager
async def service_of(transform: Scripted,
                     settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A router service's app (no lifespan) whose main stage is the one run_stage runs
    with `transform`, and a client of its HTTP API."""
    app = router_app.create_app(settings)
    transform.context = service_context.of(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://router") as client:
        transform.service = client
        yield client


def runner_of(transform: Scripted) -> StageRunner:
    assert transform.runner is not None
    return transform.runner


def waited_out(events: list[envelope.Event], routed: list[str],
               letters: list[dict[str, str]], runner: StageRunner) -> None:
    """Every ticket routed, none dead-lettered."""
    assert sorted(routed) == sorted(str(e.ticket_id) for e in events)
    assert letters == []
    assert runner.loop.dead_lettered == 0


def waiting_for_outage(runner: StageRunner) -> float | None:
    return REGISTRY.get_sample_value("routing_stage_waiting_for_outage",
                                     {"stage": runner.loop.name})


class TestOutage:
    async def test_an_outage_is_waited_out_and_nothing_is_dead_lettered(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        events = [segmented_event("government") for _ in range(3)]
        transform = Scripted()
        transform.outage_calls = 3 * pipeline.MAX_ATTEMPTS  # more than any bound
        ready_after: list[int] = []
        async with service_of(transform, stage_settings) as service:

            async def ready_again() -> None:  # once the share that went through is done
                await waits.until(lambda: runner_of(transform).running)
                ready_after.append((await service.get("/readyz")).status_code)

            routed, letters, runner = await run_stage(
                stage_settings, transform, events, raw_producer, wanted=3, dead=0,
                after=ready_again)
        waited_out(events, routed, letters, runner)
        assert transform.outage_calls == 0
        # README: /readyz is 200 until a batch meets the outage, 503 from then on while it
        # lasts, 200 again once a batch goes through.
        assert transform.ready_during_outage[0] == 200
        assert set(transform.ready_during_outage[1:]) == {503}
        assert ready_after == [200]
        # README: the gauge is 1 while it waits, after its first failed try, 0 after.
        assert transform.waiting_during_outage[0] == 0
        assert set(transform.waiting_during_outage[1:]) == {1}
        assert waiting_for_outage(runner) == 0

    async def test_a_follower_waiting_out_an_outage_leaves_readiness_alone(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        """README: readiness follows the main stage's batches; a follower whose batches
        meet an outage waits it out and is not down (only one that ended is)."""
        events = [segmented_event("government") for _ in range(3)]
        transform = Scripted()
        transform.outage_calls = 3 * pipeline.MAX_ATTEMPTS
        transform.follows = True
        async with service_of(transform, stage_settings):
            assert transform.context is not None
            transform.context.started_without_stage = True  # ready but for its follower
            routed, letters, runner = await run_stage(
                stage_settings, transform, events, raw_producer, wanted=3, dead=0)
        waited_out(events, routed, letters, runner)
        assert transform.outage_calls == 0
        assert set(transform.waiting_during_outage[1:]) == {1}  # it did wait
        assert set(transform.ready_during_outage) == {200}

    async def test_a_store_that_does_not_answer_is_an_outage_not_an_overrun(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            caplog: pytest.LogCaptureFixture) -> None:
        """A statement past DATABASE_STATEMENT_TIMEOUT_SECONDS raises TimeoutError: the
        stage waits it out as the store's outage. Taken for its own transaction overrunning
        its time, it would replace the partition's producer and halve its share."""
        events = [segmented_event("government") for _ in range(3)]
        transform = Scripted()
        transform.silent_calls = 3 * pipeline.MAX_ATTEMPTS  # more than any bound
        with caplog.at_level(logging.WARNING, logger=pipeline.__name__):
            routed, letters, runner = await run_stage(stage_settings, transform, events,
                                                      raw_producer, wanted=3, dead=0)
        waited_out(events, routed, letters, runner)
        assert transform.silent_calls == 0
        faults_told = [getattr(r, "fault", None) for r in caplog.records]
        assert faults.Fault.OUTAGE.value in faults_told
        assert not [r for r in caplog.records if "did not finish" in r.getMessage()]
        assert not runner.loop._share_cap  # no share halved, as an overrun's would be


class TestUnreadable:
    async def test_a_record_the_client_cannot_read_is_set_aside_and_the_rest_flow(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        """A record whose header name is not UTF-8 (written with kcat; aiokafka cannot
        read it, and raised out of every fetch of its partition, for good) between two
        tickets of a partition, after an aborted transaction, and tickets on the other
        partitions fetched with it: the record alone is dead-lettered, at its offset,
        every ticket routed once, and the stage goes on."""
        bootstrap = stage_settings.kafka_bootstrap_servers
        source = unique("segmented")
        await kafka.ensure_topics(stage_settings, [source])
        events = [segmented_event("government") for _ in range(6)]
        for event in events[:2]:
            await raw_producer.send_and_wait(source, envelope.to_value(event), partition=0,
                                             headers=envelope.to_headers(event))
        # An aborted transaction's record and its marker (offsets 2 and 3) before it: the
        # consumer's position stays before them while the client skips them.
        aborted = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                   transactional_id=unique("aborted"))
        await aborted.start()
        try:
            await aborted.begin_transaction()
            await aborted.send_and_wait(source, b"never committed", partition=0)
            await aborted.abort_transaction()
        finally:
            await aborted.stop()
        kcat = await asyncio.create_subprocess_exec(
            b"kcat", b"-P", b"-b", bootstrap.encode(), b"-t", source.encode(), b"-p", b"0",
            b"-H", b"\xff\xfename=value", stdin=asyncio.subprocess.PIPE)
        await asyncio.wait_for(kcat.communicate(b"not a ticket\n"), 60)
        assert kcat.returncode == 0
        for position, event in enumerate(events[2:]):
            await raw_producer.send_and_wait(source, envelope.to_value(event),
                                             partition=position % 3,
                                             headers=envelope.to_headers(event))
        runner = StageRunner(stage_settings, name=unique("stage"), source_topic=source,
                             group_id=unique("router"), transform=Scripted())
        ids = {event.ticket_id for event in events}
        await runner.start()
        try:
            routed = await read_topic(bootstrap, *department_lanes(*TABLE.departments),
                                      until=len(events), within=60,
                                      keep=lambda e: e.ticket_id in ids)
            letters = await poison.read_dead_letters(
                bootstrap, lambda record: dict(record.headers).get(
                    "dlq_source_topic", b"") == source.encode(), until=1, within=30)
            still_running = runner.running
        finally:
            await runner.stop()
        assert Counter(event.ticket_id for event, _ in routed) == dict.fromkeys(ids, 1)
        (letter,) = letters
        headers = {name: raw.decode() for name, raw in letter.headers}
        assert (headers["dlq_source_partition"], headers["dlq_source_offset"]) == ("0", "4")
        assert "cannot read this record" in headers["dlq_error"]
        assert headers["dlq_error_class"] == "Unreadable"
        assert still_running
