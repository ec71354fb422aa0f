import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.core.events import TicketEvent, TicketEventType
from services.metrics import timeline
from services.metrics.timeline import Duration, Routed, Timeline
from services.router import intake_policy

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


def handed(kind: TicketEventType, at_seconds: float, to: str, **fields: object) -> TicketEvent:
    return event(kind, at_seconds, department=to, segment="government", **fields)


TRANSFERRED = handed(TicketEventType.TRANSFERRED, 60, "business_desk",
                     from_department="public_sector", reason="transfer")


class TestEscalated:
    """What the service parity's escalation rate counts: any escalation, handed to
    another department or flagged where the ticket is; only the hand-over is counted
    as one (routing_tickets_escalated_total)."""

    def test_handed_to_another_department(self) -> None:
        current, seen = replay(RECEIVED, ROUTED, handed(
            TicketEventType.ESCALATED, 90, "supervisors", from_department="public_sector",
            reason="escalation", target="first_response", level=1))
        assert timeline.escalated(current)
        assert timeline.HandedOver("escalated", "public_sector", "supervisors") in seen

    def test_flagged_where_it_is(self) -> None:
        current, seen = replay(RECEIVED, ROUTED, handed(
            TicketEventType.ESCALATED, 90, "public_sector", from_department="public_sector",
            reason="escalation", target="next_response", level=1))
        assert timeline.escalated(current)
        assert not [o for o in seen if isinstance(o, timeline.HandedOver)]

    def test_not_by_a_routing_or_a_transfer(self) -> None:
        current, _ = replay(RECEIVED, ROUTED, TRANSFERRED, RESPONDED)
        assert not timeline.escalated(current)


