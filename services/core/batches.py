"""One partition's records turned into the records to send: each record's output, or its
dead letter when the record is at fault.

A batch is loaded and written once for all its records (`Prefetching`, `Batching`). When
that fails on something about a record (a value longer than its column), the batch is
taken again one record at a time, so that only the record at fault is set aside.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Generic, Protocol, TypeVar, runtime_checkable

from aiokafka import ConsumerRecord
from prometheus_client import Counter

from services.core import envelope, faults, kafka

logger = logging.getLogger(__name__)

# What a transform gives is written out here, unless it gave it written out already.
Transform = Callable[[envelope.Event], Awaitable[Sequence[kafka.Publishable]]]

DEAD_LETTERED = Counter("routing_stage_dead_lettered_total",
                        "Records a stage set aside to the dead-letter topic",
                        ["stage", "error_class"])


@runtime_checkable
class Prefetching(Protocol):
    """A transform that can load what a whole batch needs at once (one query, not one
    per record) before the records are transformed one by one."""

    async def prefetch(self, events: Sequence[envelope.Event]) -> None: ...


@runtime_checkable
class Batching(Protocol):
    """A transform that keeps what it records about a batch (in its database) until
    the batch is transformed, then writes it at once, before the batch is committed."""

    async def finish_batch(self) -> None: ...


@runtime_checkable
class Committing(Protocol):
    """A transform that keeps something about a share until it is committed (the
    segmenter's tickets per customer): told once the share's output and consumed offset
    are committed, in the task that transformed the share (each attempt at a share runs
    in a task of its own), so never for an attempt that failed. It keeps that state in
    the task's context (`PerShare`), and is not Batching: a batch write failing on a
    record has the records taken again one by one in the same task, which would count
    those already transformed twice."""

    def committed(self) -> None: ...


@runtime_checkable
class SharesApart(Protocol):
    """A transform that keeps its per-batch state per share (`PerShare`: each share runs
    in its task), so that several partitions' shares can be transformed at once (the
    router and the segmenter: one share waiting on the store does not hold up the
    others); the stage loop transforms the others' one at a time."""

    shares_apart: bool


@runtime_checkable
class Selective(Protocol):
    """A transform that acts on some event types only (`reads`, the `ce_type`s): a record
    of another type is passed over, its value never parsed (a follower of
    `tickets.events` that reads the reports alone). A record whose type cannot be read
    from its headers is read whole, and dead-lettered if it is no event."""

    reads: frozenset[str]


State = TypeVar("State")


class PerShare(Generic[State]):
    """A transform's per-batch state, kept per share (SharesApart): the stage runs each
    share in its own task, so the state set in that task's context is the share's alone.
    One per transform instance."""

    def __init__(self, name: str, new: Callable[[], State]) -> None:
        self._new = new
        self._state: ContextVar[State | None] = ContextVar(name, default=None)

    def start(self, state: State | None = None) -> State:
        """A new batch (`state`, or a new one): not what a failed attempt left."""
        state = self._new() if state is None else state
        self._state.set(state)
        return state

    def current(self) -> State:
        """This share's batch (a new one if none was started in this context)."""
        state = self._state.get()
        return self.start() if state is None else state


class _NeedsIsolation(Exception):
    """The batch as a whole failed on something about a record: take them one by one."""


