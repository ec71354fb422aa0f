"""The router's reader of the dead letters (`tickets.dlq`, group `router-held`): it keeps
the tickets they hold (held_tickets) in the store, whichever stage dead-lettered them, so
that asking for one is answered 409 `held`, not as if no such ticket existed. A background
task of the instances that run the router stage: one reader per fleet's share of the
partitions, at least once (a dead letter read twice is held once), its offsets committed
once what it read is written.

No dead letter stops it: one that holds no ticket the store could keep (held_tickets.held_of
says None) is passed, and one the store refuses all the same is passed, named by its
place in a line without its content. An outage of the broker or of
the store is waited out where it is (a warning, a growing pause, nothing committed: what
was fetched is read again), never a restart; a commit refused after a rebalance is the new
owner's to read again; a group this user may not read (an ACL missing) is told once, as an
error naming the ACL to add, then waited out the same way.

A dead letter replayed holds no ticket (held_tickets.held_of): the replay markers
(`tickets.dlq.replayed`) are read by a reader of their own (replay_markers, as the
metrics service reads them), and no dead letter is read before those there at start are
read, so that one read after its replay routed the ticket does not hold it again; or
before MARKERS_WAIT_SECONDS have passed without (markers that cannot be fetched: a
warning, and the dead letters read all the same, the markers still tried meanwhile).
Each reader is a background task of its own (`start`): either failing is logged and
started again after a pause, the other reading on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    GroupAuthorizationFailedError,
    IllegalStateError,
    KafkaError,
)

from services.core import (
    background,
    db,
    dead_letter_reading,
    faults,
    kafka,
    replay_markers,
    topics,
)
from services.core.settings import Settings
from services.router import held_tickets
from services.router.held_store import HeldTickets

logger = logging.getLogger(__name__)

FETCH_MS = 1000
WAITED_OUT = "dead letters not read into the tickets held; read again after a pause"
# How long the dead letters wait for the replay markers there at start to be read. A
# reader that can read them has within seconds (a compacted topic, read from its start);
# 30 s is also the longest pause its tries take (background.Backoff), so one that has not
# by then has failed again and again (a fetch refused: READ missing; a lasting error),
# and the tickets held matter more than the race the markers close: a ticket held again
# after its replay routed it has its routed state answered first.
MARKERS_WAIT_SECONDS = 30.0
MARKERS_UNREAD = (
    "replay markers (tickets.dlq.replayed) not read in their wait: dead letters read"
    " without them; one read after its replay holds its ticket again (its routed state is"
    " answered first) until the markers are read (replay_markers' warnings say why)")


def start(tasks: background.BackgroundTasks, name: str, settings: Settings,
          held: HeldTickets, *, client_id: str = "router-held",
          group_id: str = topics.ROUTER_HELD_GROUP,
          markers_wait_seconds: float = MARKERS_WAIT_SECONDS) -> None:
    """Start among `tasks` the readers of the dead letters (task `name`), holding the
    tickets they hold (`group_id`: the fleet's; a test's own, on a broker other tests
    share), and of the replay markers (`name`-markers): each a background task of its
    own, so that either failing is logged and started again after a pause (and shown in
    /readyz), the other reading on. The dead letters are read once the markers there at
    start are, or `markers_wait_seconds` have passed without (a warning)."""
    replayed = dead_letter_reading.Replayed()
    markers = replay_markers.ReplayMarkers(
        settings, replayed.read, client_id=f"{client_id}-markers",
        unread="a dead letter read after its replay holds its ticket again")
    markers_read = asyncio.Event()

    def after_markers() -> None:
        if markers.caught_up:
            markers_read.set()

    async def read_markers(stop: asyncio.Event) -> None:
        await markers.run(stop, after_batch=after_markers)

    async def read_dead_letters(stop: asyncio.Event) -> None:
        await background.until_either(stop, markers_read,
                                      seconds=markers_wait_seconds)
        if not markers_read.is_set() and not stop.is_set():
            logger.warning(MARKERS_UNREAD, extra={
                "topic": topics.DEAD_LETTERS_REPLAYED, "waited_seconds": markers_wait_seconds,
                "error": markers.last_error})
        await _follow(settings, held, replayed, stop, client_id=client_id, group_id=group_id)

    tasks.start(f"{name}-markers", read_markers)
    tasks.start(name, read_dead_letters)


async def follow(settings: Settings, held: HeldTickets, stop: asyncio.Event, *,
                 client_id: str = "router-held",
                 group_id: str = topics.ROUTER_HELD_GROUP,
                 markers_wait_seconds: float = MARKERS_WAIT_SECONDS) -> None:
    """`start`'s readers until `stop`, among background tasks of their own (named after
    `client_id`): a test's."""
    readers = background.BackgroundTasks()
    start(readers, client_id, settings, held, client_id=client_id, group_id=group_id,
          markers_wait_seconds=markers_wait_seconds)
    try:
        await stop.wait()
    finally:
        await readers.stop()


