"""What the router announces of a ticket it forgets (services/router/forgetting.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from services.core import events, topics
from services.router import forgetting

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class TestAnnouncement:
    def test_a_forgotten_ticket_is_announced_on_the_events_topic_under_its_key(self) -> None:
        output = forgetting.announcement("t-1", reason=events.ERASURE, at=AT,
                                         correlation_id="c-9", department="customer_care")
        assert (output.topic, output.key) == (topics.EVENTS, "t-1")
        assert output.event.type == events.TicketEventType.FORGOTTEN
        assert output.event.correlation_id == "c-9"
        assert output.event.data == {"ticket_id": "t-1", "type": "ticket.forgotten",
                                     "occurred_at": "2026-12-07T09:00:00Z",
                                     "department": "customer_care", "reason": "erasure"}

    def test_the_metrics_service_trusts_it_as_the_routers(self) -> None:
        output = forgetting.announcement("t-1", reason=events.RETENTION, at=AT)
        read = events.read(output.event)
        assert (read.type, read.reason, output.event.correlation_id) == (
            events.TicketEventType.FORGOTTEN, "retention", "t-1")

    def test_from_anyone_else_it_is_not_trusted(self) -> None:
        output = forgetting.announcement("t-1", reason=events.ERASURE, at=AT)
        forged = dataclasses.replace(output.event, source=events.INTAKE_SOURCE)
        with pytest.raises(events.UntrustedEvent):
            events.read(forged)
