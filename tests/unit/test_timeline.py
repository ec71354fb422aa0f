from datetime import UTC, datetime, timedelta

from services.core.events import TicketEvent, TicketEventType
from services.metrics import timeline
from services.metrics.timeline import Duration, Routed, Timeline

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def event(kind: TicketEventType, at_seconds: float, **fields: object) -> TicketEvent:
    return TicketEvent(ticket_id="t-1", type=kind, occurred_at=T0 + timedelta(seconds=at_seconds),
                       **fields)  # type: ignore[arg-type]


RECEIVED = event(TicketEventType.RECEIVED, 0, received_at=T0)
ROUTED = event(TicketEventType.ROUTED, 0.5, received_at=T0, department="public_sector",
               segment="government", reason="route")
RESPONDED = event(TicketEventType.RESPONDED, 120)


def replay(*events: TicketEvent) -> tuple[Timeline, list[timeline.Observation]]:
    current, seen = Timeline(ticket_id="t-1"), []
    for item in events:
        current, observations = timeline.apply(current, item)
        seen.extend(observations)
    return current, seen


class TestFirstResponse:
    def test_observed_once_from_receipt_to_response(self) -> None:
        _, seen = replay(RECEIVED, ROUTED, RESPONDED)
        assert Duration("first_response", "public_sector", "government", 120.0) in seen
        assert Routed("public_sector", "government", "route") in seen

    def test_duplicate_events_change_nothing(self) -> None:
        once, seen_once = replay(RECEIVED, ROUTED, RESPONDED)
        twice, seen_twice = replay(RECEIVED, ROUTED, ROUTED, RESPONDED, RESPONDED, RECEIVED)
        assert once == twice
        assert seen_once == seen_twice

    def test_out_of_order_events_are_placed_correctly(self) -> None:
        in_order, seen = replay(RECEIVED, ROUTED, RESPONDED)
        shuffled, seen_shuffled = replay(RESPONDED, ROUTED, RECEIVED)
        assert shuffled == in_order
        assert sorted(map(repr, seen_shuffled)) == sorted(map(repr, seen))

    def test_nothing_is_observed_before_the_department_is_known(self) -> None:
        _, seen = replay(RECEIVED, RESPONDED)
        assert seen == []

    def test_earliest_report_of_a_moment_wins(self) -> None:
        later_response = event(TicketEventType.RESPONDED, 300)
        current, _ = replay(RECEIVED, ROUTED, later_response, RESPONDED)
        assert current.first_response_at == T0 + timedelta(seconds=120)


class TestOtherMeasures:
    def test_queue_wait_resolution_and_pipeline_latency(self) -> None:
        _, seen = replay(RECEIVED, ROUTED, event(TicketEventType.PICKED_UP, 60.5),
                         RESPONDED, event(TicketEventType.RESOLVED, 600))
        durations = {o.measure: o.seconds for o in seen if isinstance(o, Duration)}
        assert durations == {"pipeline_latency": 0.5, "queue_wait": 60.0,
                             "first_response": 120.0, "resolution": 600.0}
