"""Service-level clocks (services/router/clocks.py, service_clocks.py) and business time
between two instants (calendars.business_time): pauses, next responses, warnings,
escalation levels, and rebasing on transfer and priority change, across DST and
holidays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.events import TicketEventType
from services.metrics import service_levels
from services.router import calendars, clocks, priority, service_clocks
from tests.unit.routing_tables import parse as parse_table
from tests.unit.test_calendars import OFFICE, parse

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
LONDON = parse("  time_zone: Europe/London\n  hours: {mon-fri: '09:00-17:00'}\n")
NINE_TO_FIVE = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-fri: '09:00-17:00'}\n")
TARGETS = service_clocks.Targets(timedelta(hours=4), timedelta(hours=2), timedelta(hours=16),
                                 warning_share=0.75)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMSTERDAM)  # type: ignore[misc]


def assert_answered_late(moved: service_clocks.TicketClocks, answered: datetime) -> None:
    """Answered at `answered` in NINE_TO_FIVE's hours: late for the clock and for the
    metrics' rule alike."""
    stopped = service_clocks.reported(moved, TicketEventType.RESPONDED, answered,
                                      NINE_TO_FIVE).current("first_response")
    assert stopped is not None and stopped.outcome == "missed"
    assert service_levels.first_response_outcome(
        answered, moved.deadlines()["first_response"]) == "missed"


class TestBusinessTime:
    def test_counts_only_opening_hours(self) -> None:
        # Friday 16:00 to Monday 10:00: two hours on Friday, two on Monday.
        assert calendars.business_time(local(2025, 3, 7, 16), local(2025, 3, 10, 10),
                                       OFFICE) == timedelta(hours=4)

    def test_a_holiday_counts_nothing(self) -> None:
        assert calendars.business_time(local(2025, 12, 24, 17), local(2025, 12, 29, 9),
                                       OFFICE) == timedelta(hours=2)

    def test_is_the_inverse_of_deadline_across_dst(self) -> None:
        calendar = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-sun: '00:00-24:00'}\n")
        start = local(2025, 3, 29, 12)  # the night to Sunday 30 March is an hour shorter
        due = calendars.deadline(start, timedelta(hours=24), calendar)
        assert due.astimezone(AMSTERDAM) == local(2025, 3, 30, 13)
        assert calendars.business_time(start, due, calendar) == timedelta(hours=24)

    def test_without_a_calendar_it_is_elapsed_time(self) -> None:
        start = datetime(2025, 1, 1, tzinfo=UTC)
        assert calendars.business_time(start, start + timedelta(hours=30), None) \
            == timedelta(hours=30)


class TestRouted:
    def test_first_response_and_resolution_clocks_start(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        assert state.deadlines() == {"first_response": local(2025, 3, 10, 13),
                                     "resolution": local(2025, 3, 11, 15)}
        assert state.current("first_response").warning_at == local(2025, 3, 10, 12)  # type: ignore[union-attr]
        assert state.next_check() == local(2025, 3, 10, 12)

    def test_a_first_response_deadline_given_is_taken_not_worked_out_again(self) -> None:
        """The routing decision's (routing.decide works it out from the same target,
        moment and calendar): here a moment the target does not give, to tell them apart.
        Its warning still comes at its share of the target, and the other clocks are
        worked out as before."""
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE,
                                      first_response_deadline=local(2025, 3, 10, 14))
        assert state.deadlines() == {"first_response": local(2025, 3, 10, 14),
                                     "resolution": local(2025, 3, 11, 15)}
        assert state.current("first_response").warning_at == local(2025, 3, 10, 12)  # type: ignore[union-attr]

    def test_no_resolution_target_no_resolution_clock(self) -> None:
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=1)),
                                      local(2025, 3, 10, 9), None)
        assert list(state.deadlines()) == ["first_response"]
        assert state.current("first_response").warning_at is None  # type: ignore[union-attr]


