"""The intake's rules as verdicts: Idempotency-Key claims and report dates; a ticket's
trace read: where it was when, what came after its routing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from services.core import tickets
from services.router import intake_policy
from services.router.intake_policy import (
    REPORT_CLOCK_SKEW,
    ROUTING_STEPS,
    Claim,
    ReportTime,
    after_routing,
    arrived_at,
    handed_on,
    held_at,
    judge_claim,
    judge_report_time,
    report_date,
    routed_at,
)
from services.router.service.route import trace_steps

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
IN_FLIGHT_FOR = timedelta(seconds=20)


@dataclass(frozen=True)
class Key:
    holder: str = "first"
    fingerprint: str = "abc"
    status: str = "pending"
    created_at: datetime = NOW


def judge(key: Key, *, holder: str = "second", fingerprint: str = "abc",
          now: datetime = NOW) -> Claim:
    return judge_claim(key, holder=holder, fingerprint=fingerprint, now=now,
                       in_flight_for=IN_FLIGHT_FOR)


class TestClaim:
    def test_a_key_this_request_claimed_is_new(self) -> None:
        assert judge(Key(holder="second")) is Claim.NEW

    def test_a_key_accepted_before_is_a_replay(self) -> None:
        assert judge(Key(status="accepted")) is Claim.REPLAY

    def test_a_pending_key_is_in_flight_for_a_while(self) -> None:
        assert judge(Key(), now=NOW + IN_FLIGHT_FOR - timedelta(seconds=1)) is Claim.IN_FLIGHT

    def test_a_pending_key_left_by_a_dead_request_is_taken_over(self) -> None:
        assert judge(Key(), now=NOW + IN_FLIGHT_FOR) is Claim.NEW

    def test_a_key_whose_publish_failed_is_taken_over_at_once(self) -> None:
        """Its request was answered 503: the retry publishes under the key's id now, not
        once the claim has run out."""
        assert judge(Key(status=intake_policy.UNPUBLISHED)) is Claim.NEW

    def test_another_ticket_under_a_used_key_is_a_mismatch(self) -> None:
        assert judge(Key(status="accepted"), fingerprint="other") is Claim.MISMATCH
        assert judge(Key(holder="second"), fingerprint="other") is Claim.MISMATCH
        assert judge(Key(status=intake_policy.UNPUBLISHED),
                     fingerprint="other") is Claim.MISMATCH


class TestReportTime:
    RECEIVED = NOW - timedelta(hours=1)

    def judge(self, occurred_at: datetime | None) -> ReportTime:
        return judge_report_time(occurred_at, received_at=self.RECEIVED, now=NOW)

    def test_undated_and_in_range_reports_stand(self) -> None:
        assert self.judge(None) is ReportTime.ACCEPTED
        assert self.judge(self.RECEIVED) is ReportTime.ACCEPTED
        assert self.judge(NOW) is ReportTime.ACCEPTED

    def test_so_do_those_dated_by_a_clock_a_little_behind_or_ahead(self) -> None:
        assert self.judge(self.RECEIVED - REPORT_CLOCK_SKEW) is ReportTime.ACCEPTED
        assert self.judge(NOW + REPORT_CLOCK_SKEW) is ReportTime.ACCEPTED

    def test_a_report_before_the_receipt_is_refused(self) -> None:
        before = self.RECEIVED - REPORT_CLOCK_SKEW - timedelta(seconds=1)
        assert self.judge(before) is ReportTime.BEFORE_RECEIPT

    def test_a_report_past_the_clock_skew_is_in_the_future(self) -> None:
        later = NOW + REPORT_CLOCK_SKEW + timedelta(seconds=1)
        assert self.judge(later) is ReportTime.IN_FUTURE


class TestArrival:
    """A department's report may not be dated before the ticket came to it."""

    ROUTED = NOW - timedelta(hours=3)
    TRANSFERRED = NOW - timedelta(hours=1)
    TRACE = (
        {"at": (NOW - timedelta(hours=4)).isoformat(), "step": "received"},
        {"step": "segmented", "segment": "standard"},
        {"at": ROUTED.isoformat(), "step": "routed", "department": "a"},
        {"at": (NOW - timedelta(hours=2)).isoformat(), "step": "escalated", "from": "a",
         "to": "a", "level": 1},  # flagged where it was: no arrival
        {"at": TRANSFERRED.isoformat(), "step": "transferred", "from": "a", "to": "b"},
        {"at": (NOW - timedelta(minutes=30)).isoformat(), "step": "responded"},
    )

    def test_the_last_arrival_in_the_department_counts(self) -> None:
        assert arrived_at(self.TRACE, "a") == self.ROUTED
        assert arrived_at(self.TRACE, "b") == self.TRANSFERRED
        assert arrived_at(self.TRACE, "c") is None
        back = [*self.TRACE, {"at": NOW.isoformat(), "step": "escalated", "from": "b",
                              "to": "a"}]
        assert arrived_at(back, "a") == NOW

    def test_a_report_before_its_arrival_is_refused(self) -> None:
        def judge(occurred_at: datetime) -> ReportTime:
            return judge_report_time(occurred_at, received_at=NOW - timedelta(hours=4),
                                     now=NOW, arrived=self.TRANSFERRED)

        early = self.TRANSFERRED - REPORT_CLOCK_SKEW
        assert judge(early - timedelta(seconds=1)) is ReportTime.BEFORE_ARRIVAL
        assert judge(early) is ReportTime.ACCEPTED
        assert judge(self.TRANSFERRED) is ReportTime.ACCEPTED


