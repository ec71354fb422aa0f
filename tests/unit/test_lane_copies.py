"""Whether a ticket's copy on a department's lane is still where the ticket waits
(services/router/lane_copies.py), from the ticket's status and trace: the joins the
trace recorded after the copy's own, whatever their times say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.core import lifecycle
from services.router.lane_copies import CopyState, state_of_copy

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=9)


def routed(department: str, at: datetime) -> dict[str, Any]:
    return {"at": at.isoformat(), "step": "routed", "department": department}


def transferred(source: str, to: str, at: datetime) -> dict[str, Any]:
    return {"at": at.isoformat(), "step": "transferred", "from": source, "to": to}


def escalated(source: str, to: str, at: datetime) -> dict[str, Any]:
    return {"at": at.isoformat(), "step": "escalated", "level": 1, "from": source, "to": to}


def test_the_copy_of_the_ticket_s_last_queue_waits() -> None:
    trace = [routed("a", T0), transferred("a", "b", T1)]
    assert state_of_copy(status="routed", trace=trace, department="b",
                         routed_at=T1) is CopyState.WAITING


def test_a_copy_left_by_a_transfer_or_an_escalation_is_handed_on() -> None:
    for step in (transferred("a", "b", T1), escalated("a", "b", T1)):
        assert state_of_copy(status="picked_up", trace=[routed("a", T0), step],
                             department="a", routed_at=T0) is CopyState.HANDED_ON


def test_a_ticket_handed_back_has_a_newer_copy_later_in_the_lane() -> None:
    trace = [routed("a", T0), transferred("a", "b", T1), transferred("b", "a", T2)]
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T0) is CopyState.QUEUED_AGAIN
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T2) is CopyState.WAITING
    assert state_of_copy(status="routed", trace=trace, department="b",
                         routed_at=T1) is CopyState.HANDED_ON


@pytest.mark.parametrize("routed_at", [T0, T1])
def test_a_resolved_ticket_waits_nowhere(routed_at: datetime) -> None:
    trace = [routed("a", T0), transferred("a", "b", T1), transferred("b", "a", T2),
             {"at": T2.isoformat(), "step": "resolved"}]
    assert state_of_copy(status=lifecycle.Status.RESOLVED, trace=trace,
                         department="a" if routed_at == T0 else "b",
                         routed_at=routed_at) is CopyState.RESOLVED


@pytest.mark.parametrize("status", [s for s in lifecycle.Status if lifecycle.is_open(s)])
def test_an_open_ticket_s_copy_waits_whatever_was_reported(status: str) -> None:
    trace = [routed("a", T0), {"at": T1.isoformat(), "step": "responded"}]
    assert state_of_copy(status=status, trace=trace, department="a",
                         routed_at=T0) is CopyState.WAITING


def test_a_copy_the_trace_does_not_name_is_not_known() -> None:
    # The hand-over to b was published and not yet recorded; or a copy queued for a
    # department at another moment, or never: the reader takes it as waiting.
    trace = [routed("a", T0)]
    for department, routed_at in (("b", T1), ("a", T1), ("c", T0)):
        assert state_of_copy(status="routed", trace=trace, department=department,
                             routed_at=routed_at) is None
    assert state_of_copy(status="resolved", trace=trace, department="b",
                         routed_at=T1) is None  # nothing said of a copy it never had


def test_the_order_recorded_decides_not_the_clocks() -> None:
    # Handed back to a by a writer whose moment was taken before the transfer to b was
    # recorded (the clock watch's batch, another instance's clock): recorded last, it is
    # where the ticket waits, though its time is earlier.
    back = T1 - timedelta(milliseconds=300)
    trace = [routed("a", T0), transferred("a", "b", T1), escalated("b", "a", back)]
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=back) is CopyState.WAITING
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T0) is CopyState.QUEUED_AGAIN
    assert state_of_copy(status="routed", trace=trace, department="b",
                         routed_at=T1) is CopyState.HANDED_ON


def test_an_escalation_flagged_in_place_queues_no_new_copy() -> None:
    trace = [routed("a", T0), escalated("a", "a", T1)]
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T0) is CopyState.WAITING
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T1) is None


def test_a_step_without_a_readable_time_moves_nothing() -> None:
    trace = [routed("a", T0), {"at": "yesterday", "step": "transferred", "from": "a",
                               "to": "b"}]
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T0) is CopyState.WAITING


def test_the_same_moment_in_another_offset_is_the_same_copy() -> None:
    trace = [routed("a", T0), transferred("a", "b", T1)]
    elsewhere = T0.astimezone(timezone(timedelta(hours=-5)))
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=elsewhere) is CopyState.HANDED_ON