class TestTransfer:
    def test_the_department_changes_and_the_clock_runs_from_receipt(self) -> None:
        current, seen = replay(RECEIVED, ROUTED, TRANSFERRED, RESPONDED)
        assert current.department == "business_desk"
        assert current.transferred_at == T0 + timedelta(seconds=60)
        assert Duration("first_response", "business_desk", "government", 120.0) in seen
        assert timeline.HandedOver("transferred", "public_sector", "business_desk") in seen
        assert Routed("business_desk", "government", "transfer") in seen

    def test_a_measure_goes_to_the_department_that_held_the_ticket_then(self) -> None:
        late_transfer = handed(TicketEventType.TRANSFERRED, 300, "business_desk",
                               from_department="public_sector")
        current, seen = replay(RECEIVED, ROUTED, RESPONDED, late_transfer,
                               event(TicketEventType.RESOLVED, 900))
        assert current.department == "business_desk"
        assert Duration("first_response", "public_sector", "government", 120.0) in seen
        assert Duration("resolution", "business_desk", "government", 900.0) in seen

    def test_a_duplicate_transfer_counts_once(self) -> None:
        once, seen_once = replay(RECEIVED, ROUTED, TRANSFERRED)
        twice, seen_twice = replay(RECEIVED, ROUTED, TRANSFERRED, TRANSFERRED, ROUTED)
        assert once == twice
        assert seen_once == seen_twice

    def test_a_transfer_before_its_routing_is_placed_correctly(self) -> None:
        in_order, seen = replay(RECEIVED, ROUTED, TRANSFERRED, RESPONDED)
        shuffled, seen_shuffled = replay(TRANSFERRED, RESPONDED, RECEIVED, ROUTED)
        assert shuffled.department == in_order.department == "business_desk"
        assert shuffled.assignments == in_order.assignments
        assert sorted(map(repr, seen_shuffled)) == sorted(map(repr, seen))

    def test_the_sender_is_the_holder_when_the_event_does_not_name_it(self) -> None:
        unnamed = handed(TicketEventType.TRANSFERRED, 60, "business_desk")
        _, seen = replay(RECEIVED, ROUTED, unnamed)
        assert timeline.HandedOver("transferred", "public_sector", "business_desk") in seen

    def test_each_further_transfer_counts(self) -> None:
        back = handed(TicketEventType.TRANSFERRED, 90, "key_accounts",
                      from_department="business_desk")
        current, seen = replay(RECEIVED, ROUTED, TRANSFERRED, back)
        assert current.department == "key_accounts"
        assert [o for o in seen if isinstance(o, timeline.HandedOver)] == [
            timeline.HandedOver("transferred", "public_sector", "business_desk"),
            timeline.HandedOver("transferred", "business_desk", "key_accounts")]


    def test_a_ticket_handed_back_and_forth_is_where_the_last_hand_over_put_it(
            self) -> None:
        """public_sector -> business_desk, back, and to business_desk again: it is with
        business_desk, as the router's trace says (intake_policy.held_at), and each
        hand-over counts."""
        back = handed(TicketEventType.TRANSFERRED, 70, "public_sector",
                      from_department="business_desk")
        again = handed(TicketEventType.TRANSFERRED, 80, "business_desk",
                       from_department="public_sector")
        current, seen = replay(RECEIVED, ROUTED, TRANSFERRED, back, again, again)
        assert current.department == "business_desk"
        assert current.department_at(T0 + timedelta(seconds=75)) == "public_sector"
        assert current.department_at(T0 + timedelta(seconds=85)) == "business_desk"
        trace = [{"at": (T0 + timedelta(seconds=at)).isoformat(), "step": step,
                  "from": source, "to": to}
                 for at, step, source, to in [
                     (0.5, "routed", None, "public_sector"),
                     (60, "transferred", "public_sector", "business_desk"),
                     (70, "transferred", "business_desk", "public_sector"),
                     (80, "transferred", "public_sector", "business_desk")]]
        for moment in (75, 85):
            at = T0 + timedelta(seconds=moment)
            assert intake_policy.held_at(trace, at) == current.department_at(at)
        assert len([o for o in seen if isinstance(o, timeline.HandedOver)]) == 3

    def test_a_ticket_handed_over_more_often_than_a_timeline_keeps_is_where_the_router_says(
            self) -> None:
        """60 transfers, business_desk and public_sector in turn: more hand-overs than a
        timeline keeps (MAX_ASSIGNMENTS). It still follows each, as the router's trace
        does (intake_policy.held_at): the same holder after each of the last hand-overs
        and now, every hand-over counted, and a first response after them credited to
        the department that has the ticket."""
        departments = ("public_sector", "business_desk")
        transfers = [(60 + 10 * n, departments[n % 2], departments[(n + 1) % 2])
                     for n in range(60)]
        responded = event(TicketEventType.RESPONDED, 60 + 10 * 60 + 5)
        current, seen = replay(RECEIVED, ROUTED, *(
            handed(TicketEventType.TRANSFERRED, at, to, from_department=source)
            for at, source, to in transfers), responded)
        trace = [{"at": (T0 + timedelta(seconds=0.5)).isoformat(), "step": "routed",
                  "to": "public_sector"},
                 *({"at": (T0 + timedelta(seconds=at)).isoformat(), "step": "transferred",
                    "from": source, "to": to} for at, source, to in transfers)]
        assert current.department == intake_policy.held_at(trace, responded.occurred_at) \
            == "public_sector"
        for at, _source, _to in transfers[-10:]:
            moment = T0 + timedelta(seconds=at + 5)
            assert current.department_at(moment) == intake_policy.held_at(trace, moment)
        assert len([o for o in seen if isinstance(o, timeline.HandedOver)]) == 60
        assert Duration("first_response", "public_sector", "government", 665.0) in seen
        assert len(current.assignments) <= timeline.MAX_ASSIGNMENTS
        assert current.routing_reason == "route"
        # The first transfer, let go of, sent again: nothing changes, nothing counts.
        at, source, to = transfers[0]
        assert timeline.apply(current, handed(TicketEventType.TRANSFERRED, at, to,
                                              from_department=source)) == (current, [])

    def test_an_escalation_sent_again_later_counts_once(self) -> None:
        """The clock watch sends its notices at least once: an escalation published,
        then not recorded, is published again at the next check, at its own time."""
        escalated = handed(TicketEventType.ESCALATED, 900, "key_accounts",
                           from_department="public_sector", reason="escalation")
        again = handed(TicketEventType.ESCALATED, 905, "key_accounts",
                       from_department="public_sector", reason="escalation")
        once, seen_once = replay(RECEIVED, ROUTED, escalated)
        twice, seen_twice = replay(RECEIVED, ROUTED, escalated, again)
        assert twice.assignments == once.assignments
        assert seen_twice == seen_once


