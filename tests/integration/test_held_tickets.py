"""Tickets held as dead letters, on the real broker and the real SQL store (SQLite and
PostgreSQL): a ticket accepted (202) that the segmenter or the router stage dead-lettered
is read off `tickets.dlq` by the router's reader of the dead letters (held_follower) and
answered 409 `held` (by which stage, when; no Retry-After) to an admin, on
`GET /v1/tickets/{id}`, a department's report, a transfer and a priority change, and to
the platform that posted it on a customer reply; a department (the ticket is in none)
and another platform are answered exactly as on an id of no ticket. Routing it (a replay
that succeeded) forgets it. Only the router's APIs and that reader run (no pipeline
stage): the test dead-letters a ticket's record as a stage does (faults.dead_letter)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devtools import ports
from services.core import (
    background,
    db,
    dead_letter_reading,
    envelope,
    events,
    faults,
    kafka,
    replay_markers,
    topics,
)
from services.core.settings import Settings
from services.router import (
    dead_letter_records,
    dead_letters,
    erasures,
    held_follower,
    held_tickets,
    platform_reports,
    ticket_ids,
    tickets_api,
)
from services.router.held_store import HeldTickets
from services.router.held_tickets import Held
from services.router.models import HeldTicketRow
from services.router.store import Dispatch, RoutedTickets
from tests import credentials, lag_polls, waits
from tests.conftest import unique
from tests.router_apis import intake_apis, routed_ticket

PLATFORM, OTHER_PLATFORM = "helpdesk", "zd-test"
DEPARTMENT = "customer_care"
# How long a test waits for the reader to hold a ticket it dead-lettered (it reads the
# shared topic from the start: other tests' dead letters come first). Only a bound.
HELD_WITHIN_SECONDS = 60.0
# Each stage whose input is tickets, by the topic its dead letters name as their source.
STAGES = [(topics.INCOMING, "segmenter", events.TicketEventType.RECEIVED),
          (topics.SEGMENTED, "router", events.TicketEventType.SEGMENTED)]


@dataclass
class Router:
    client: httpx.AsyncClient
    routed: RoutedTickets
    held: HeldTickets
    producer: AIOKafkaProducer
    headers: dict[str, dict[str, str]]  # by platform, "admin" and DEPARTMENT
    reader: asyncio.Task[None]
    stop: asyncio.Event  # the reader's
    settings: Settings

    async def dead_letter(self, source: str, stage: str, kind: str,
                          platform: str = PLATFORM, *, ticket_id_header: bytes | None = None,
                          partition: int | None = None,
                          text: str = "Invoice") -> tuple[str, str]:
        """A ticket of `platform` (issued now) dead-lettered by `stage` as a stage does:
        the ticket's id and its dead letter's (`ticket_id_header`: its ce_ticketid
        header as a producer wrote it, in place of the ticket's id; `partition`: the dead
        letter's, in place of its key's; `text`: the ticket's subject)."""
        ticket_id = ticket_ids.issue(datetime.now(UTC))
        event = envelope.Event(type=kind, source="/test", ticket_id=ticket_id,
                               correlation_id=ticket_id,
                               data={"ticket_id": ticket_id, "customer_id": "c-1",
                                     "subject": text, "platform": platform})
        value = envelope.to_value(event)
        record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
            topic=source, partition=0, offset=0, timestamp=0, timestamp_type=0, key=b"c-1",
            value=value, checksum=None, serialized_key_size=3,
            serialized_value_size=len(value), headers=envelope.to_headers(event))
        letter = faults.dead_letter(record, faults.Unprocessable("no lanes"), stage=stage)
        headers = letter.headers if ticket_id_header is None else [
            *((name, value) for name, value in letter.headers if name != "ce_ticketid"),
            ("ce_ticketid", ticket_id_header)]
        metadata = await self.producer.send_and_wait(letter.topic, letter.value,
                                                     key=letter.key, headers=headers,
                                                     partition=partition)
        return ticket_id, dead_letter_reading.dead_letter_id(metadata.partition,
                                                             metadata.offset)

    async def until_held(self, ticket_id: str) -> Held:
        found: list[Held] = []

        async def held() -> bool:
            found[:] = [each for each in [await self.held.get(ticket_id)] if each is not None]
            return bool(found)

        await waits.until(held, within=HELD_WITHIN_SECONDS, every=0.1)
        return found[0]

    async def state(self, ticket_id: str, who: str) -> httpx.Response:
        return await self.client.get(f"/v1/tickets/{ticket_id}", headers=self.headers[who])

    async def reply(self, ticket_id: str, platform: str = PLATFORM) -> httpx.Response:
        return await self.client.post(f"/v1/tickets/{ticket_id}/customer-replies", json={},
                                      headers=self.headers[platform])

    async def asked(self, ticket_id: str, who: str, asked: str) -> httpx.Response:
        """`who`'s department report (`responded`), transfer or priority change of the
        ticket."""
        path, body = {"report": ("events", {"type": "responded"}),
                      "transfer": ("transfer", {"to_department": DEPARTMENT, "reason": "r"}),
                      "priority": ("priority", {"priority": 1, "reason": "r"})}[asked]
        return await self.client.post(f"/v1/tickets/{ticket_id}/{path}", json=body,
                                      headers=self.headers[who])


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Router]:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.DEAD_LETTERS])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    try:
        async with intake_apis(database_url, kafka_bootstrap, tmp_path, tickets_api.api,
                               platform_reports.api) as apis:
            # The reader as the router's app runs it, in a group of this test's own.
            reader = asyncio.create_task(held_follower.follow(
                settings, apis.held, stop, group_id=unique("held")))
            try:
                yield Router(apis.client, apis.routed, apis.held, producer, {
                    **{platform: await credentials.headers_of(apis.credentials, "platform",
                                                              platform)
                       for platform in (PLATFORM, OTHER_PLATFORM)},
                    "admin": await credentials.headers_of(apis.credentials, "admin"),
                    DEPARTMENT: await credentials.headers_of(apis.credentials, "department",
                                                             DEPARTMENT)}, reader, stop, settings)
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await reader
    finally:
        await producer.stop()


