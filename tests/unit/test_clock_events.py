"""What the router's clocks add to the metrics timeline (services/metrics/clock_events.py):
each notice counted once, time paused measured from waiting to the customer's reply, and
the first-response target the router's clock decided where the timeline could not."""

from __future__ import annotations

from datetime import timedelta

from services.core.events import TicketEvent, TicketEventType
from services.metrics import clock_events, stats, timeline
from services.metrics.timeline import (
    ClockEscalated,
    ClockWarning,
    Paused,
    ServiceTarget,
    Timeline,
)
from services.router import service_clocks
from tests.unit.test_timeline import RECEIVED, ROUTED, ROUTED_WITH_DEADLINE, T0, event


def replay(*events: TicketEvent) -> tuple[Timeline, list[timeline.Observation]]:
    current, seen = Timeline(ticket_id="t-1"), []
    for item in events:
        current, observations = timeline.apply(current, item)
        current, more = clock_events.apply(current, item)
        seen.extend([*observations, *more])
    return current, seen


WARNING = event(TicketEventType.TARGET_WARNING, 60, department="public_sector",
                segment="government", target="first_response")
BREACH = event(TicketEventType.ESCALATED, 90, department="supervisors",
               from_department="public_sector", segment="government",
               target="first_response", level=1, reason="escalation")
WAITING = event(TicketEventType.WAITING_ON_CUSTOMER, 200, department="public_sector")
REPLIED = event(TicketEventType.CUSTOMER_REPLIED, 500)
NEXT_MET = event(TicketEventType.DEADLINES_CHANGED, 600, department="public_sector",
                 segment="government", outcomes={"next_response#1": "met"})


class TestNotices:
    def test_warning_and_breach_are_counted_for_the_department_that_held_it(self) -> None:
        _, seen = replay(RECEIVED, ROUTED, WARNING, BREACH)
        assert ClockWarning("public_sector", "government", "first_response") in seen
        assert ClockEscalated("public_sector", "government", "first_response", 1) in seen
        assert ServiceTarget("public_sector", "government", "first_response",
                             "missed") in seen

    def test_outcomes_the_router_decided_are_counted(self) -> None:
        _, seen = replay(RECEIVED, ROUTED, NEXT_MET)
        assert ServiceTarget("public_sector", "government", "next_response", "met") in seen

    def test_a_notice_the_router_sends_again_after_a_crash_is_counted_once(self) -> None:
        """The clock watch publishes a notice before its clocks record it: after a crash
        in between it sends the notice again at the next check, at a later time, about
        the same deadline (a missed one stays the clock's: clocks.py)."""
        due = {"first_response": T0 + timedelta(seconds=80)}
        warned = [event(TicketEventType.TARGET_WARNING, at, department="public_sector",
                        segment="government", target="first_response", deadlines=due)
                  for at in (60, 65)]
        breached = [event(TicketEventType.ESCALATED, at, department="supervisors",
                          from_department="public_sector", segment="government",
                          target="first_response", level=level, reason="escalation",
                          deadlines=due)
                    for at, level in ((90, 1), (95, 1), (400, 2), (405, 2))]
        _, seen = replay(RECEIVED, ROUTED, *warned, *breached)
        counted = [o for o in seen if isinstance(o, ClockWarning | ClockEscalated
                                                 | ServiceTarget)]
        assert counted == [
            ClockWarning("public_sector", "government", "first_response"),
            ClockEscalated("public_sector", "government", "first_response", 1),
            ServiceTarget("public_sector", "government", "first_response", "missed"),
            ClockEscalated("public_sector", "government", "first_response", 2)]

    def test_a_replayed_notice_is_counted_once(self) -> None:
        _, once = replay(RECEIVED, ROUTED, WARNING, BREACH, NEXT_MET)
        _, twice = replay(RECEIVED, ROUTED, WARNING, BREACH, WARNING, NEXT_MET, BREACH,
                          NEXT_MET)
        assert [o for o in twice if not isinstance(o, timeline.Routed | timeline.HandedOver)] \
            == [o for o in once if not isinstance(o, timeline.Routed | timeline.HandedOver)]


class TestPaused:
    def test_time_paused_runs_from_waiting_to_the_reply(self) -> None:
        current, seen = replay(RECEIVED, ROUTED, WAITING, REPLIED)
        assert Paused("public_sector", "government", 300.0) in seen
        assert current.paused_at is None

    def test_a_resolution_while_waiting_ends_the_pause(self) -> None:
        _, seen = replay(RECEIVED, ROUTED, WAITING, event(TicketEventType.RESOLVED, 260))
        assert Paused("public_sector", "government", 60.0) in seen

    def test_a_reply_dated_before_the_pause_measures_none_as_the_router_s_clocks(
            self) -> None:
        """Events out of order: the reply dated before the pause it ends. The router's
        clocks resume where they paused (clocks.taken_at), so the pause they keep is 0
        seconds, as the timeline's."""
        early = event(TicketEventType.CUSTOMER_REPLIED, 150)
        _, seen = replay(RECEIVED, ROUTED, WAITING, early)
        assert [o for o in seen if isinstance(o, Paused)] == [
            Paused("public_sector", "government", 0.0)]
        clocks = service_clocks.routed(service_clocks.Targets(timedelta(hours=4)),
                                       ROUTED.occurred_at, None)
        for report in (WAITING, early):
            clocks = service_clocks.reported(clocks, report.type, report.occurred_at, None)
        assert [clock.paused_seconds for clock in clocks.clocks] == [0.0]

    def test_a_replayed_pause_is_measured_once(self) -> None:
        _, seen = replay(RECEIVED, ROUTED, WAITING, REPLIED, WAITING, REPLIED)
        assert [o for o in seen if isinstance(o, Paused)] == [
            Paused("public_sector", "government", 300.0)]