class TestPauses:
    def test_waiting_on_the_customer_pauses_every_running_clock(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.RESPONDED,
                                        local(2025, 3, 10, 10), OFFICE)
        state = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                        local(2025, 3, 10, 11), OFFICE)
        assert state.paused
        assert state.deadlines() == {"first_response": None, "resolution": None}
        assert state.next_check() is None  # nothing is due while paused
        resolution = state.current("resolution")
        assert resolution is not None and resolution.spent_seconds == 2 * 3600

    def test_with_no_clock_running_nothing_pauses(self) -> None:
        """A first-response target alone (the demo's table), answered: waiting on the
        customer pauses nothing, as README's walk-through says."""
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=4)),
                                      local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.RESPONDED,
                                        local(2025, 3, 10, 10), OFFICE)
        state = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                        local(2025, 3, 10, 11), OFFICE)
        assert not state.paused
        assert state.deadlines() == {"first_response": None}

    def test_waiting_before_the_first_response_pauses_it(self) -> None:
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=4)),
                                      local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                        local(2025, 3, 10, 10), OFFICE)
        assert state.paused
        assert state.deadlines() == {"first_response": None}

    def test_the_reply_resumes_them_keeping_what_they_spent(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        for report, at in ((TicketEventType.RESPONDED, local(2025, 3, 10, 10)),
                           (TicketEventType.WAITING_ON_CUSTOMER, local(2025, 3, 10, 11)),
                           (TicketEventType.CUSTOMER_REPLIED, local(2025, 3, 11, 9))):
            state = service_clocks.reported(state, report, at, OFFICE)
        assert not state.paused
        # 2h of 16h spent: 14h of office hours from Tuesday 09:00 is Wednesday 13:00.
        assert state.deadlines()["resolution"] == local(2025, 3, 12, 13)
        resolution = state.current("resolution")
        assert resolution is not None and resolution.paused_seconds == 22 * 3600

    def test_the_reply_starts_a_next_response_clock_once_answered(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.RESPONDED,
                                        local(2025, 3, 10, 10), OFFICE)
        state = service_clocks.reported(state, TicketEventType.CUSTOMER_REPLIED,
                                        local(2025, 3, 10, 17), OFFICE)
        # 2h from Monday 17:00: one hour on Monday, one on Tuesday.
        assert state.deadlines()["next_response"] == local(2025, 3, 11, 9)
        state = service_clocks.reported(state, TicketEventType.RESPONDED,
                                        local(2025, 3, 11, 8, 30), OFFICE)
        answered = state.current("next_response")
        assert answered is not None and answered.outcome == "met"
        state = service_clocks.reported(state, TicketEventType.CUSTOMER_REPLIED,
                                        local(2025, 3, 11, 10), OFFICE)
        assert state.current("next_response").instance == 2  # type: ignore[union-attr]

    def test_a_reply_before_the_first_response_starts_no_next_response(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.CUSTOMER_REPLIED,
                                        local(2025, 3, 10, 10), OFFICE)
        assert "next_response" not in state.deadlines()

    def test_resolved_stops_every_clock(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.RESOLVED,
                                        local(2025, 3, 10, 14), OFFICE)
        outcomes = {clock.target: clock.outcome for clock in state.clocks}
        assert outcomes == {"first_response": "missed", "resolution": "met"}
        assert state.next_check() is None


class TestWarningsAndLevels:
    def test_warning_then_breach_then_second_level(self) -> None:
        clock = clocks.start("first_response", 1, timedelta(hours=4), local(2025, 3, 10, 9),
                             OFFICE, warning_share=0.75)
        assert clocks.due(clock, local(2025, 3, 10, 11, 59)) is None
        assert clocks.due(clock, local(2025, 3, 10, 12)) == "warning"
        clock = clocks.warned(clock)
        assert clocks.due(clock, local(2025, 3, 10, 12, 30)) is None
        assert clocks.due(clock, local(2025, 3, 10, 13)) is None  # the deadline: in time
        assert clocks.due(clock, local(2025, 3, 10, 13, 0, 1)) == "breach"
        clock = clocks.breached(clock, local(2025, 3, 10, 13), OFFICE, timedelta(hours=6),
                                "supervisors")
        # 6h of office hours from Monday 13:00: Tuesday 09:00.
        assert clock.second_level_at == local(2025, 3, 11, 9)
        assert clocks.due(clock, local(2025, 3, 11, 8)) is None
        assert clocks.due(clock, local(2025, 3, 11, 9)) == "second_level"
        clock = clocks.second_level(clock)
        assert clocks.due(clock, local(2025, 3, 20)) is None
        assert clocks.stop(clock, local(2025, 3, 20), OFFICE).outcome == "missed"

    def test_met_or_missed_as_the_metrics_service_tells_it(self) -> None:
        """1h from Friday 17:00 in office hours (to 18:00) is due at closing time. An
        answer at 18:00 is in time; one at 19:00, with no more business time spent, is
        late: the router's clock and the metrics' rule (service_levels) say the same."""
        started, due = local(2025, 3, 14, 17), local(2025, 3, 14, 18)
        clock = clocks.start("first_response", 1, timedelta(hours=1), started, OFFICE,
                             warning_share=None)
        assert clock.deadline == due
        for answered, outcome in [(due, "met"), (local(2025, 3, 14, 19), "missed")]:
            assert clocks.stop(clock, answered, OFFICE).outcome == outcome
            assert service_levels.first_response_outcome(answered, due) == outcome

    def test_a_warning_sent_before_a_pause_is_not_sent_again(self) -> None:
        clock = clocks.start("resolution", 1, timedelta(hours=4), local(2025, 3, 10, 9),
                             OFFICE, warning_share=0.5)
        clock = clocks.warned(clock)
        clock = clocks.pause(clock, local(2025, 3, 10, 11, 30), OFFICE)
        clock = clocks.resume(clock, local(2025, 3, 10, 14), OFFICE, warning_share=0.5)
        assert clock.warning_at is None
        assert clock.deadline == local(2025, 3, 10, 15, 30)

    def test_what_is_owed_at_one_moment_is_sent_together(self) -> None:
        """Routed Monday 09:00 (office hours 08:00-18:00), first response 4h (warned
        12:00, due 13:00), resolution 16h (warned Tuesday 11:00, due Tuesday 15:00),
        first looked at Wednesday 09:00: both breaches at once (level 1), each clock's
        warning superseded by its breach; looked at Tuesday 12:00, the resolution's
        warning with the first response's breach. Both breached at once, both second
        levels come together (2h later), to the department named at their breach."""
        state = service_clocks.routed(service_clocks.Targets(
            timedelta(hours=4), resolution=timedelta(hours=16), warning_share=0.75),
            local(2025, 3, 10, 9), OFFICE)
        first, resolution = state.clocks
        both = service_clocks.owed(state, local(2025, 3, 12, 9))
        assert (both.warnings, both.breached, both.second_levels, both.count) == (
            (), (first, resolution), (), 2)
        warned = service_clocks.owed(state, local(2025, 3, 11, 12))
        assert (warned.warnings, warned.breached, warned.second_levels) == (
            (resolution,), (first,), ())
        assert not service_clocks.owed(state, local(2025, 3, 10, 11))
        breached_at = local(2025, 3, 12, 9)
        marked = service_clocks.TicketClocks(state.targets, tuple(
            clocks.breached(clock, breached_at, OFFICE, timedelta(hours=2), "supervisors")
            for clock in state.clocks))
        assert not service_clocks.owed(marked, breached_at + timedelta(minutes=1))
        later = service_clocks.owed(marked, local(2025, 3, 12, 11))
        assert ([clock.target for clock in later.second_levels], later.breached) == (
            ["first_response", "resolution"], ())


class TestWhereWhatIsOwedGoes:
    """What is owed at one moment is one hand-over (service_clocks.escalation): to where
    the furthest escalation owed goes, a second level before a breach, the second level
    due first before later ones, one naming a department before a flag; every clock owed
    goes with it, at its own level."""

    TABLE = parse_table("""\
fallback_department: care
routes: [{segment: s, department: desk}]
departments:
  desk: {escalation_to: peers}
  alone: {}
  peers: {}
  care: {}
  supervisors: {}
  managers: {}
""")
    AT = local(2025, 3, 12, 9)

    def clock(self, target: clocks.Target, *, level: int,
              second_level: tuple[timedelta, str | None] | None = None) -> clocks.Clock:
        """A clock running since Monday: past its deadline (level 0: its breach due), or
        breached with its second level due `second_level` before AT to its department."""
        started = clocks.start(target, 1, timedelta(hours=1), local(2025, 3, 10, 9), None,
                               warning_share=None)
        if level == 0:
            return started
        ago, to = second_level or (timedelta(hours=-1), None)
        return clocks.breached(started, self.AT - ago - timedelta(hours=2), None,
                               timedelta(hours=2), to)

    def where(self, department: str, *owing: clocks.Clock) -> tuple[object, ...]:
        owed = service_clocks.owed(service_clocks.TicketClocks(TARGETS, owing), self.AT)
        escalation = service_clocks.escalation(owed, self.TABLE, department)
        assert escalation is not None
        return ([clock.target for clock in owed.breached],
                [clock.target for clock in owed.second_levels], escalation.to)

    def test_a_second_level_due_with_a_breach_takes_the_ticket_where_it_names(self) -> None:
        assert self.where(
            "desk", self.clock("first_response", level=1,
                               second_level=(timedelta(seconds=1), "supervisors")),
            self.clock("resolution", level=0)) == (
            ["resolution"], ["first_response"], "supervisors")

    def test_of_second_levels_naming_different_departments_the_first_due_leads(
            self) -> None:
        assert self.where(
            "desk", self.clock("first_response", level=1,
                               second_level=(timedelta(minutes=1), "supervisors")),
            self.clock("resolution", level=1,
                       second_level=(timedelta(minutes=2), "managers"))) == (
            [], ["resolution", "first_response"], "managers")

    def test_a_second_level_that_would_flag_it_leads_only_if_none_moves_it(self) -> None:
        flagging = self.clock("first_response", level=1,
                              second_level=(timedelta(minutes=2), None))
        assert self.where("desk", flagging, self.clock("resolution", level=0)) == (
            ["resolution"], ["first_response"], "peers")
        assert self.where("alone", flagging, self.clock("resolution", level=0)) == (
            ["resolution"], ["first_response"], None)

    def test_breaches_alone_go_to_the_holders_escalation_to(self) -> None:
        assert self.where("desk", self.clock("first_response", level=0),
                          self.clock("resolution", level=0)) == (
            ["first_response", "resolution"], [], "peers")
        owed = service_clocks.owed(service_clocks.TicketClocks(TARGETS, ()), self.AT)
        assert service_clocks.escalation(owed, self.TABLE, "desk") is None


class TestRebase:
    def test_a_transfer_keeps_the_time_spent_and_counts_the_rest_in_new_hours(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        # An hour spent in Amsterdam; three left, in London's 09:00-17:00 (UTC in March).
        moved = service_clocks.handed_over(state, local(2025, 3, 10, 10), OFFICE, LONDON)
        assert moved.deadlines()["first_response"] == datetime(2025, 3, 10, 12, tzinfo=UTC)

    def test_a_transfer_over_a_holiday_waits_for_the_next_open_day(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 12, 24, 16), LONDON)
        moved = service_clocks.handed_over(state, local(2025, 12, 24, 17), LONDON, OFFICE)
        # 1h spent in London, 3h left: one before Amsterdam closes on the 24th, then
        # Christmas and Boxing Day (holidays) and the weekend, two on Monday the 29th.
        assert moved.deadlines()["first_response"] == local(2025, 12, 29, 10)

    def test_a_paused_clock_stays_paused_on_transfer(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                        local(2025, 3, 10, 10), OFFICE)
        moved = service_clocks.handed_over(state, local(2025, 3, 10, 11), OFFICE, LONDON)
        assert moved.paused and moved.deadlines()["first_response"] is None

    def test_a_priority_change_takes_the_new_targets_keeping_the_time_spent(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        urgent = service_clocks.Targets(timedelta(hours=2), None, timedelta(hours=8), 0.75)
        moved = service_clocks.handed_over(state, local(2025, 3, 10, 10), OFFICE, OFFICE,
                                           urgent)
        assert moved.deadlines() == {"first_response": local(2025, 3, 10, 11),
                                     "resolution": local(2025, 3, 10, 17)}

    def test_across_the_switch_to_summer_time(self) -> None:
        all_day = parse("  time_zone: Europe/Amsterdam\n  hours: {mon-sun: '00:00-24:00'}\n")
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=24)),
                                      local(2025, 3, 29, 12), all_day)
        moved = service_clocks.handed_over(state, local(2025, 3, 30, 12), all_day, all_day)
        # 23 real hours spent over the short night: one left, at 13:00 summer time.
        assert moved.deadlines()["first_response"] == local(2025, 3, 30, 13)

    def test_an_escalation_after_hours_keeps_the_deadline_missed(self) -> None:
        """Due Monday 17:59 in office hours, breached then and escalated to a department
        open 09:00-17:00: the deadline stays 17:59 (nothing is left to count in the new
        hours), not Tuesday 09:00, so an answer Tuesday 08:30 is late by every rule."""
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=4)),
                                      local(2025, 3, 10, 13, 59), OFFICE)
        missed = local(2025, 3, 10, 17, 59)
        breach = missed + timedelta(seconds=1)
        first = state.current("first_response")
        assert first is not None and clocks.due(first, breach) == "breach"
        state = state.with_clock(clocks.breached(first, breach, OFFICE, None))
        moved = service_clocks.handed_over(state, breach, OFFICE, NINE_TO_FIVE)
        assert moved.deadlines()["first_response"] == missed
        assert_answered_late(moved, local(2025, 3, 11, 8, 30))

    def test_a_transfer_after_the_deadline_passed_keeps_it(self) -> None:
        """Rebased 10 s after its deadline, its breach not sent: the deadline stays the one
        passed and the breach is due at once (a hand-over sends it first:
        test_a_hand_over_after_a_deadline_comes_after_its_breach); an answer before the
        new department opens is late, for the clock and the metrics' rule alike."""
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=4)),
                                      local(2025, 3, 10, 13, 59), OFFICE)
        missed = local(2025, 3, 10, 17, 59)
        moved_at = missed + timedelta(seconds=10)
        moved = service_clocks.handed_over(state, moved_at, OFFICE, NINE_TO_FIVE)
        assert moved.deadlines()["first_response"] == missed
        first = moved.current("first_response")
        assert first is not None and clocks.due(first, moved_at) == "breach"
        assert_answered_late(moved, local(2025, 3, 11, 8, 30))

    def test_a_hand_over_after_a_deadline_comes_after_its_breach(self) -> None:
        """Due 17:59, handed on at 17:59:03: whether the clock watch sent the breach at
        17:59:02 or had not come to it, the hand-over owes nothing once it is sent
        (service_clocks.owes_notice), and moves the same clock: level 1, missed, due at
        the deadline missed, with no breach left to send from the new department."""
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=4)),
                                      local(2025, 3, 10, 13, 59), OFFICE)
        missed = local(2025, 3, 10, 17, 59)
        moved_at = missed + timedelta(seconds=3)
        first = state.current("first_response")
        assert first is not None
        assert not service_clocks.owes_notice(state, missed)  # the deadline is in time
        watched = state.with_clock(clocks.breached(first, missed + timedelta(seconds=2),
                                                   OFFICE, None))
        assert not service_clocks.owes_notice(watched, moved_at)
        assert service_clocks.owes_notice(state, moved_at)
        assert clocks.due(first, moved_at) == "breach"
        sent = state.with_clock(clocks.breached(first, moved_at, OFFICE, None))
        assert not service_clocks.owes_notice(sent, moved_at)
        for breached in (watched, sent):
            moved = service_clocks.handed_over(breached, moved_at, OFFICE, NINE_TO_FIVE)
            clock = moved.current("first_response")
            assert clock is not None and (clock.level, clock.outcome, clock.deadline) == (
                1, "missed", missed)
            assert not service_clocks.owes_notice(moved, moved_at + timedelta(hours=1))

    def test_a_pause_after_the_deadline_passed_keeps_it(self) -> None:
        """Due Friday 18:00 at closing time, paused at 19:00 (no business time spent past
        its target): the customer's reply on Saturday resumes it due Friday 18:00, not
        Monday 08:00; answered while still paused, it is missed."""
        state = service_clocks.routed(service_clocks.Targets(timedelta(hours=1)),
                                      local(2025, 3, 14, 17), OFFICE)
        paused = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                         local(2025, 3, 14, 19), OFFICE)
        # Kept in the router's store while the ticket waits.
        paused = service_clocks.from_json(service_clocks.to_json(paused))
        resumed = service_clocks.reported(paused, TicketEventType.CUSTOMER_REPLIED,
                                          local(2025, 3, 15, 12), OFFICE)
        assert resumed.deadlines()["first_response"] == local(2025, 3, 14, 18)
        answered = service_clocks.reported(paused, TicketEventType.RESPONDED,
                                           local(2025, 3, 15, 12), OFFICE)
        first = answered.current("first_response")
        assert first is not None and first.outcome == "missed"


