"""Whether a ticket's copy on a department's lane is still where the ticket waits
(services/router/lane_copies.py), from the ticket's status and trace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.core import lifecycle
from services.router.lane_copies import CopyState, ever_queued_for, state_of_copy

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


@pytest.mark.parametrize("routed_at", [T0, T2])
def test_a_resolved_ticket_waits_nowhere(routed_at: datetime) -> None:
    trace = [routed("a", T0), {"at": T1.isoformat(), "step": "resolved"}]
    assert state_of_copy(status=lifecycle.Status.RESOLVED, trace=trace, department="a",
                         routed_at=routed_at) is CopyState.RESOLVED


@pytest.mark.parametrize("status", [s for s in lifecycle.Status if lifecycle.is_open(s)])
def test_an_open_ticket_s_copy_waits_whatever_was_reported(status: str) -> None:
    trace = [routed("a", T0), {"at": T1.isoformat(), "step": "responded"}]
    assert state_of_copy(status=status, trace=trace, department="a",
                         routed_at=T0) is CopyState.WAITING


def test_a_copy_newer_than_the_store_s_record_waits() -> None:
    # The hand-over to b was published, and not yet recorded: b's copy is its place.
    assert state_of_copy(status="routed", trace=[routed("a", T0)], department="b",
                         routed_at=T1) is CopyState.WAITING


def test_an_escalation_flagged_in_place_queues_no_new_copy() -> None:
    trace = [routed("a", T0), escalated("a", "a", T1)]
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T0) is CopyState.WAITING


def test_a_step_without_a_readable_time_moves_nothing() -> None:
    trace = [routed("a", T0), {"at": "yesterday", "step": "transferred", "from": "a",
                               "to": "b"}]
    assert state_of_copy(status="routed", trace=trace, department="a",
                         routed_at=T0) is CopyState.WAITING


def test_only_a_department_the_ticket_was_queued_for_asks_about_its_copies() -> None:
    trace = [routed("a", T0), transferred("a", "b", T1), escalated("b", "b", T2)]
    assert ever_queued_for(trace, "a") and ever_queued_for(trace, "b")
    assert not ever_queued_for(trace, "c")
