"""The router's fake store (tests/unit/router_fakes.py) reads as the real one does
(services/router/store.py): each read a new row, which no later write changes and whose
changes reach nothing stored. A fake handing back its stored row hid a stale read
(1bc8360: a transfer claimed with a row the postponement of a failed notice had moved)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.router import service
from tests.unit.router_fakes import Wired, wired
from tests.unit.test_router_use_cases import routed_ticket, segmented

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
STEP = {"at": NOW.isoformat(), "step": "transferred", "from": "public_sector",
        "to": "customer_care", "reason": "r"}


class TestReads:
    async def test_a_row_read_does_not_show_a_write_made_after_it(self) -> None:
        router = wired()
        routed = len(routed_ticket(router).steps)
        read = await router.routed.get("t-1")
        [due] = await router.routed.due_clocks(NOW + timedelta(days=30))
        assert read is not None and due.next_clock_check is not None

        await router.routed.record_handover("t-1", department="customer_care", steps=[STEP],
                                            ticket=None, now=NOW)
        await router.routed.postpone_clock_check("t-1", NOW + timedelta(days=60),
                                                 read=due.next_clock_check)

        assert (read.department, len(read.trace)) == ("public_sector", routed)
        assert due.next_clock_check < NOW + timedelta(days=60)
        again = await router.routed.get("t-1")
        assert again is not None and (again.department, len(again.trace),
                                      again.next_clock_check) == (
            "customer_care", routed + 1, NOW + timedelta(days=60))

    async def test_a_change_to_a_row_read_reaches_nothing_stored(self) -> None:
        router = wired()
        routed = len(routed_ticket(router).steps)
        read = await router.routed.get("t-1")
        assert read is not None and read.service_clocks is not None

        read.department, read.escalated = "customer_care", True
        read.trace.append(STEP)
        read.payload["routing"]["priority"] = 9
        read.service_clocks.clear()

        again = await router.routed.get("t-1")
        assert again is not None
        assert (again.department, again.escalated, len(again.trace),
                again.payload["routing"]["priority"]) == ("public_sector", False, routed, 2)
        assert again.service_clocks

    async def test_a_step_written_is_kept_as_it_was_given(self) -> None:
        router = wired()
        routed_ticket(router)
        step = dict(STEP)
        await router.routed.record_handover("t-1", department="customer_care", steps=[step],
                                            ticket=None, now=NOW)
        step["to"] = "elsewhere"

        again = await router.routed.get("t-1")
        assert again is not None and again.trace[-1]["to"] == "customer_care"



class TestDue:
    """In the store's order: the soonest due first (a limit leaves the latest)."""

    @staticmethod
    def two_tickets(*, clocks: bool) -> Wired:
        """t-1 routed at NOW, then t-2 routed an hour before: due before it."""
        router = wired()
        routed_ticket(router, clocks=clocks)
        earlier = service.route(segmented("t-2"), table=router.router.table.current,
                                load=router.router.load, now=NOW - timedelta(hours=1),
                                event_id="e-2", correlation_id="corr-2").dispatch
        router.routed.add(earlier if clocks else replace(earlier, clocks=None))
        return router

    async def test_clocks_are_due_soonest_first(self) -> None:
        router = self.two_tickets(clocks=True)
        due = await router.routed.due_clocks(NOW + timedelta(days=30))
        assert [row.ticket_id for row in due] == ["t-2", "t-1"]

    async def test_escalations_are_due_soonest_first(self) -> None:
        router = self.two_tickets(clocks=False)
        due = await router.routed.due_for_escalation(NOW + timedelta(days=30))
        assert [row.ticket_id for row in due] == ["t-2", "t-1"]