def told(ticket_id: str, held: Held, *, operator: bool) -> str:
    said = (f"ticket {ticket_id!r} was dead-lettered by the {held.stage} stage at"
            f" {held.held_at.isoformat()}")
    if operator:
        said += f" (dead letter {held.dead_letter_id}, Unprocessable)"
    return said + ("; it is held there until an operator replays it (`routing dead-letters"
                   " replay`): asking again will not route it")


@pytest.mark.parametrize(("source", "stage", "kind"), STAGES)
class TestATicketHeldAsADeadLetter:
    async def test_its_state_is_told_held_by_the_stage_to_an_admin(
            self, router: Router, source: str, stage: str, kind: str) -> None:
        ticket_id, dead_letter_id = await router.dead_letter(source, stage, kind)
        held = await router.until_held(ticket_id)
        assert (held.dead_letter_id, held.stage, held.platform) == (
            dead_letter_id, stage, PLATFORM)

        by_admin = await router.state(ticket_id, "admin")

        assert (by_admin.status_code, by_admin.json()) == (409, {
            "error": "held", "detail": told(ticket_id, held, operator=True)}), by_admin.text
        assert "Retry-After" not in by_admin.headers

    @pytest.mark.parametrize("asked", ["report", "transfer", "priority"])
    async def test_an_admins_report_transfer_or_priority_change_is_told_held(
            self, router: Router, source: str, stage: str, kind: str, asked: str) -> None:
        ticket_id, _dead_letter_id = await router.dead_letter(source, stage, kind)
        held = await router.until_held(ticket_id)

        answer = await router.asked(ticket_id, "admin", asked)

        assert (answer.status_code, answer.json()) == (409, {
            "error": "held", "detail": told(ticket_id, held, operator=True)}), answer.text
        assert "Retry-After" not in answer.headers

    @pytest.mark.parametrize("asked", ["state", "report", "transfer", "priority"])
    async def test_a_department_is_answered_as_on_an_id_of_no_ticket(
            self, router: Router, source: str, stage: str, kind: str, asked: str) -> None:
        """No department has the ticket (nor ever had: one routed is held no longer), so
        none learns that it is held, nor by which stage."""
        ticket_id, _dead_letter_id = await router.dead_letter(source, stage, kind)
        await router.until_held(ticket_id)
        nobodys = ticket_ids.issue(datetime.now(UTC))

        async def answer(on: str) -> httpx.Response:
            if asked == "state":
                return await router.state(on, DEPARTMENT)
            return await router.asked(on, DEPARTMENT, asked)

        theirs, unknown = await answer(ticket_id), await answer(nobodys)

        assert (theirs.status_code, theirs.json()) == (404, {
            "error": "not_found", "detail": f"no routed ticket {ticket_id!r}"}), theirs.text
        assert (unknown.status_code, unknown.json()) == (404, {
            "error": "not_found", "detail": f"no routed ticket {nobodys!r}"})

    async def test_its_platforms_customer_reply_is_told_held_with_no_retry_after(
            self, router: Router, source: str, stage: str, kind: str) -> None:
        ticket_id, _dead_letter_id = await router.dead_letter(source, stage, kind)
        held = await router.until_held(ticket_id)

        answer = await router.reply(ticket_id)

        assert (answer.status_code, answer.json()) == (409, {
            "error": "held", "detail": told(ticket_id, held, operator=False)}), answer.text
        assert "Retry-After" not in answer.headers

    async def test_another_platforms_reply_is_answered_as_on_an_id_of_no_ticket(
            self, router: Router, source: str, stage: str, kind: str) -> None:
        theirs, _dead_letter_id = await router.dead_letter(source, stage, kind)
        await router.until_held(theirs)
        issued = ticket_ids.issued_at(theirs)
        assert issued is not None
        unknown = ticket_ids.issue(issued)

        answer = await router.reply(theirs, OTHER_PLATFORM)
        nobodys = await router.reply(unknown, OTHER_PLATFORM)

        assert answer.status_code == nobodys.status_code == 409, answer.text
        assert answer.json() == {key: value.replace(unknown, theirs)
                                 for key, value in nobodys.json().items()}
        assert answer.json()["error"] == "not_routed_yet"
        assert answer.headers["Retry-After"] == nobodys.headers["Retry-After"]

    async def test_routing_it_a_replay_succeeding_forgets_it(
            self, router: Router, source: str, stage: str, kind: str) -> None:
        ticket_id, _dead_letter_id = await router.dead_letter(source, stage, kind)
        held = await router.until_held(ticket_id)

        await routed_ticket(router.routed, DEPARTMENT, spent=timedelta(seconds=1),
                            platform=PLATFORM, ticket_id=ticket_id)

        assert await router.held.get(ticket_id) is None
        assert (await router.state(ticket_id, "admin")).status_code == 200
        assert (await router.reply(ticket_id)).status_code == 202
        # Its dead letter read again (a reader that restarted before committing): a
        # ticket routed is not held.
        await router.held.hold([held])
        assert await router.held.get(ticket_id) is None


