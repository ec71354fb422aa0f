"""Which dead letters hold a ticket, and what is kept of it (services/router/held_tickets.py):
pure, on dead letters as the stages write them (faults.dead_letter)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import ConsumerRecord

from services.core import access, dead_letter_reading, envelope, events, faults, topics
from services.router import held_tickets
from tests.unit.test_waiting_dead_letters import Marker

AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
NOW = AT + timedelta(hours=1)  # when the reader reads it


@dataclass(frozen=True)
class Letter:
    """A dead letter as read off tickets.dlq."""

    headers: list[tuple[str, bytes]]
    value: bytes | None
    key: bytes | None = b"c-1"
    partition: int = 2
    offset: int = 41
    timestamp: int = int(AT.timestamp() * 1000)


def letter(source: str, *, stage: str = "", kind: str = events.TicketEventType.SEGMENTED,
           ticket_id: str | None = "t-1", data: dict[str, object] | None = None) -> Letter:
    event = envelope.Event(type=kind, source="/test", ticket_id=ticket_id,
                           correlation_id="corr",
                           data={"platform": "helpdesk", "customer_id": "c-1",
                                 "body": "Where is my invoice?"} if data is None else data)
    value = envelope.to_value(event)
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=source, partition=0, offset=7, timestamp=0, timestamp_type=0, key=b"c-1",
        value=value, checksum=None, serialized_key_size=3, serialized_value_size=len(value),
        headers=envelope.to_headers(event))
    dead = faults.dead_letter(record, faults.Unprocessable("no lanes"), stage=stage)
    return Letter(dead.headers, dead.value)


def held_of(dead_letter: Letter, *,
            replayed: Container[str] = frozenset()) -> held_tickets.Held | None:
    """What the reader holds of it at NOW, the dead letters `replayed` (none) as the
    markers read say."""
    return held_tickets.held_of(dead_letter, NOW, replayed=replayed)


class TestWhatHoldsATicket:
    @pytest.mark.parametrize(("source", "stage"), [(topics.INCOMING, "segmenter"),
                                                   (topics.SEGMENTED, "router")])
    def test_a_dead_letter_of_a_stages_ticket_holds_it(self, source: str, stage: str) -> None:
        assert held_of(letter(source, stage=stage)) == held_tickets.Held(
            ticket_id="t-1", dead_letter_id="2:41", stage=stage, error_class="Unprocessable",
            held_at=AT, platform="helpdesk")

    def test_a_dead_letter_without_the_stages_header_names_the_stage_of_its_topic(
            self) -> None:
        held = held_of(letter(topics.INCOMING))
        assert held is not None and held.stage == topics.SEGMENTER_GROUP

    @pytest.mark.parametrize("source", [topics.EVENTS, "dept.billing.high"])
    def test_a_dead_letter_of_another_topic_holds_no_ticket(self, source: str) -> None:
        """A report on tickets.events names its ticket too: it is no ticket."""
        assert held_of(letter(source, stage="router-tracker",
                              kind=events.TicketEventType.RESPONDED)) is None

    def test_one_replayed_holds_none(self) -> None:
        """Its marker read (dead_letter_reading.Replayed): the replay routes its ticket,
        or a stage dead-letters it again, in a dead letter of its own; another dead
        letter of that partition still holds its ticket."""
        replayed = dead_letter_reading.Replayed()
        replayed.read(Marker(b"2:41"))
        assert held_of(letter(topics.SEGMENTED, stage="router"), replayed=replayed) is None
        other = replace(letter(topics.SEGMENTED, stage="router"), offset=42)
        assert held_of(other, replayed=replayed) is not None

    def test_one_without_a_ticket_id_holds_none(self) -> None:
        assert held_of(letter(topics.INCOMING, ticket_id=None)) is None

    def test_an_unreadable_record_holds_none(self) -> None:
        assert held_of(Letter(headers=[], value=None)) is None


def with_header(good: Letter, name: str, value: bytes) -> Letter:
    return replace(good, headers=[*(h for h in good.headers if h[0] != name), (name, value)])


class TestWhatNoStoreCouldKeep:
    """A dead letter whose content PostgreSQL refuses, or that is no date, is held as
    none (or kept without that part): the reader goes on to the next."""

    @pytest.mark.parametrize("ticket_id", [b"t-\x00bad", b"t 1", "t-\u00e9".encode(),
                                           b"\xff", b"t" * 129])
    def test_a_ticket_id_not_of_the_apis_ids_holds_none(self, ticket_id: bytes) -> None:
        bad = with_header(letter(topics.SEGMENTED), "ce_ticketid", ticket_id)
        assert held_of(bad) is None

    @pytest.mark.parametrize("platform", ["help\u0000desk", "Helpdesk", "p" * 64, ""])
    def test_a_platform_not_a_credentials_subject_is_none(self, platform: str) -> None:
        held = held_of(letter(topics.SEGMENTED, data={"platform": platform}))
        assert held is not None and held.platform is None

    @pytest.mark.parametrize(("timestamp", "at"), [
        (253402300800000 * 10, NOW),  # past year 9999
        (int(NOW.timestamp() * 1000) + 1, NOW),
        (-5, datetime(1970, 1, 1, tzinfo=UTC))])
    def test_when_is_within_the_epoch_and_now(self, timestamp: int, at: datetime) -> None:
        held = held_of(replace(letter(topics.SEGMENTED), timestamp=timestamp))
        assert held is not None and held.held_at == at

    @pytest.mark.parametrize("header", [topics.DLQ_STAGE, topics.DLQ_ERROR_CLASS])
    def test_a_stage_or_faults_class_with_a_nul_is_not_kept(self, header: str) -> None:
        held = held_of(with_header(letter(topics.SEGMENTED, stage="router"),
                                   header, b"ro\x00uter"))
        assert held is not None and (held.stage, held.error_class) in {
            ("router", "Unprocessable"), ("router", "")}
        assert "\x00" not in held.stage + held.error_class


class TestWhatIsKept:
    def test_of_the_ticket_only_the_platform_no_text_or_customer(self) -> None:
        held = held_of(letter(topics.SEGMENTED, stage="router"))
        assert held is not None
        kept = orjson.dumps(held.__dict__, default=str).decode()
        assert "c-1" not in kept and "invoice" not in kept.lower()

    @pytest.mark.parametrize("data", [{}, {"platform": 7}, {"platform": "p" * 129}])
    def test_a_platform_that_cannot_be_read_is_none(self, data: dict[str, object]) -> None:
        held = held_of(letter(topics.SEGMENTED, data=data))
        assert held is not None and held.platform is None

    def test_a_ticket_too_large_to_dead_letter_whole_keeps_its_platform(self) -> None:
        """Its dead letter goes without its value (faults.dead_letter), which named the
        platform: the header kept for it says it, so that platform is told it is held."""
        held = held_of(letter(topics.INCOMING, data={
            "platform": "helpdesk", "body": "x" * envelope.MAX_RECORD_BYTES}))
        assert held is not None and (held.ticket_id, held.platform) == ("t-1", "helpdesk")

    @pytest.mark.parametrize("platform", [b"Helpdesk", b"p" * 64, b"help\x00desk", b"\xff"])
    def test_a_kept_platform_not_a_credentials_subject_is_none(self, platform: bytes
                                                               ) -> None:
        cut = letter(topics.INCOMING, data={"platform": "helpdesk",
                                             "body": "x" * envelope.MAX_RECORD_BYTES})
        held = held_of(with_header(cut, topics.DLQ_PLATFORM, platform))
        assert held is not None and held.platform is None

    def test_the_kept_platforms_header_is_read_only_where_the_value_was_dropped(
            self) -> None:
        """A whole dead letter's value says the platform: a header so named, which any
        writer of the dead-letter topic may add, does not."""
        whole = with_header(letter(topics.SEGMENTED), topics.DLQ_PLATFORM, b"webshop")
        held = held_of(whole)
        assert held is not None and held.platform == "helpdesk"

    def test_a_value_that_is_no_json_keeps_the_ticket_held_with_no_platform(self) -> None:
        good = letter(topics.SEGMENTED)
        held = held_of(Letter(good.headers, b"\xff not json"))
        assert held is not None and (held.ticket_id, held.platform) == ("t-1", None)


class TestWhatIsTold:
    HELD = held_tickets.Held(ticket_id="t-1", dead_letter_id="2:41", stage="router",
                             error_class="Unprocessable", held_at=AT, platform="helpdesk")

    def test_an_operator_is_told_the_dead_letter_and_the_faults_class(self) -> None:
        assert held_tickets.told(self.HELD, operator=True) == (
            "ticket 't-1' was dead-lettered by the router stage at 2026-12-07T09:30:00+00:00"
            " (dead letter 2:41, Unprocessable); it is held there until an operator replays"
            " it (`routing dead-letters replay`): asking again will not route it")

    def test_anyone_else_by_which_stage_and_when(self) -> None:
        told = held_tickets.told(self.HELD, operator=False)
        assert "router stage at 2026-12-07T09:30:00+00:00" in told
        assert "2:41" not in told and "Unprocessable" not in told


class TestWhoIsTold:
    """An admin and the platform that posted the ticket learn that it is held; no
    department (it is in none), and no other platform."""

    HELD = TestWhatIsTold.HELD

    @pytest.mark.parametrize(("role", "subject", "told"), [
        (access.Role.ADMIN, None, True),
        (access.Role.PLATFORM, "helpdesk", True),
        (access.Role.PLATFORM, "webshop", False),
        (access.Role.DEPARTMENT, "customer_care", False),
        # A department named as the platform is still a department.
        (access.Role.DEPARTMENT, "helpdesk", False)])
    def test_by_role_and_subject(self, role: access.Role, subject: str | None,
                                 told: bool) -> None:
        principal = access.Principal("cred-1", role, subject)
        assert held_tickets.may_be_told(self.HELD, principal) is told

    def test_no_platform_is_told_of_a_ticket_held_without_its_platform(self) -> None:
        without = replace(self.HELD, platform=None)
        for platform in ("helpdesk", "webshop"):
            principal = access.Principal("cred-1", access.Role.PLATFORM, platform)
            assert not held_tickets.may_be_told(without, principal)
