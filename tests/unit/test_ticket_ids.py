"""Ticket ids as the intake issues them (services/router/ticket_ids.py): UUIDs of version
7 that carry the millisecond they were issued, told from any other id without a store."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.core import identifiers
from services.router import ticket_ids
from services.router.ticket_ids import _mark

NOW = datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)


class TestIssued:
    def test_an_id_is_a_canonical_uuid_of_version_7_of_the_ids_format(self) -> None:
        ticket_id = ticket_ids.issue(NOW)
        parsed = uuid.UUID(ticket_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, ticket_id)
        assert identifiers.ID.fullmatch(ticket_id)
        assert len(ticket_id) <= identifiers.MAX_LENGTH

    def test_it_carries_the_millisecond_it_was_issued(self) -> None:
        assert ticket_ids.issued_at(ticket_ids.issue(NOW)) == NOW.replace(microsecond=123000)

    def test_ids_differ_within_a_millisecond_and_sort_by_time_across(self) -> None:
        within = {ticket_ids.issue(NOW) for _ in range(1000)}
        assert len(within) == 1000
        later = ticket_ids.issue(NOW + timedelta(milliseconds=1))
        assert all(ticket_id < later for ticket_id in within)


class TestNotIssued:
    @pytest.mark.parametrize("ticket_id", [
        str(uuid.uuid4()),  # a ticket's id as issued before: no time in it
        "t-1", "", "0" * 129,
        str(uuid.UUID(int=0x01A24B56C6877BD7B533D21E20A09B4B)),  # a version 7, unmarked
    ])
    def test_an_id_of_another_form_has_no_issue_time(self, ticket_id: str) -> None:
        assert ticket_ids.issued_at(ticket_id) is None

    def test_an_issued_id_written_otherwise_is_not_the_tickets_id(self) -> None:
        """The router keeps a ticket by its id as issued: the same UUID in capitals,
        without hyphens or as a URN is not that ticket's id."""
        ticket_id = ticket_ids.issue(NOW)
        for written in (ticket_id.upper(), ticket_id.replace("-", ""),
                        f"urn:uuid:{ticket_id}"):
            assert ticket_ids.issued_at(written) is None

    def test_a_marked_id_past_the_year_9999_has_no_issue_time(self) -> None:
        millisecond, random = (1 << 48) - 1, 5
        number = millisecond << 80 | 0x7 << 76 | _mark(millisecond, random) << 64 \
            | 0b10 << 62 | random
        assert ticket_ids.issued_at(str(uuid.UUID(int=number))) is None

    def test_few_other_version_7_uuids_pass_for_the_intakes(self) -> None:
        """A platform's own ids, sent by mistake: the mark tells all but about one in
        4,096 (12 bits) from the intake's."""
        drawn = random.Random(7)
        version_and_variant = ~(0xF << 76 | 0b11 << 62)
        marked = sum(ticket_ids.issued_at(str(uuid.UUID(
            int=drawn.getrandbits(128) & version_and_variant | 0x7 << 76 | 0b10 << 62)))
            is not None for _ in range(40_960))
        assert 0 < marked < 30  # about 10