class TestATicketTooLargeToDeadLetterWhole:
    async def test_is_held_by_its_ticket_id_kept_without_its_value(
            self, router: Router) -> None:
        """Its record at the broker's limit, its dead letter goes without its value
        (faults.dead_letter) but keeps its ticket id and the platform its value named:
        held all the same, with its platform."""
        ticket_id, dead_letter_id = await router.dead_letter(
            topics.INCOMING, "segmenter", events.TicketEventType.RECEIVED,
            text="x" * envelope.MAX_RECORD_BYTES)

        held = await router.until_held(ticket_id)

        assert (held.dead_letter_id, held.stage, held.error_class, held.platform) == (
            dead_letter_id, "segmenter", "Unprocessable", PLATFORM)

    async def test_its_platforms_customer_reply_is_told_held(self, router: Router) -> None:
        """Not as on another platform's ticket (its platform, which its value said, was
        lost with the value); another platform still is."""
        ticket_id, _dead_letter_id = await router.dead_letter(
            topics.INCOMING, "segmenter", events.TicketEventType.RECEIVED,
            text="x" * envelope.MAX_RECORD_BYTES)
        held = await router.until_held(ticket_id)

        answer = await router.reply(ticket_id)
        another = await router.reply(ticket_id, OTHER_PLATFORM)

        assert (answer.status_code, answer.json()) == (409, {
            "error": "held", "detail": told(ticket_id, held, operator=False)}), answer.text
        assert (another.status_code, another.json()["error"]) == (409, "not_routed_yet")


