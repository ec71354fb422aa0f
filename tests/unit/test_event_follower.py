"""The router's event follower (services/router/event_follower.py) on a report, with a
recording store: the deadlines it publishes, under an id derived from the report's."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

from services.core import envelope, events
from services.core.events import TicketEvent, TicketEventType
from services.router import service_clocks
from services.router.event_follower import FollowTicketEvent
from services.router.store import ClockChange, Report, Reported

ROUTED_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TARGETS = service_clocks.Targets(timedelta(hours=1), next_response=timedelta(hours=2))


class OneTicket:
    """The routed ticket t-1's clocks, moved by each report as the store moves them."""

    def __init__(self) -> None:
        self.clocks = service_clocks.routed(TARGETS, ROUTED_AT, None)

    async def record_report(self, ticket_id: str, event_type: str, at: datetime, *,
                            move_clocks: ClockChange | None = None,
                            event_id: str | None = None) -> Reported | None:
        assert move_clocks is not None
        self.clocks = move_clocks(self.clocks, "customer_care")
        return Reported("standard", self.clocks, "customer_care")

    async def record_reports(self, reports: Sequence[Report], *,
                             awaited: Collection[str] = ()) -> list[Reported | None]:
        return [await self.record_report(r.ticket_id, r.event_type, r.at,
                                         move_clocks=r.move_clocks, event_id=r.event_id)
                for r in reports]


def report(at: datetime) -> envelope.Event:
    return events.as_envelope(TicketEvent(ticket_id="t-1", type=TicketEventType.RESPONDED,
                                          occurred_at=at, department="customer_care"),
                              "corr-1", events.INTAKE_SOURCE)


class TestDeadlinesChanged:
    async def test_a_report_read_again_publishes_the_same_event_id(self) -> None:
        """At least once, a batch replayed after a crash is followed again: its
        deadlines_changed keeps its id, so a webhook receiver (which keeps `webhook-id`s,
        the event's) takes it once. Another report's has another."""
        follow = FollowTicketEvent(OneTicket())  # type: ignore[arg-type]
        responded = report(ROUTED_AT + timedelta(minutes=20))
        first, again = await follow(responded), await follow(responded)
        other = await follow(report(ROUTED_AT + timedelta(minutes=30)))
        ids = [outputs[0].event.id for outputs in (first, again, other)]
        assert [outputs[0].event.type for outputs in (first, again, other)] == [
            TicketEventType.DEADLINES_CHANGED] * 3
        assert ids[0] == ids[1] != ids[2]
        assert ids[0] != responded.id
