"""The lifecycle rules every service applies (services/core/lifecycle.py)."""

from __future__ import annotations

import re

import pytest

from services.core import lifecycle
from services.core.events import TicketEventType
from services.core.lifecycle import Status
from services.core.settings import PROJECT_ROOT


class TestFirstResponse:
    @pytest.mark.parametrize("report", [TicketEventType.RESPONDED, TicketEventType.RESOLVED])
    def test_a_response_or_a_resolution_answers_the_ticket(
            self, report: TicketEventType) -> None:
        assert lifecycle.counts_as_first_response(report)
        assert lifecycle.counts_as_first_response(str(report))

    @pytest.mark.parametrize("other", [TicketEventType.PICKED_UP, TicketEventType.ROUTED,
                                       TicketEventType.ESCALATED, TicketEventType.TRANSFERRED])
    def test_nothing_else_does(self, other: TicketEventType) -> None:
        assert not lifecycle.counts_as_first_response(other)


class TestStatus:
    def test_reports_move_the_status_forward_only(self) -> None:
        assert lifecycle.status_after(Status.ROUTED, Status.RESPONDED) is Status.RESPONDED
        assert lifecycle.status_after(Status.RESOLVED, Status.PICKED_UP) is Status.RESOLVED
        assert lifecycle.status_after("picked_up", "picked_up") is Status.PICKED_UP

    def test_the_conversation_goes_back_and_forth_until_resolved(self) -> None:
        assert lifecycle.status_after(Status.RESPONDED, Status.WAITING_ON_CUSTOMER) \
            is Status.WAITING_ON_CUSTOMER
        assert lifecycle.status_after(Status.WAITING_ON_CUSTOMER, Status.CUSTOMER_REPLIED) \
            is Status.CUSTOMER_REPLIED
        assert lifecycle.status_after(Status.CUSTOMER_REPLIED, Status.RESPONDED) \
            is Status.RESPONDED
        assert lifecycle.status_after(Status.WAITING_ON_CUSTOMER, Status.PICKED_UP) \
            is Status.WAITING_ON_CUSTOMER
        assert lifecycle.status_after(Status.RESOLVED, Status.CUSTOMER_REPLIED) \
            is Status.RESOLVED

    def test_each_department_report_names_its_status(self) -> None:
        assert lifecycle.reported_status("ticket.picked_up") is Status.PICKED_UP
        assert lifecycle.reported_status(TicketEventType.RESOLVED) is Status.RESOLVED
        assert lifecycle.reported_status("ticket.routed") is None


    def test_readme_names_every_status_get_ticket_answers(self) -> None:
        """README's Routing trace: the statuses `GET /v1/tickets/{id}` answers are the
        lifecycle's, every one of them."""
        readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
        bullet = " ".join(readme.split("- **Routing trace.**", 1)[1].split("\n- ", 1)[0].split())
        named = re.search(r"status \(([a-z_, ]+)[;)]", bullet)
        assert named is not None
        assert named.group(1).split(", ") == [status.value for status in Status]


class TestOpenAndBacklog:
    def test_open_until_resolved(self) -> None:
        assert [s for s in Status if lifecycle.is_open(s)] == [
            Status.ROUTED, Status.PICKED_UP, Status.RESPONDED, Status.WAITING_ON_CUSTOMER,
            Status.CUSTOMER_REPLIED]

    def test_the_backlog_is_open_unanswered_and_not_waiting_on_the_customer(self) -> None:
        facts = [(open_ticket, answered, waiting)
                 for open_ticket in (True, False) for answered in (True, False)
                 for waiting in (True, False)]
        assert [fact for fact in facts if lifecycle.in_backlog(
            open_ticket=fact[0], answered=fact[1], waiting_on_customer=fact[2])] == [
            (True, False, False)]


class TestPauses:
    def test_waiting_on_the_customer_pauses_and_the_reply_resumes(self) -> None:
        assert lifecycle.pauses_clocks(TicketEventType.WAITING_ON_CUSTOMER)
        assert lifecycle.resumes_clocks("ticket.customer_replied")

    @pytest.mark.parametrize("other", [TicketEventType.RESPONDED, TicketEventType.PICKED_UP,
                                       TicketEventType.RESOLVED, TicketEventType.TRANSFERRED])
    def test_nothing_else_pauses_or_resumes(self, other: TicketEventType) -> None:
        assert not lifecycle.pauses_clocks(other)
        assert not lifecycle.resumes_clocks(other)