class TestADeadLetterReplayedBeforeItIsRead:
    async def test_holds_no_ticket(self, router: Router, monkeypatch: pytest.MonkeyPatch
                                   ) -> None:
        """The race with a replay: its marker written (in the replay's transaction)
        before the reader reads the dead letter (a reader restarted before committing, a
        group new or behind), the ticket the replay routes is not held again, beside
        its state. The dead letter after it on its partition, never replayed, is held:
        the replayed one was read. Of a source topic of the test's own, taken for the
        router stage's input (the real one is read by other tests' stages)."""
        router.stop.set()  # held by the reader under test only
        await router.reader
        source = unique("held-source")
        await kafka.ensure_topics(router.settings, [source])
        monkeypatch.setattr(topics, "STAGE_INPUTS", topics.STAGE_INPUTS | {source})
        monkeypatch.setattr(held_tickets, "TICKET_STAGES",
                            {**held_tickets.TICKET_STAGES, source: topics.ROUTER_GROUP})
        replayed, replayed_letter = await router.dead_letter(
            source, "router", events.TicketEventType.SEGMENTED, partition=0)
        replay = await dead_letters.replay(router.settings, dead_letter_records.Selection(
            ids=(replayed_letter,)))
        assert replay.replayed == [replayed_letter]
        waiting, _ = await router.dead_letter(source, "router",
                                              events.TicketEventType.SEGMENTED, partition=0)
        stop = asyncio.Event()
        reader = asyncio.create_task(held_follower.follow(
            router.settings, router.held, stop, group_id=unique("held-replayed")))
        try:
            await router.until_held(waiting)
        finally:
            stop.set()
            await reader

        assert await router.held.get(replayed) is None


class TestNotHeld:
    async def test_an_id_of_no_ticket_is_still_not_found(self, router: Router) -> None:
        ticket_id = ticket_ids.issue(datetime.now(UTC))

        answer = await router.state(ticket_id, "admin")

        assert (answer.status_code, answer.json()) == (404, {
            "error": "not_found", "detail": f"no routed ticket {ticket_id!r}"})


class TestNoDeadLetterStopsTheReader:
    """The project's first rule: no record stops a partition. A dead letter whose ticket
    id or platform PostgreSQL refuses (a NUL byte) is passed; the next on its partition
    is held, by the same reader, still running."""

    async def test_one_the_store_could_not_keep_is_passed_and_the_next_held(
            self, router: Router) -> None:
        await router.dead_letter(topics.SEGMENTED, "router", events.TicketEventType.SEGMENTED,
                                 ticket_id_header=b"t-\x00bad", partition=0)
        nul_platform, _ = await router.dead_letter(
            topics.SEGMENTED, "router", events.TicketEventType.SEGMENTED,
            platform="help\u0000desk", partition=0)
        good, _ = await router.dead_letter(topics.SEGMENTED, "router",
                                           events.TicketEventType.SEGMENTED, partition=0)

        assert (await router.until_held(good)).platform == PLATFORM
        # The one with a platform no credential has is held, without its platform.
        assert (await router.until_held(nul_platform)).platform is None
        assert not router.reader.done()


class OutageOnce(HeldTickets):
    """The store, down for the first hold asked of it."""

    def __init__(self, held: HeldTickets) -> None:
        self._held = held
        self.outages = 0

    async def hold(self, held: Sequence[Held]) -> None:
        if held and not self.outages:
            self.outages += 1
            raise OperationalError("INSERT INTO held_tickets", None,
                                   ConnectionRefusedError("the store is down"))
        await self._held.hold(held)


class TestAnOutageIsWaitedOut:
    async def test_a_store_outage_is_waited_out_in_the_task_not_by_a_restart(
            self, router: Router) -> None:
        """No restart (routing_background_task_restarts_total): the reader pauses and
        reads the dead letters again where it was, so /readyz stays ready."""
        router.stop.set()  # held by the reader under test only
        await router.reader
        ticket_id, _ = await router.dead_letter(topics.INCOMING, "segmenter",
                                                events.TicketEventType.RECEIVED)
        store = OutageOnce(router.held)
        tasks = background.BackgroundTasks()
        name = unique("held-tickets")
        tasks.start(name, lambda stop: held_follower.follow(
            router.settings, store, stop, group_id=unique("held-outage")))
        try:
            held = await router.until_held(ticket_id)
        finally:
            await tasks.stop()

        assert held.stage == "segmenter" and store.outages == 1
        assert REGISTRY.get_sample_value("routing_background_task_restarts_total",
                                         {"task": name}) == 0.0


    async def test_a_broker_away_at_its_start_is_waited_out_in_the_task(
            self, router: Router, caplog: pytest.LogCaptureFixture) -> None:
        """Its reader of the replay markers, which it waits for, included: a client that
        could not start is stopped and another started after a growing pause, a warning
        each time, the task still running (a restart would leave /readyz)."""
        nowhere = Settings(kafka_bootstrap_servers=f"127.0.0.1:{ports.free_port()}")
        with caplog.at_level(logging.WARNING, logger=replay_markers.__name__):
            await waits.waits_out(lambda stop: held_follower.follow(
                nowhere, router.held, stop, group_id=unique("held-away")),
                lambda: len(not_read(caplog)))
        assert {getattr(record, "error", None) for record in not_read(caplog)} == {
            "KafkaConnectionError"}