class TestReportDate:
    """The date an accepted report stands at: within its range, as given; a little
    outside it (a clock running from ours), at the nearer end."""

    RECEIVED = NOW - timedelta(hours=2)
    ARRIVED = NOW - timedelta(hours=1)

    def date(self, occurred_at: datetime | None, *,
             arrived: datetime | None = ARRIVED) -> datetime:
        return report_date(occurred_at, received_at=self.RECEIVED, now=NOW, arrived=arrived)

    def test_within_its_range_as_given_and_undated_now(self) -> None:
        moment = NOW - timedelta(minutes=30)
        assert self.date(moment) == moment
        assert self.date(None) == NOW

    def test_never_before_the_arrival_nor_the_receipt(self) -> None:
        assert self.date(self.ARRIVED - timedelta(seconds=1)) == self.ARRIVED
        assert self.date(self.RECEIVED - timedelta(seconds=1), arrived=None) == self.RECEIVED

    def test_never_after_now(self) -> None:
        assert self.date(NOW + timedelta(minutes=1)) == NOW

    def test_in_utc_whatever_offset_it_was_given_in(self) -> None:
        """The first publish and a retry's (the date read back from the store) alike."""
        given = (NOW - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=2)))
        assert self.date(given).isoformat() == (NOW - timedelta(minutes=30)).isoformat()


# A ticket routed to customer_care, escalated in place, transferred, then answered.
HANDED_OVER = [{"at": NOW.isoformat(), "step": "received"},
               {"at": NOW.isoformat(), "step": "routed", "department": "customer_care"},
               {"at": (NOW + timedelta(hours=1)).isoformat(), "step": "escalated",
                "from": "customer_care", "to": "customer_care"},
               {"at": (NOW + timedelta(hours=2)).isoformat(), "step": "transferred",
                "from": "customer_care", "to": "business_desk"},
               {"at": (NOW + timedelta(hours=3)).isoformat(), "step": "responded"}]


class TestHeldAt:
    def test_the_last_department_it_came_to_by_then(self) -> None:
        assert held_at(HANDED_OVER, NOW + timedelta(minutes=90)) == "customer_care"
        assert held_at(HANDED_OVER, NOW + timedelta(hours=2)) == "business_desk"
        assert held_at(HANDED_OVER, NOW + timedelta(hours=5)) == "business_desk"

    def test_before_its_routing_the_first_and_without_arrivals_none(self) -> None:
        assert held_at(HANDED_OVER, NOW - timedelta(minutes=1)) == "customer_care"
        assert held_at(HANDED_OVER[:1], NOW) is None


ROUTING = ({"step": "received"}, {"step": "segmented"},
           {"step": "routed", "department": "care"})


