"""Escalation by the table in force when a department is gone from it (a routing table
without it put in force while a ticket is there, or after its breach named it as the
second level): the clock watch and the check of tickets without clocks, run with the
router's recording fakes (services/router/service/handovers.escalate_due)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from services.core.events import TicketEventType
from services.router import routing, service, table_file, tickets_api
from tests.routing_tables import routing_table_with
from tests.unit.router_fakes import Wired, wired
from tests.unit.test_router_use_cases import NOW, routed_ticket

# The tests' table put in force without public_sector, where routed_ticket's ticket is.
NO_PUBLIC_SECTOR = routing_table_with(without=["public_sector"])
SECOND_TO_TEMP_DESK = routing_table_with(departments={
    "public_sector": {"second_escalation": {"after": "2h", "to": "temp_desk"}},
    "temp_desk": {}})
NO_TEMP_DESK = routing_table_with(departments={
    "public_sector": {"second_escalation": {"after": "2h"}}})


def table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"routing-{abs(hash(text))}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def escalate(router: Wired, table_in_force: routing.RoutingTable,
                   now: datetime) -> int:
    return await service.escalate_due(router.routed, router.publisher, table=table_in_force,
                                      queue_for=router.router.queue_for, now=now)


def escalated_steps(router: Wired) -> list[dict[str, object]]:
    return [step for step in router.routed.rows["t-1"].trace if step["step"] == "escalated"]


class TestATicketInADepartmentTheTableLacks:
    async def test_its_breach_escalates_it_to_the_fallback_department(
            self, tmp_path: Path) -> None:
        router = wired()
        routed_ticket(router)  # public_sector, first response within 4h
        in_force = table_file.load(table(tmp_path, NO_PUBLIC_SECTOR))
        assert "public_sector" not in in_force.departments
        assert await escalate(router, in_force, NOW + timedelta(hours=5)) == 1
        row = router.routed.rows["t-1"]
        assert row.department == "customer_care"
        queue, lifecycle = router.publisher.published
        assert queue.topic == "dept.customer_care.high"
        assert (lifecycle.event.type, lifecycle.event.data["from_department"],
                lifecycle.event.data["department"], lifecycle.event.data["level"]) == (
            TicketEventType.ESCALATED, "public_sector", "customer_care", 1)
        [step] = escalated_steps(router)
        assert (step["from"], step["to"]) == ("public_sector", "customer_care")
        assert step["reason"] == (
            f"first_response not answered by {(NOW + timedelta(hours=4)).isoformat()};"
            f" public_sector is no longer in the routing table (version {in_force.version}):"
            " to the fallback department customer_care")
        [clock] = tickets_api._clocks(row.service_clocks)["clocks"]
        assert (clock["level"], clock["outcome"]) == (1, "missed")
        assert await escalate(router, in_force, NOW + timedelta(days=30)) == 0  # once

    async def test_without_clocks_it_escalates_to_the_fallback_department(
            self, tmp_path: Path) -> None:
        router = wired()
        routed_ticket(router, clocks=False)  # routed before the clocks existed
        in_force = table_file.load(table(tmp_path, NO_PUBLIC_SECTOR))
        assert await escalate(router, in_force, NOW + timedelta(hours=5)) == 1
        assert router.routed.rows["t-1"].department == "customer_care"
        assert router.publisher.published[0].topic == "dept.customer_care.high"
        [step] = escalated_steps(router)
        assert (step["from"], step["to"]) == ("public_sector", "customer_care")
        assert "public_sector is no longer in the routing table" in str(step["reason"])


class TestASecondLevelTheTableLacks:
    async def test_the_ticket_is_flagged_where_it_is(self, tmp_path: Path) -> None:
        """public_sector's breach (4h) hands the ticket to key_accounts, naming temp_desk
        as its second level 2h later; a table without temp_desk is put in force since."""
        router = wired(table(tmp_path, SECOND_TO_TEMP_DESK))
        routed_ticket(router)
        assert await escalate(router, router.router.table.current,
                              NOW + timedelta(hours=5)) == 1
        assert router.routed.rows["t-1"].department == "key_accounts"
        in_force = table_file.load(table(tmp_path, NO_TEMP_DESK))
        published = len(router.publisher.published)
        assert await escalate(router, in_force, NOW + timedelta(hours=7)) == 1
        assert router.routed.rows["t-1"].department == "key_accounts"
        [flag] = router.publisher.published[published:]  # no lane: the event alone
        assert (flag.event.type, flag.event.data["target"], flag.event.data["level"],
                flag.event.data["department"]) \
            == (TicketEventType.ESCALATED, "first_response", 2, "key_accounts")
        level_2 = escalated_steps(router)[-1]
        assert (level_2["from"], level_2["to"]) == ("key_accounts", "key_accounts")
        assert level_2["reason"] == (
            "first_response still not answered after its escalation; temp_desk is no"
            f" longer in the routing table (version {in_force.version}): flagged in"
            " key_accounts")
        [clock] = tickets_api._clocks(router.routed.rows["t-1"].service_clocks)["clocks"]
        assert clock["level"] == 2