class TestItsReaderOfTheMarkersFailing:
    async def test_ends_not_its_reading_of_the_dead_letters(
            self, router: Router, monkeypatch: pytest.MonkeyPatch,
            caplog: pytest.LogCaptureFixture) -> None:
        """An error the markers' reader does not handle (a mistake of ours): logged, and
        that reader started again after a pause, a background task of its own; the dead
        letters are read after their wait for the markers all the same."""
        router.stop.set()  # held by the reader under test only
        await router.reader
        ticket_id, _ = await router.dead_letter(topics.INCOMING, "segmenter",
                                                events.TicketEventType.RECEIVED)

        async def a_mistake(_markers: replay_markers.ReplayMarkers, _stop: asyncio.Event,
                            **_: object) -> None:
            raise RuntimeError("a mistake")

        monkeypatch.setattr(replay_markers.ReplayMarkers, "run", a_mistake)
        client_id, stop = unique("held"), asyncio.Event()
        with caplog.at_level(logging.WARNING):
            reader = asyncio.create_task(held_follower.follow(
                router.settings, router.held, stop, client_id=client_id,
                group_id=unique("held-markers-failing"), markers_wait_seconds=0.5))
            try:
                held = await router.until_held(ticket_id)
                assert not reader.done()
            finally:
                stop.set()
                await reader

        assert held.stage == "segmenter"
        failed = [record for record in caplog.records
                  if record.getMessage() == "background task failed"]
        assert failed
        assert {getattr(record, "task", None) for record in failed} == {f"{client_id}-markers"}
        assert [record.getMessage() for record in caplog.records if record.getMessage() ==
                held_follower.MARKERS_UNREAD] == [held_follower.MARKERS_UNREAD]


def not_read(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == replay_markers.__name__
            and record.getMessage() == replay_markers.NOT_READ]


@pytest.mark.parametrize("recorded", ["first", "kept"])
class TestATicketOfAnErasedCustomer:
    async def test_routed_by_a_replay_is_held_no_longer_though_not_kept(
            self, database_url: str, recorded: str) -> None:
        """Its customer erased after the intake received it, the routing a replay brings
        is not written (erasures.py), and forgets that it was held all the same: it is
        no longer held, and no longer anywhere (first routings and those kept through an
        outage alike)."""
        engine = db.engine(database_url)
        sessions = db.sessions(engine)
        routed, held = RoutedTickets(sessions), HeldTickets(sessions)
        received = datetime.now(UTC) - timedelta(minutes=5)
        ticket_id = ticket_ids.issue(received)
        try:
            await held.hold([Held(ticket_id=ticket_id, dead_letter_id="0:1", stage="router",
                                  error_class="Unprocessable", held_at=received,
                                  platform=PLATFORM)])
            async with sessions() as session, session.begin():
                await erasures.erase_tickets_of(session, "c-erased",
                                                at=received + timedelta(minutes=1))
            at = datetime.now(UTC)
            dispatch = Dispatch(ticket_id=ticket_id, department=DEPARTMENT,
                                segment="standard", priority=3, deadline=at, steps=[],
                                payload={}, at=at, customer_id="c-erased",
                                received_at=received)
            if recorded == "first":
                await routed.record_first_dispatches([dispatch])
            else:
                await routed.record_kept_dispatches([dispatch])

            assert await held.get(ticket_id) is None
            assert await routed.routed_before([ticket_id]) == {}
        finally:
            await engine.dispose()


@dataclass
class RoutedTwoDaysAgo:
    """The router's store, and a ticket it routed two days ago (`ticket_id`, at `at`)."""

    sessions: async_sessionmaker[AsyncSession]
    routed: RoutedTickets
    held: HeldTickets
    ticket_id: str
    at: datetime