class TestPriorityChange:
    """The new priority's targets from the routing table (`priority_targets`), the
    ticket's own where it gives none; the time spent and paused is kept."""

    def test_the_table_s_targets_replace_the_ticket_s(self) -> None:
        given = priority.Override(first_response_target=timedelta(minutes=15),
                                  resolution_target=timedelta(hours=4))
        assert service_clocks.retargeted(TARGETS, given) == service_clocks.Targets(
            timedelta(minutes=15), timedelta(hours=2), timedelta(hours=4), 0.75)

    def test_a_priority_the_table_gives_nothing_for_keeps_the_targets(self) -> None:
        assert service_clocks.retargeted(TARGETS, None) == TARGETS
        assert service_clocks.retargeted(TARGETS, priority.Override()) == TARGETS

    def test_the_clocks_keep_the_time_spent_in_the_department_s_hours(self) -> None:
        # Routed on Friday 17:00, changed on Saturday: one business hour spent (the
        # office closes at 18:00), so a 2h target leaves one, from Monday 08:00.
        state = service_clocks.routed(TARGETS, local(2025, 3, 7, 17), OFFICE)
        given = priority.Override(first_response_target=timedelta(hours=2))
        moved = service_clocks.reprioritised(state, local(2025, 3, 8, 12), OFFICE, given)
        assert moved.targets.first_response == timedelta(hours=2)
        assert moved.deadlines()["first_response"] == local(2025, 3, 10, 9)

    def test_a_paused_clock_stays_paused_and_keeps_its_pause(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                        local(2025, 3, 10, 10), OFFICE)
        given = priority.Override(first_response_target=timedelta(hours=2))
        moved = service_clocks.reprioritised(state, local(2025, 3, 10, 11), OFFICE, given)
        assert moved.paused and moved.deadlines()["first_response"] is None
        resumed = service_clocks.reported(moved, TicketEventType.CUSTOMER_REPLIED,
                                          local(2025, 3, 10, 12), OFFICE)
        # 1h spent before the pause, 2h paused: one hour left of the new 2h target.
        assert resumed.deadlines()["first_response"] == local(2025, 3, 10, 13)
        first = resumed.current("first_response")
        assert first is not None and first.paused_seconds == 7200

    def test_a_longer_target_after_the_deadline_passed_keeps_it(self) -> None:
        """Due 13:00 (4h from 09:00), given at 13:30, before the clock watch saw the
        breach, a priority whose target is 8h: the deadline stays 13:00 (a passed deadline
        is missed for good), not 17:00, and a response at 14:00 is late."""
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        given = priority.Override(first_response_target=timedelta(hours=8))
        moved = service_clocks.reprioritised(state, local(2025, 3, 10, 13, 30), OFFICE, given)
        assert moved.deadlines()["first_response"] == local(2025, 3, 10, 13)
        answered = service_clocks.reported(moved, TicketEventType.RESPONDED,
                                           local(2025, 3, 10, 14), OFFICE)
        first = answered.current("first_response")
        assert first is not None and first.outcome == "missed"


    def test_a_shorter_target_already_used_up_is_due_at_the_change(self) -> None:
        """Routed Friday 15:00, 3 business hours spent by Saturday (the office closes at
        18:00), given then a priority whose target is 2h: nothing is left, so the
        deadline is the change, not Monday's opening, which a response on Saturday
        would have met by the deadline while the clock counted it missed."""
        state = service_clocks.routed(TARGETS, local(2025, 3, 7, 15), OFFICE)
        given = priority.Override(first_response_target=timedelta(hours=2))
        changed_at = local(2025, 3, 8, 12)
        moved = service_clocks.reprioritised(state, changed_at, OFFICE, given)
        assert moved.deadlines()["first_response"] == changed_at
        answered = service_clocks.reported(moved, TicketEventType.RESPONDED,
                                           local(2025, 3, 8, 13), OFFICE)
        first = answered.current("first_response")
        assert first is not None and first.outcome == "missed"

    def test_a_paused_clock_given_a_target_it_has_used_up_is_missed_when_answered(
            self) -> None:
        """Routed Friday 15:00, paused at 17:00 (2 business hours spent), given while
        paused a priority whose target is 1h: it has no deadline to judge by, and its
        target is used up: answered while still paused, it is missed."""
        state = service_clocks.routed(TARGETS, local(2025, 3, 7, 15), OFFICE)
        state = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                        local(2025, 3, 7, 17), OFFICE)
        given = priority.Override(first_response_target=timedelta(hours=1))
        moved = service_clocks.reprioritised(state, local(2025, 3, 8, 12), OFFICE, given)
        answered = service_clocks.reported(moved, TicketEventType.RESPONDED,
                                           local(2025, 3, 8, 13), OFFICE)
        first = answered.current("first_response")
        assert first is not None and first.outcome == "missed"