class TestFirstResponseDeadline:
    def test_follows_the_clock_paused_and_resumed(self) -> None:
        paused = event(TicketEventType.DEADLINES_CHANGED, 200, deadlines={
            "first_response": None})
        current, _ = replay(RECEIVED, ROUTED, paused)
        assert current.first_response_deadline is None
        resumed = event(TicketEventType.DEADLINES_CHANGED, 500, deadlines={
            "first_response": T0.replace(hour=12)})
        current, _ = replay(RECEIVED, ROUTED, paused, resumed)
        assert current.first_response_deadline == T0.replace(hour=12)

    def test_a_priority_change_brings_it_forward(self) -> None:
        # Routed with a deadline an hour out; made priority 1 after two minutes, due at
        # 15: a response at 10 meets it, one at 20 misses it (the old deadline would not).
        routed = event(TicketEventType.ROUTED, 0.5, received_at=T0, department="public_sector",
                       segment="government", reason="route",
                       first_response_deadline=T0.replace(hour=10))
        urgent = event(TicketEventType.PRIORITY_CHANGED, 120, department="public_sector",
                       segment="government", priority=1,
                       deadlines={"first_response": T0.replace(minute=15)})
        current, seen = replay(RECEIVED, routed, urgent,
                               event(TicketEventType.RESPONDED, 600))
        assert current.first_response_deadline == T0.replace(minute=15)
        assert timeline.TargetDecided("public_sector", "government", "met") in seen
        _, seen = replay(RECEIVED, routed, urgent, event(TicketEventType.RESPONDED, 1200))
        assert timeline.TargetDecided("public_sector", "government", "missed") in seen


class TestFirstResponseTargetDecidedByTheClock:
    """Answered while paused, the first-response clock had no deadline to compare with:
    the router's outcome decides the target, counted once (routing_first_response_target
    and the stats' attainment agree with routing_service_target)."""

    PAUSED = event(TicketEventType.DEADLINES_CHANGED, 200, department="public_sector",
                   segment="government", deadlines={"first_response": None}, paused=True)
    ANSWERED = event(TicketEventType.RESPONDED, 300, department="public_sector")
    MET = event(TicketEventType.DEADLINES_CHANGED, 301, department="public_sector",
                segment="government", outcomes={"first_response#1": "met"})

    def test_answered_while_paused_is_met_as_the_clock_says(self) -> None:
        current, seen = replay(RECEIVED, ROUTED, WAITING, self.PAUSED, self.ANSWERED,
                               self.MET, self.MET)
        decided = [o for o in seen if isinstance(o, timeline.TargetDecided)]
        assert decided == [timeline.TargetDecided("public_sector", "government", "met")]
        assert current.target_outcome == "met"
        assert current.first_response_deadline is None  # paused when answered
        assert stats.outcome(current, T0.replace(hour=23)) == "met"  # not "without target"

    def test_a_target_decided_against_its_deadline_is_not_counted_again(self) -> None:
        _, seen = replay(RECEIVED, ROUTED_WITH_DEADLINE, event(TicketEventType.RESPONDED, 300),
                         self.MET)
        assert [o for o in seen if isinstance(o, timeline.TargetDecided)] == [
            timeline.TargetDecided("public_sector", "government", "met")]

    def test_the_department_credited_is_the_counters_in_the_stats_too(self) -> None:
        """Answered while paused, then transferred: the stats' attainment credits the
        department the counter does (they had credited the one holding it last)."""
        moved = event(TicketEventType.TRANSFERRED, 400, department="retail_care",
                      from_department="public_sector", segment="government",
                      reason="transfer", deadlines={"first_response": None})
        current, seen = replay(RECEIVED, ROUTED, WAITING, self.PAUSED, self.ANSWERED,
                               self.MET, moved)
        decided = [o for o in seen if isinstance(o, timeline.TargetDecided)]
        assert decided == [timeline.TargetDecided("public_sector", "government", "met")]
        assert current.department == "retail_care"
        attained = {}
        for department in ("public_sector", "retail_care"):
            tally = stats.Tally(timedelta(days=1), now=T0.replace(hour=23),
                                department=department)
            tally.add(current)
            attained[department] = tally.stats(backlog=0).first_response_target.met
        assert attained == {"public_sector": 1, "retail_care": 0}

    def test_a_breach_decides_it_missed_for_the_department_that_held_it(self) -> None:
        current, seen = replay(RECEIVED, ROUTED, WAITING, self.PAUSED, BREACH)
        assert timeline.TargetDecided("public_sector", "government", "missed") in seen
        assert current.target_outcome == "missed"