async def _follow(settings: Settings, held: HeldTickets, replayed: Container[str],
                  stop: asyncio.Event, *, client_id: str, group_id: str) -> None:
    waits = _Waits(group_id, stop)
    while not stop.is_set():
        consumer = kafka.consumer(settings, topics.DEAD_LETTERS, group_id=group_id,
                                  client_id=client_id)
        try:
            await consumer.start()  # joins the group: a broker away, an ACL missing
            waits.failures.succeeded()
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            await waits.after(exc)
            continue
        try:
            while not stop.is_set():
                try:
                    await _read(consumer, held, replayed)
                    waits.failures.succeeded()
                except CommitFailedError:
                    # A rebalance took partitions away before the commit: what was held
                    # stays held, and their new owner reads them again from the commit.
                    logger.info("dead letters held, their commit refused after a"
                                " rebalance: read again by their new owner",
                                extra={"group": group_id})
                except (KafkaError, OSError) as exc:
                    await waits.after(exc)
                except db.STORE_ERRORS as exc:
                    if not db.is_temporary(exc):
                        raise
                    await waits.after(exc)
        finally:
            await consumer.stop()


class _Waits:
    """An outage waited out: a warning and a growing pause each time; a group this user
    may not read, an error naming the ACL to add, once."""

    def __init__(self, group_id: str, stop: asyncio.Event) -> None:
        self.failures = background.FailuresInARow()
        self._group_id, self._stop = group_id, stop
        self._told_refused = False

    async def after(self, error: Exception) -> None:
        if isinstance(error, GroupAuthorizationFailedError) and not self._told_refused:
            self._told_refused = True
            logger.error(
                "the broker refuses this user the dead letters' group: add an ACL allowing"
                " READ on group %s to the router's Kafka user; until then no dead-lettered"
                " ticket is told held", self._group_id, extra={"group": self._group_id})
        await self.failures.pause_after(error, self._stop, warning=WAITED_OUT, by=logger)


async def _read(consumer: AIOKafkaConsumer, held: HeldTickets,
                replayed: Container[str]) -> None:
    """One fetch: its tickets held, then its offsets committed. If holding them fails,
    the consumer is put back where the fetch began, so that they are read again."""
    fetched = await faults.fetch_past_unreadable(consumer, timeout_ms=FETCH_MS)
    if not fetched:
        return
    try:
        found = _held_of(fetched, datetime.now(UTC), replayed)
        await _hold(held, found)
    except BaseException:
        _read_again(consumer, fetched)
        raise
    if found:
        logger.info("tickets held as dead letters recorded", extra={"tickets": len(found)})
    await consumer.commit({partition: records[-1].offset + 1
                           for partition, records in fetched.items() if records})


async def _hold(held: HeldTickets, found: Sequence[held_tickets.Held]) -> None:
    """Hold them; if the store refuses them for what they hold (not an outage: a value
    it cannot keep that held_of let through), each alone, passing those it refuses."""
    try:
        await held.hold(found)
        return
    except db.STORE_ERRORS as exc:
        if db.is_temporary(exc):
            raise
    for each in found:
        try:
            await held.hold([each])
        except db.STORE_ERRORS as exc:
            if db.is_temporary(exc):
                raise
            logger.warning("dead letter passed: the store refuses what it holds",
                           extra={"dead_letter": each.dead_letter_id,
                                  "error": type(exc).__name__})


def _held_of(fetched: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
             now: datetime, replayed: Container[str]) -> list[held_tickets.Held]:
    """The tickets the dead letters fetched hold. One that holds none is passed: a report,
    another topic's record or one replayed quietly, and one held_of cannot read (it
    raised) is counted and named by its place, in one line a fetch, never by what it
    holds."""
    found: list[held_tickets.Held] = []
    unreadable: list[str] = []
    for records in fetched.values():
        for record in records:
            try:
                ticket = held_tickets.held_of(record, now, replayed=replayed)
            except Exception:
                unreadable.append(f"{record.partition}:{record.offset}")
                continue
            if ticket is not None:
                found.append(ticket)
    if unreadable:
        logger.warning("dead letters passed: what they hold could not be read",
                       extra={"dead_letters": len(unreadable), "first": unreadable[0]})
    return found


def _read_again(consumer: AIOKafkaConsumer,
                fetched: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
                ) -> None:
    for partition, records in fetched.items():
        if records:
            # One no longer assigned: its new owner reads it from the last commit.
            with contextlib.suppress(IllegalStateError):
                consumer.seek(partition, records[0].offset)