class TestAfterRouting:

    def test_the_steps_after_the_routings_own(self) -> None:
        later = [{"step": "customer_replied", "event": "e-1"}, {"step": "routed"}]
        assert after_routing([*ROUTING, *later]) == later

    def test_none_right_after_the_routing(self) -> None:
        assert after_routing(ROUTING) == []

    def test_the_routings_own_are_those_route_writes(self) -> None:
        ticket = tickets.SegmentedTicket(
            ticket_id="t-1", customer_id="c-1", subject="s", body="b", channel="web",
            received_at=NOW, segmentation=tickets.Segmentation(
                segment="standard", rule="r", rules_version="v", customer_known=True,
                tier="existing"))
        record = tickets.Routing(department="care", reason="route", table_version="v1",
                                 routed_at=NOW, queue="dept.care")
        written = trace_steps(ticket, record)
        assert tuple(step["step"] for step in written) == ROUTING_STEPS
        assert after_routing(written) == []


class TestHandedOn:
    def test_a_transfer_or_an_escalation_elsewhere(self) -> None:
        for kind in ("transferred", "escalated"):
            assert handed_on([{"at": NOW.isoformat(), "step": kind, "from": "care",
                               "to": "billing"}])

    def test_not_an_escalation_flagged_where_the_ticket_is(self) -> None:
        assert not handed_on([{"at": NOW.isoformat(), "step": "escalated", "from": "care",
                               "to": "care"}])

    def test_not_reports_nor_priority_changes(self) -> None:
        assert not handed_on([{"at": NOW.isoformat(), "step": "customer_replied"},
                              {"at": NOW.isoformat(), "step": "priority_changed"}])


class TestRoutedAt:
    def test_the_time_of_the_routing_step(self) -> None:
        assert routed_at([{"step": "received", "at": "2026-11-30T11:00:00+00:00"},
                          {"step": "routed", "at": NOW.isoformat()},
                          {"step": "transferred", "at": "2026-11-30T13:00:00+00:00"}]) == NOW

    def test_none_without_one_or_with_a_time_unread(self) -> None:
        assert routed_at([{"step": "received", "at": NOW.isoformat()}]) is None
        assert routed_at([{"step": "routed", "at": "noon"}]) is None


class TestATraceAtItsCeiling:
    """Past TRACE_STEPS_CEILING a report's step is not kept: the trace counts it in one
    `later_reports` step with the last reports' event ids, by which a report followed
    again is known (a batch followed again after a crash; a report published again under
    its id), as by its step before."""

    def full(self) -> list[dict[str, Any]]:
        return [{"at": "2026-11-30T09:00:00+00:00", "step": "picked_up", "event": f"e{n}"}
                for n in range(intake_policy.TRACE_STEPS_CEILING)]

    def report(self, event: str) -> dict[str, Any]:
        return {"at": "2026-11-30T10:00:00+00:00", "step": "responded", "event": event}

    def test_below_it_each_step_is_kept(self) -> None:
        trace = self.full()[:-1]
        assert intake_policy.with_report(trace, self.report("x"))[-1] == self.report("x")

    def test_past_it_the_trace_gains_one_step_that_counts_them(self) -> None:
        trace = self.full()
        for n in range(3):
            trace = intake_policy.with_report(trace, self.report(f"later-{n}"))
        assert len(trace) == intake_policy.TRACE_STEPS_CEILING + 1
        assert trace[-1] == {"step": "later_reports", "at": "2026-11-30T10:00:00+00:00",
                             "count": 3, "events": ["later-0", "later-1", "later-2"]}
        assert intake_policy.followed_already(trace, "later-1")
        assert intake_policy.followed_already(trace, "e5")  # a step kept before
        assert not intake_policy.followed_already(trace, "never")

    def test_it_keeps_the_last_ids_only_and_finds_its_step_after_others(self) -> None:
        trace = intake_policy.with_report(self.full(), self.report("first"))
        trace = [*trace, {"at": "2026-11-30T11:00:00+00:00", "step": "escalated"}]
        for n in range(intake_policy.LATER_REPORTS_KEPT):
            trace = intake_policy.with_report(trace, self.report(f"r{n}"))
        later = [step for step in trace if step["step"] == "later_reports"]
        assert len(later) == 1 and later[0]["count"] == intake_policy.LATER_REPORTS_KEPT + 1
        assert len(later[0]["events"]) == intake_policy.LATER_REPORTS_KEPT
        assert not intake_policy.followed_already(trace, "first")
        assert trace[-1]["step"] == "escalated"  # the escalation kept its place
