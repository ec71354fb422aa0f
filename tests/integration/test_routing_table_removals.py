"""A routing table that removes a department still holding open tickets, over the real
API and the router's store (SQLite and PostgreSQL): the dry run counts each removed
department's open tickets (lifecycle.OPEN: not resolved, answered or not), an upload is
refused 409 naming them and their counts unless the admin confirms it with
`force=true`, and a confirmed one is put in force and logged; a rollback is held to the
same, and so is an instance that has not caught up with the version in force."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from services.core import config_store
from services.core.events import TicketEventType
from tests.config_apis import KINDS, Service, config_api, copy_of, dry_run, put
from tests.router_apis import routed_ticket

SALES_ROUTE = ("  - {segment: potential, department: sales_support, priority: 3,"
               " first_response_target: 4h}\n")
SALES = "  sales_support: {escalation_to: customer_care}\n"
PUBLIC_ROUTE = ("  - {segment: government, department: public_sector, priority: 2,"
                " first_response_target: 4h}\n")
PUBLIC = "  public_sector: {escalation_to: key_accounts}\n"


@pytest.fixture
async def service(tmp_path: Path, database_url: str,
                  kafka_bootstrap: str) -> AsyncIterator[Service]:
    config = KINDS["routing table"]
    async with config_api(config, copy_of(config, tmp_path / "config"), database_url,
                          kafka_bootstrap) as service:
        yield service


def without_sales_and_public(service: Service) -> str:
    """The table without sales_support and public_sector (their routes go to the
    fallback department)."""
    text = service.upload
    for line in (SALES_ROUTE, SALES, PUBLIC_ROUTE, PUBLIC):
        assert line in text
        text = text.replace(line, "")
    return text


async def ticket(service: Service, department: str, *reports: TicketEventType) -> str:
    """A ticket routed to `department`, then reported on."""
    ticket_id, routed_at = await routed_ticket(service.routed, department,
                                               spent=timedelta(minutes=30))
    for minutes, report in enumerate(reports, start=1):
        assert await service.routed.record_report(
            ticket_id, report, routed_at + timedelta(minutes=minutes)) is not None
    return ticket_id


async def sales_holds_two_open_tickets(service: Service) -> None:
    await ticket(service, "sales_support")  # routed, unanswered
    await ticket(service, "sales_support", TicketEventType.RESPONDED)  # answered, open
    await ticket(service, "sales_support", TicketEventType.RESOLVED)  # closed
    await ticket(service, "customer_care")  # a department the table keeps


async def versions(service: Service) -> list[dict[str, object]]:
    return (await service.client.get(f"{service.config.path}/versions")).json()  # type: ignore[no-any-return]


class TestRemovingDepartmentsThatHoldOpenTickets:
    async def test_the_dry_run_counts_each_removed_departments_open_tickets(
            self, service: Service) -> None:
        await sales_holds_two_open_tickets(service)
        response = await dry_run(service, without_sales_and_public(service))
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["departments_removed"] == ["public_sector", "sales_support"]
        assert report["departments_removed_open_tickets"] == {"public_sector": 0,
                                                              "sales_support": 2}

    async def test_an_upload_removing_them_is_409_naming_them_and_changes_nothing(
            self, service: Service) -> None:
        await sales_holds_two_open_tickets(service)
        before = service.live.current.version
        response = await put(service, without_sales_and_public(service))
        assert response.status_code == 409, response.text
        answer = response.json()
        assert answer["error"] == "departments_hold_open_tickets"
        assert answer["open_tickets"] == {"sales_support": 2}  # public_sector holds none
        assert "sales_support (2)" in answer["detail"]
        assert "force=true" in answer["detail"]
        assert service.live.current.version == before
        assert "sales_support" in service.live.current.departments
        assert len(await versions(service)) == 1

    async def test_a_confirmed_removal_is_put_in_force_and_logged(
            self, service: Service, caplog: pytest.LogCaptureFixture) -> None:
        await sales_holds_two_open_tickets(service)
        with caplog.at_level(logging.WARNING, logger="services.router.service.table"):
            response = await put(service, without_sales_and_public(service),
                                 force="true", comment="sales merged into care")
        assert response.status_code == 200, response.text
        assert "sales_support" not in response.json()["departments"]
        assert "sales_support" not in service.live.current.departments
        newest = (await versions(service))[0]
        assert newest["comment"] == "sales merged into care"
        [logged] = [record for record in caplog.records
                    if record.name == "services.router.service.table"]
        assert "removing departments that hold open tickets" in logged.getMessage()
        assert logged.open_tickets == {"sales_support": 2}  # type: ignore[attr-defined]
        assert logged.version_id == newest["version_id"]  # type: ignore[attr-defined]
        assert str(logged.author).startswith("admin credential ")  # type: ignore[attr-defined]

    async def test_a_department_holding_only_resolved_tickets_is_removed_unconfirmed(
            self, service: Service, caplog: pytest.LogCaptureFixture) -> None:
        await ticket(service, "sales_support", TicketEventType.RESOLVED)
        with caplog.at_level(logging.WARNING, logger="services.router.service.table"):
            response = await put(service, without_sales_and_public(service))
        assert response.status_code == 200, response.text
        assert not [record for record in caplog.records
                    if record.name == "services.router.service.table"]

    async def test_the_tickets_removed_with_their_department_are_not_moved(
            self, service: Service) -> None:
        ticket_id = await ticket(service, "sales_support")
        response = await put(service, without_sales_and_public(service), force="true")
        assert response.status_code == 200, response.text
        row = await service.routed.get(ticket_id)
        assert row is not None and (row.department, row.status) == ("sales_support",
                                                                    "routed")


class TestWhereARemovalComesFrom:
    async def test_a_rollback_removing_them_is_409_unless_confirmed(
            self, service: Service, caplog: pytest.LogCaptureFixture) -> None:
        """A rollback to a version without them puts that text in force as a new version:
        held to what an upload of it is (it went through unasked)."""
        assert (await put(service, without_sales_and_public(service))).status_code == 200
        without = (await versions(service))[0]["version_id"]
        assert (await put(service, service.edited("with-sales-again"))).status_code == 200
        await sales_holds_two_open_tickets(service)
        rollback = f"{service.config.path}/versions/{without}/rollback"
        refused = await service.client.post(rollback, json={})
        assert refused.status_code == 409, refused.text
        assert refused.json()["open_tickets"] == {"sales_support": 2}
        assert "sales_support" in service.live.current.departments
        with caplog.at_level(logging.WARNING, logger="services.router.service.table"):
            confirmed = await service.client.post(rollback, json={},
                                                  params={"force": "true"})
        assert confirmed.status_code == 200, confirmed.text
        assert "sales_support" not in service.live.current.departments
        [logged] = [record for record in caplog.records
                    if record.name == "services.router.service.table"]
        assert logged.open_tickets == {"sales_support": 2}  # type: ignore[attr-defined]

    async def test_an_instance_behind_the_store_checks_the_version_in_force(
            self, service: Service) -> None:
        """The table in force here lacks sales_support, but another instance has put one
        with it in force since, and tickets went there: an upload here without it
        removes it from the store's version, and is refused."""
        assert (await put(service, without_sales_and_public(service))).status_code == 200
        elsewhere, _changed = await service.versions.put_in_force(config_store.Candidate(
            text=service.edited("put-in-force-elsewhere"), version="put-in-force-elsewhere",
            author="another instance"))
        assert "sales_support" not in service.live.current.departments  # not caught up
        await sales_holds_two_open_tickets(service)
        refused = await put(service, without_sales_and_public(service).replace(
            service.config.replace[1], "version: removes-it-unknowingly"),
                            headers={"If-Match": f'"{elsewhere.version_id}"'})
        assert refused.status_code == 409, refused.text
        assert refused.json()["open_tickets"] == {"sales_support": 2}

    async def test_an_edit_of_the_file_on_disk_is_not_checked(
            self, service: Service) -> None:
        """An operator's edit of the file is put in force as the watcher finds it: no one
        is there to confirm it, and nothing refuses it."""
        await sales_holds_two_open_tickets(service)
        service.file.write_text(without_sales_and_public(service).replace(
            service.config.replace[1], "version: edited-on-disk"), encoding="utf-8")
        await service.live._import_file()  # what the watcher does on each change
        assert "sales_support" not in service.live.current.departments
        assert service.live.current.version.startswith("edited-on-disk")