class TestARoutedTicketsStatePurged:
    @pytest.fixture
    async def store(self, database_url: str) -> AsyncIterator[RoutedTwoDaysAgo]:
        engine = db.engine(database_url)
        sessions = db.sessions(engine)
        routed = RoutedTickets(sessions)
        try:
            ticket_id, at = await routed_ticket(routed, DEPARTMENT, spent=timedelta(days=2),
                                                platform=PLATFORM)
            yield RoutedTwoDaysAgo(sessions, routed, HeldTickets(sessions), ticket_id, at)
        finally:
            await engine.dispose()

    async def test_forgets_that_it_was_held_though_its_dead_letter_is_kept(
            self, store: RoutedTwoDaysAgo) -> None:
        """The race the held reader runs with a replay: it looks for the ticket's state,
        finds none, the replay's routing commits (with no held row to forget), then the
        reader's insert holds it. Answers read the state first; once the retention of
        ticket states (which may be shorter than the dead letter's 30 days) deletes
        it, the ticket is held no longer either, or it would be told held. Another
        ticket held, never routed, stays held."""
        async with store.sessions() as session, session.begin():  # the reader's late insert
            session.add(HeldTicketRow(ticket_id=store.ticket_id, dead_letter_id="0:1",
                                      stage="router", error_class="Unprocessable",
                                      held_at=store.at, platform=PLATFORM))
        other = Held(ticket_id=unique("t"), dead_letter_id="0:2", stage="segmenter",
                     error_class="Unprocessable", held_at=store.at, platform=PLATFORM)
        await store.held.hold([other])

        assert await store.routed.purge(datetime.now(UTC) - timedelta(days=1), chunk=10) == 1

        assert await store.routed.routed_before([store.ticket_id]) == {}
        assert await store.held.get(store.ticket_id) is None
        assert await store.held.get(other.ticket_id) == other

    async def test_its_dead_letter_read_again_holds_it_again(
            self, store: RoutedTwoDaysAgo) -> None:
        """The store alone: once the ticket's state is purged, it keeps nothing of it,
        and a dead letter read again holds it again. The reader reads none again that
        was replayed (its marker read: TestADeadLetterReplayedBeforeItIsRead); it is
        held again only where the router's Kafka user may not read the markers."""
        dead_letter = Held(ticket_id=store.ticket_id, dead_letter_id="0:1", stage="router",
                           error_class="Unprocessable", held_at=store.at - timedelta(hours=1),
                           platform=PLATFORM)
        await store.held.hold([dead_letter])
        assert await store.held.get(store.ticket_id) is None  # routed: its state is kept

        assert await store.routed.purge(datetime.now(UTC) - timedelta(days=1), chunk=10) == 1
        await store.held.hold([dead_letter])

        assert await store.held.get(store.ticket_id) == dead_letter


class TestTheReadersLag:
    async def test_is_measured_by_the_metrics_service_as_the_stages_are(
            self, kafka_bootstrap: str) -> None:
        """routing_consumer_lag{group="router-held", topic="tickets.dlq"}: the dead
        letters its group has not committed. Its group committed at the topic's end, two
        dead letters more are two behind."""
        settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
        await kafka.ensure_topics(settings, [topics.DEAD_LETTERS])
        admin = kafka.admin(settings, client_id="test-held-lag")
        await admin.start()
        try:
            partitions = [TopicPartition(topics.DEAD_LETTERS, partition) for partition
                          in (await kafka.described_partitions(admin))[topics.DEAD_LETTERS]]
        finally:
            await admin.close()
        group = kafka.consumer(settings, group_id=topics.ROUTER_HELD_GROUP,
                               client_id="test-held-lag")
        await group.start()
        try:
            group.assign(partitions)
            await group.seek_to_end(*partitions)
            await group.commit({each: await group.position(each) for each in partitions})
        finally:
            await group.stop()
        producer = kafka.producer(settings, client_id="test-held-lag")
        await producer.start()
        try:
            for _ in range(2):
                await producer.send_and_wait(topics.DEAD_LETTERS, b"", partition=0)
        finally:
            await producer.stop()
        lags = await lag_polls.polled(settings)

        assert lags.get((topics.ROUTER_HELD_GROUP, topics.DEAD_LETTERS)) == 2


class TestManyHeldAtOnce:
    async def test_more_than_a_statements_parameters_are_held(
            self, database_url: str) -> None:
        """A fetch of many dead letters: more tickets than PostgreSQL takes parameters in
        one statement (32767) are held, in chunks, every one; and found held in chunks
        (`among`, as the simulator counts them), a ticket not held not among them."""
        engine = db.engine(database_url)
        held = HeldTickets(db.sessions(engine))
        at = datetime.now(UTC)
        many = [Held(ticket_id=unique("t"), dead_letter_id=f"0:{offset}", stage="router",
                     error_class="Unprocessable", held_at=at)
                for offset in range(33_000)]
        try:
            await held.hold(many)

            for each in (many[0], many[16_500], many[-1]):
                assert await held.get(each.ticket_id) == each
            ids = {each.ticket_id for each in many}
            assert await held.among([*ids, unique("t")]) == ids
        finally:
            await engine.dispose()