class TestEscalation:
    def test_escalated_to_another_department(self) -> None:
        escalated = handed(TicketEventType.ESCALATED, 900, "key_accounts",
                           from_department="public_sector", reason="escalation")
        current, seen = replay(RECEIVED, ROUTED, escalated)
        assert current.escalated_at == T0 + timedelta(seconds=900)
        assert current.department == "key_accounts"
        assert timeline.HandedOver("escalated", "public_sector", "key_accounts") in seen
        assert Routed("key_accounts", "government", "escalation") in seen

    def test_escalated_with_nowhere_to_go_stays_and_is_not_routed_again(self) -> None:
        stays = handed(TicketEventType.ESCALATED, 900, "public_sector",
                       from_department="public_sector", reason="escalation")
        current, seen = replay(RECEIVED, ROUTED, stays)
        assert current.department == "public_sector"
        # Flagged where it is: counted by the clock's escalation, not as a hand-over.
        assert [o for o in seen if isinstance(o, timeline.HandedOver)] == []
        assert [o for o in seen if isinstance(o, Routed)] == [
            Routed("public_sector", "government", "route")]

    def test_a_refined_routing_to_another_department_is_routed_again(self) -> None:
        refined = event(TicketEventType.ROUTED, 2, department="business_desk",
                        segment="government", reason="refinement")
        current, seen = replay(RECEIVED, ROUTED, refined)
        assert current.department == "business_desk"
        assert current.routing_reason == "route"
        assert Routed("business_desk", "government", "refinement") in seen


DEADLINE = T0 + timedelta(minutes=15)
ROUTED_WITH_DEADLINE = event(TicketEventType.ROUTED, 0.5, received_at=T0,
                             department="public_sector", segment="government",
                             reason="route", first_response_deadline=DEADLINE)


def targets(seen: list[timeline.Observation]) -> list[timeline.TargetDecided]:
    return [o for o in seen if isinstance(o, timeline.TargetDecided)]


class TestFirstResponseTarget:
    def test_met_when_answered_by_the_deadline(self) -> None:
        current, seen = replay(RECEIVED, ROUTED_WITH_DEADLINE, RESPONDED)
        assert current.first_response_deadline == DEADLINE
        assert current.target_outcome == "met"
        assert targets(seen) == [timeline.TargetDecided("public_sector", "government", "met")]

    def test_answered_exactly_at_the_deadline_is_met(self) -> None:
        _, seen = replay(ROUTED_WITH_DEADLINE, event(TicketEventType.RESPONDED, 900))
        assert [t.outcome for t in targets(seen)] == ["met"]

    def test_missed_when_answered_late(self) -> None:
        _, seen = replay(RECEIVED, ROUTED_WITH_DEADLINE, event(TicketEventType.RESPONDED, 901))
        assert [t.outcome for t in targets(seen)] == ["missed"]

    def test_missed_when_the_deadline_passes_unanswered_and_decided_once(self) -> None:
        current, _ = replay(RECEIVED, ROUTED_WITH_DEADLINE)
        assert timeline.check_deadline(current, DEADLINE) == (current, [])
        missed, seen = timeline.check_deadline(current, DEADLINE + timedelta(seconds=1))
        assert targets(seen) == [timeline.TargetDecided("public_sector", "government",
                                                        "missed")]
        assert timeline.check_deadline(missed, DEADLINE + timedelta(hours=1)) == (missed, [])
        late, seen_late = timeline.apply(missed, event(TicketEventType.RESPONDED, 1800))
        assert late.target_outcome == "missed"
        assert targets(seen_late) == []

    def test_the_earliest_deadline_holds_and_duplicates_decide_nothing_twice(self) -> None:
        replayed = event(TicketEventType.ROUTED, 5, department="public_sector",
                         segment="government", first_response_deadline=DEADLINE
                         + timedelta(seconds=5))
        current, seen = replay(ROUTED_WITH_DEADLINE, replayed, RESPONDED, RESPONDED, replayed)
        assert current.first_response_deadline == DEADLINE
        assert len(targets(seen)) == 1

    def test_the_department_holding_the_ticket_at_the_deadline_missed_it(self) -> None:
        early_transfer = handed(TicketEventType.TRANSFERRED, 60, "business_desk",
                                from_department="public_sector")
        current, _ = replay(RECEIVED, ROUTED_WITH_DEADLINE, early_transfer)
        _, seen = timeline.check_deadline(current, DEADLINE + timedelta(minutes=1))
        assert targets(seen) == [timeline.TargetDecided("business_desk", "government",
                                                        "missed")]

    def test_without_a_deadline_nothing_is_decided(self) -> None:
        current, seen = replay(RECEIVED, ROUTED, RESPONDED)
        assert targets(seen) == []
        assert timeline.check_deadline(current, T0 + timedelta(days=30)) == (current, [])