class TestStored:
    def test_the_clocks_read_back_as_written(self) -> None:
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        state = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                        local(2025, 3, 10, 10), OFFICE)
        assert service_clocks.from_json(service_clocks.to_json(state)) == state

    def test_a_key_a_later_release_adds_is_left_out(self) -> None:
        """A rolling upgrade: a router not yet upgraded reads clocks an upgraded one
        wrote (as this release added `missed_deadline`; the one before failed on it)."""
        state = service_clocks.routed(TARGETS, local(2025, 3, 10, 9), OFFICE)
        written = service_clocks.to_json(state)
        for clock in written["clocks"]:
            clock["kept_by_a_later_release"] = "2025-03-10T09:00:00+00:00"
        assert service_clocks.from_json(written) == state


class TestEventsOutOfOrder:
    """Events carry their own dates and may come out of order: a move of a clock dated
    before its last change is taken at that change (clocks.taken_at), so its time never
    runs backwards and nothing is counted twice."""

    ROUTED = datetime(2025, 3, 10, 18, tzinfo=UTC)

    def paused_at_21_30(self) -> service_clocks.TicketClocks:
        """Routed 18:00, first response due 22:00, resolution 10:00 the next day; the
        department waits on the customer from 21:30."""
        state = service_clocks.routed(TARGETS, self.ROUTED, None)
        return service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                       self.ROUTED + timedelta(hours=3, minutes=30), None)

    def test_a_reply_dated_before_the_pause_resumes_where_it_paused(self) -> None:
        """The reply dated 18:05: its clocks run on from 21:30 as they were, not from
        18:05, which would count 18:05-21:30 again (first response due 18:35, breached
        at once)."""
        resumed = service_clocks.reported(self.paused_at_21_30(),
                                          TicketEventType.CUSTOMER_REPLIED,
                                          self.ROUTED + timedelta(minutes=5), None)
        assert resumed.deadlines() == {"first_response": self.ROUTED + timedelta(hours=4),
                                       "resolution": self.ROUTED + timedelta(hours=16)}
        for clock in resumed.clocks:
            assert clock.running_since == self.ROUTED + timedelta(hours=3, minutes=30)
            assert clock.paused_seconds == 0
        assert not service_clocks.owed(resumed, self.ROUTED + timedelta(hours=3, minutes=31))

    def test_a_response_dated_before_the_pause_stops_the_clock_as_it_paused(self) -> None:
        answered = service_clocks.reported(self.paused_at_21_30(), TicketEventType.RESPONDED,
                                           self.ROUTED + timedelta(hours=1), None)
        first = answered.current("first_response")
        assert first is not None and first.outcome == "met"
        assert first.stopped_at == self.ROUTED + timedelta(hours=3, minutes=30)
        assert first.spent_seconds == 3.5 * 3600 and first.paused_seconds == 0

    def test_a_pause_dated_before_a_transfer_is_taken_at_the_transfer(self) -> None:
        moved_at = self.ROUTED + timedelta(hours=2)
        state = service_clocks.handed_over(service_clocks.routed(TARGETS, self.ROUTED, None),
                                           moved_at, None, None)
        paused = service_clocks.reported(state, TicketEventType.WAITING_ON_CUSTOMER,
                                         self.ROUTED + timedelta(hours=1), None)
        first = paused.current("first_response")
        assert first is not None and first.paused_since == moved_at
        assert first.spent_seconds == 2 * 3600

    def test_a_reply_dated_before_the_first_response_starts_the_next_at_it(self) -> None:
        """Answered 19:00, the customer's reply dated 18:30 comes after: the next-response
        clock starts at the response, not half an hour before it."""
        answered_at = self.ROUTED + timedelta(hours=1)
        state = service_clocks.reported(service_clocks.routed(TARGETS, self.ROUTED, None),
                                        TicketEventType.RESPONDED, answered_at, None)
        replied = service_clocks.reported(state, TicketEventType.CUSTOMER_REPLIED,
                                          self.ROUTED + timedelta(minutes=30), None)
        following = replied.current("next_response")
        assert following is not None and following.started_at == answered_at
        assert following.deadline == answered_at + timedelta(hours=2)  # TARGETS'

    def test_a_reply_dated_before_the_last_next_response_starts_the_next_at_it(
            self) -> None:
        state = service_clocks.routed(TARGETS, self.ROUTED, None)
        for report, hours in ((TicketEventType.RESPONDED, 1),
                              (TicketEventType.CUSTOMER_REPLIED, 2),
                              (TicketEventType.RESPONDED, 3),
                              (TicketEventType.CUSTOMER_REPLIED, 2.5)):
            state = service_clocks.reported(state, report,
                                            self.ROUTED + timedelta(hours=hours), None)
        following = state.current("next_response")
        assert following is not None and following.instance == 2
        assert following.started_at == self.ROUTED + timedelta(hours=3)