class Batches:
    """A stage's transform applied to batches; raises only for an outage or a transient
    failure (the caller retries the batch), never for a record at fault."""

    def __init__(self, transform: Transform, *, stage: str) -> None:
        # What the transform is, told once (a protocol check per share costs its time).
        self._prefetching = transform if isinstance(transform, Prefetching) else None
        self._batching = transform if isinstance(transform, Batching) else None
        self._committing = transform if isinstance(transform, Committing) else None
        self._reads = transform.reads if isinstance(transform, Selective) else None
        if self._committing is not None and self._batching is not None:
            raise ValueError("a Committing transform cannot be Batching (see Committing)")
        self._transform = transform
        self._stage = stage
        self.dead_lettered = 0

    async def outgoing(self, records: list[ConsumerRecord], *, one_by_one: bool = False
                       ) -> list[envelope.Record]:
        """What to send for the records. `one_by_one`: the batch failed often enough
        that a record failing for a transient reason is dead-lettered too."""
        if one_by_one:
            return await self._one_by_one(records, give_up=True)
        try:
            return await self._together(records)
        except _NeedsIsolation:
            return await self._one_by_one(records, give_up=False)

    async def _together(self, records: list[ConsumerRecord]) -> list[envelope.Record]:
        """The records to send for a batch, its loading and writing done once for all."""
        outgoing: list[envelope.Record] = []
        readable: list[tuple[ConsumerRecord, envelope.Event]] = []
        for record in records:
            if self._passed_over(record):
                continue
            try:
                readable.append((record, _event(record)))
            except envelope.EnvelopeError as error:
                outgoing.append(self._dead_letter(record, error))
        await self._batch_step(self._prefetch, [event for _, event in readable])
        for record, event in readable:
            try:
                outgoing += await self._outputs(event)
            except Exception as error:
                if faults.classify(error) is not faults.Fault.RECORD:
                    raise
                outgoing.append(self._dead_letter(record, error))
        await self._batch_step(self._finish_batch)
        return outgoing

    async def _one_by_one(self, records: list[ConsumerRecord], *, give_up: bool
                          ) -> list[envelope.Record]:
        """The records to send, each record loaded, transformed and written alone; one
        that fails on its own is dead-lettered (with `give_up`, also one that keeps
        failing for a transient reason)."""
        outgoing: list[envelope.Record] = []
        for record in records:
            if self._passed_over(record):
                continue
            try:
                event = _event(record)
                await self._prefetch([event])
                produced = await self._outputs(event)
                await self._finish_batch()
            except Exception as error:
                fault = faults.classify(error)
                if fault is faults.Fault.OUTAGE or (fault is faults.Fault.TRANSIENT
                                                    and not give_up):
                    raise
                outgoing.append(self._dead_letter(record, error))
            else:
                outgoing += produced
        return outgoing

    def _passed_over(self, record: ConsumerRecord) -> bool:
        """Of a type the transform does not read (told by its headers alone)."""
        if self._reads is None:
            return False
        kind = envelope.type_of(record.headers)
        return kind is not None and kind not in self._reads

    @staticmethod
    async def _batch_step(step: Callable[..., Awaitable[None]], *args: object) -> None:
        try:
            await step(*args)
        except Exception as error:
            if faults.classify(error) is faults.Fault.RECORD:
                raise _NeedsIsolation from error
            raise

    async def _prefetch(self, events: Sequence[envelope.Event]) -> None:
        if self._prefetching is not None:
            await self._prefetching.prefetch(events)

    async def _finish_batch(self) -> None:
        if self._batching is not None:
            await self._batching.finish_batch()

    def committed(self) -> None:
        """The share last transformed in this task is committed. Nothing can undo that:
        an error of the transform's here is logged, never raised (it would have the
        share, committed, processed again)."""
        if self._committing is not None:
            try:
                self._committing.committed()
            except Exception as error:
                logger.error("a stage's step after a share's commit failed",
                             extra={"stage": self._stage,
                                    "error_class": faults.error_class(error)})

    async def _outputs(self, event: envelope.Event) -> list[envelope.Record]:
        return kafka.records(await self._transform(event))

    def _dead_letter(self, record: ConsumerRecord, error: BaseException) -> envelope.Record:
        letter = faults.dead_letter(record, error, stage=self._stage)
        logger.warning(
            "record sent to the dead-letter topic",
            extra={"stage": self._stage, "topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "error": faults.reason(error),
                   "error_class": faults.error_class(error)},
        )
        self.dead_lettered += 1
        DEAD_LETTERED.labels(self._stage, faults.error_class(error)).inc()
        return letter


def _event(record: ConsumerRecord) -> envelope.Event:
    """The record's event; EnvelopeError if it is none (faults.Unreadable: the Kafka
    client could not read the record at all)."""
    if isinstance(record, faults.UnreadableRecord):
        raise faults.Unreadable(f"{record.problem}; its value and headers are not copied")
    return envelope.from_record(record.headers, record.value, timestamp_ms=record.timestamp)