class TestChanged:
    """`timeline.changed` is dataclasses.replace for a timeline, only cheaper."""

    def test_each_field_changed_as_replace_changes_it(self) -> None:
        current, _ = replay(RECEIVED, ROUTED)
        values = {"ticket_id": "t-2", "department": "retail_care", "segment": "retail",
                  "routing_reason": "overflow", "first_response_deadline": T0,
                  "target_outcome": "met", "assignments": (), "observed": frozenset({"x"}),
                  "clock_notices": frozenset({"k"})}
        for name in (f.name for f in dataclasses.fields(Timeline)):
            value = values.get(name, T0 + timedelta(seconds=7))
            copy = timeline.changed(current, **{name: value})
            assert copy == dataclasses.replace(current, **{name: value})
            assert hash(copy) == hash(dataclasses.replace(current, **{name: value}))
        assert current == replay(RECEIVED, ROUTED)[0]  # the original as it was

    def test_a_field_a_timeline_lacks_is_refused(self) -> None:
        with pytest.raises(TypeError):
            timeline.changed(Timeline(ticket_id="t-1"), departement="retail_care")

    def test_a_timeline_stays_a_plain_dataclass(self) -> None:
        # What `changed` relies on: no __post_init__, every field set by __init__.
        assert not hasattr(Timeline, "__post_init__")
        assert all(f.init for f in dataclasses.fields(Timeline))


BUILT_VALUES = {"ticket_id": "t-2", "department": "retail_care", "segment": "retail",
                "routing_reason": "overflow", "target_outcome": "met",
                "assignments": (timeline.Assignment("routed", "retail_care", T0, "route"),),
                "observed": frozenset({"routed"}), "clock_notices": frozenset({"k"})}


class TestBuilt:
    """`timeline.built` is the constructor, every field given, only cheaper."""

    def values(self) -> dict[str, object]:
        return {f.name: BUILT_VALUES.get(f.name, T0 + timedelta(seconds=n))
                for n, f in enumerate(dataclasses.fields(Timeline))}

    def test_it_builds_what_the_constructor_builds(self) -> None:
        values = self.values()
        made = timeline.built(**values)
        assert made == Timeline(**values)  # type: ignore[arg-type]
        assert hash(made) == hash(Timeline(**values))  # type: ignore[arg-type]
        assert repr(made) == repr(Timeline(**values))  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.department = "sales"  # type: ignore[misc]

    def test_a_field_not_given_or_unknown_is_refused(self) -> None:
        values = self.values()
        del values["paused_at"]
        with pytest.raises(TypeError, match="paused_at"):
            timeline.built(**values)
        with pytest.raises(TypeError, match="departement"):
            timeline.built(**self.values(), departement="retail_care")