MOVES = ("pause", "resume", "stop", "rebase")


@settings(deadline=None)  # no timed assertion: the calendars' searches vary in time
@given(moves=st.lists(st.tuples(st.sampled_from(MOVES),
                                st.integers(min_value=-600, max_value=5 * 24 * 60)),
                      max_size=12),
       calendar=st.sampled_from([None, NINE_TO_FIVE]),
       target_minutes=st.integers(min_value=1, max_value=3 * 8 * 60))
def test_whatever_the_order_of_dates_no_time_is_counted_twice(
        moves: list[tuple[str, int]], calendar: calendars.Calendar | None,
        target_minutes: int) -> None:
    """For any pauses, resumptions, stops and rebases (same hours and target), dated
    anyhow: the time spent never exceeds the business time elapsed from the start to the
    latest date seen (with spent and paused time together never above the time elapsed,
    where every hour counts), the clock's last change never moves back, and its deadline
    never moves earlier."""
    started = local(2025, 3, 10, 9)
    clock = clocks.start("first_response", 1, timedelta(minutes=target_minutes), started,
                         calendar, warning_share=0.75)
    latest, changed, deadline = started, clocks.last_change(clock), clock.deadline
    for move, minutes in moves:
        at = started + timedelta(minutes=minutes)
        latest = max(latest, at)
        if move == "pause":
            clock = clocks.pause(clock, at, calendar)
        elif move == "resume":
            clock = clocks.resume(clock, at, calendar, warning_share=0.75)
        elif move == "stop":
            clock = clocks.stop(clock, at, calendar)
        else:
            clock = clocks.rebase(clock, at, calendar, calendar, warning_share=0.75)
        assert clock.spent_seconds <= calendars.business_time(
            started, latest, calendar).total_seconds()
        if calendar is None:
            assert clock.spent_seconds + clock.paused_seconds \
                <= (latest - started).total_seconds()
        assert changed <= clocks.last_change(clock) <= latest
        changed = clocks.last_change(clock)
        if clock.deadline is not None:
            assert deadline is None or clock.deadline >= deadline
            deadline = clock.deadline
