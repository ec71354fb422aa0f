"""A transform that reads some event types only (batches.Selective) is never handed the
others: their records are passed over on their `ce_type` header, their values unparsed,
so a follower of `tickets.events` pays nothing for the events it does not act on. What
cannot be told from the headers is read whole, and dead-lettered if it is no event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from services.core import batches, envelope, events, kafka, topics
from services.router.event_follower import FollowTicketEvent
from services.router.store import Report
from services.webhooks import catalog
from services.webhooks.outbox import RecordCallbacks

READ = "ticket.responded"
NOT_READ = "ticket.received"


def record(headers: list[tuple[str, bytes]] | None, value: bytes | None,
           offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    """A record as the stage's consumer hands it over."""
    return ConsumerRecord(
        topic=topics.EVENTS, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=b"t-1", value=value, checksum=None, serialized_key_size=3,
        serialized_value_size=len(value or b""), headers=headers)


def event_record(kind: str, offset: int = 0, *, value: bytes | None = None
                 ) -> ConsumerRecord[bytes, bytes]:
    """An event of type `kind` (with `value`: that value in place of its JSON)."""
    event = envelope.Event(type=kind, source="/test", ticket_id="t-1", correlation_id="c",
                           data={"ticket_id": "t-1"})
    written = envelope.encode(topics.EVENTS, "t-1", event)
    return record(list(written.headers), written.value if value is None else value, offset)


class ReadsResponses:
    """A selective transform that notes the events it is given."""

    reads = frozenset({READ})

    def __init__(self) -> None:
        self.given: list[str] = []

    async def __call__(self, event: envelope.Event) -> list[kafka.Output]:
        self.given.append(event.type)
        return []


def dead_letters(sent: list[envelope.Record]) -> list[envelope.Record]:
    return [r for r in sent if r.topic == topics.DEAD_LETTERS]


async def followed(records: list[ConsumerRecord[bytes, bytes]], one_by_one: bool
                   ) -> tuple[list[str], list[envelope.Record]]:
    """The types a follower reading responses was given, and what it sent."""
    transform = ReadsResponses()
    sent = await batches.Batches(transform, stage="follower").outgoing(
        records, one_by_one=one_by_one)
    return transform.given, sent


@pytest.mark.parametrize("one_by_one", [False, True])
class TestPassedOver:
    async def test_only_the_types_it_reads_reach_it(self, one_by_one: bool) -> None:
        given, sent = await followed(
            [event_record(NOT_READ, 0), event_record(READ, 1), event_record(NOT_READ, 2)],
            one_by_one)
        assert given == [READ]
        assert sent == []

    async def test_a_record_of_another_type_is_not_parsed_so_not_dead_lettered(
            self, one_by_one: bool) -> None:
        given, sent = await followed(
            [event_record(NOT_READ, 0, value=b"{not json"), event_record(READ, 1)],
            one_by_one)
        assert given == [READ]
        assert dead_letters(sent) == []

    async def test_a_record_of_its_type_that_is_no_event_is_dead_lettered(
            self, one_by_one: bool) -> None:
        given, sent = await followed(
            [event_record(READ, 0, value=b"{not json"), event_record(READ, 1)], one_by_one)
        assert given == [READ]
        [letter] = dead_letters(sent)
        assert dict(letter.headers)[topics.DLQ_ERROR_CLASS] == b"EnvelopeError"

    @pytest.mark.parametrize("headers", [
        None,  # no headers at all
        [("ce_id", b"e-1"), ("ce_source", b"/test")],  # no type
        [("ce_type", b"\xff\xfe")],  # a type that is not text
    ])
    async def test_a_record_whose_type_cannot_be_told_is_read_whole_and_dead_lettered(
            self, one_by_one: bool, headers: list[tuple[str, bytes]] | None) -> None:
        given, sent = await followed([record(headers, b"{}")], one_by_one)
        assert given == []
        assert len(dead_letters(sent)) == 1


class TestTypeOf:
    def test_the_type_is_read_from_the_headers(self) -> None:
        assert envelope.type_of([("ce_id", b"e"), ("ce_type", b"ticket.routed")]) \
            == "ticket.routed"

    def test_the_last_of_several_counts_as_when_the_record_is_read_whole(self) -> None:
        headers = [("ce_id", b"e-1"), ("ce_source", b"/t"), ("ce_specversion", b"1.0"),
                   ("ce_time", b"2026-01-31T09:30:00+01:00"),
                   ("ce_type", b"ticket.received"), ("ce_type", b"ticket.responded")]
        assert envelope.type_of(headers) == "ticket.responded" \
            == envelope.from_record(headers, b"{}").type

    @pytest.mark.parametrize("headers", [
        None, [], [("ce_type", None)], [("ce_type", b"\xff")], [("ce_type",)], 7])
    def test_none_when_it_cannot_be_told(self, headers: object) -> None:
        assert envelope.type_of(headers) is None  # type: ignore[arg-type]


class TestTheRoutersFollowers:
    """The router's two followers of `tickets.events` pass over what they do not act on:
    the tracker reads the reports, the webhook recorder the events platforms receive."""

    def test_each_reads_what_it_acts_on(self) -> None:
        assert FollowTicketEvent.reads == set(events.REPORTS)
        assert RecordCallbacks.reads == set(catalog.WEBHOOK_EVENTS)

    async def test_the_tracker_is_not_handed_a_received_event(self) -> None:
        class NoStore:
            async def record_reports(self, reports: Sequence[Report], **_: object) -> list[None]:
                assert not reports, "a received event reached the tracker's store"
                return []

        tracker = FollowTicketEvent(NoStore())  # type: ignore[arg-type]
        received = event_record(events.TicketEventType.RECEIVED, value=b"{not json")
        sent = await batches.Batches(tracker, stage="router-tracker").outgoing([received])
        assert sent == []

    async def test_the_tracker_still_reads_a_report(self) -> None:
        reported: list[str] = []

        class Store:
            async def record_reports(self, reports: Sequence[Report], **_: object) -> list[None]:
                reported.extend(r.event_type for r in reports)
                return [None] * len(reports)

        tracker = FollowTicketEvent(Store())  # type: ignore[arg-type]
        report = events.TicketEvent(ticket_id="t-1", type=events.TicketEventType.RESPONDED,
                                    occurred_at=datetime.now(UTC), department="billing")
        written = envelope.encode(topics.EVENTS, "t-1", events.as_envelope(
            report, "c", events.WRITTEN_BY[report.type]))
        await batches.Batches(tracker, stage="router-tracker").outgoing(
            [record(list(written.headers), written.value)])
        assert reported == [events.TicketEventType.RESPONDED]
