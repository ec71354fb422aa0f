"""A department name the routing table in force lacks, answered by the real router's
APIs (a transfer's `to_department` and `from_department`, a report's `department`,
`GET /v1/credentials/me?department=`) and the real metrics' stats API in one wording,
services/core/unknown_departments.py, listing the table's departments to a department
credential too, before its scope is checked. A department gone from the table that still
holds the ticket is no typo: its tickets are reported on and handed on."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.core import credentials_api, kafka, tickets
from services.core.settings import Settings
from services.router import intake, intake_policy, ports, priority, table_file, tickets_api
from services.router import service as router_service
from services.router.service import acting_for
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE, unique
from tests.integration import test_department_known as stats
from tests.router_apis import RouterApis, routed_ticket, router_apis

# The metrics' test table (public_sector, business_desk, fallback customer_care).
TABLE = stats.TABLE.format(n=1, second="business_desk") + """departments:
  public_sector: {}
  business_desk: {}
  customer_care: {}
"""
TOLD = ("no department 'publc_sector' in the routing table in force; its departments:"
        " business_desk, customer_care, public_sector")


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[RouterApis]:
    async with router_apis(database_url, kafka_bootstrap, tmp_path, tickets_api.api,
                           credentials_api.api, intake.api, table=TABLE) as apis:
        yield apis


async def me(router: RouterApis, department: str, *, role: str = "department",
             subject: str | None = "public_sector") -> httpx.Response:
    return await router.client.get("/v1/credentials/me", params={"department": department},
                                   headers=await credentials.headers_of(
                                       router.credentials, role, subject))


def refused(answer: httpx.Response, field: str) -> str:
    assert answer.status_code == 422, answer.text
    [told] = answer.json()["fields"]
    assert told["field"] == field
    return str(told["problem"])


class TestOneWording:
    async def test_a_transfer_and_the_stats_api_tell_a_department_alike(
            self, router: RouterApis, database_url: str) -> None:
        ticket_id, _ = await routed_ticket(router.routed, "public_sector",
                                           spent=timedelta(minutes=5))
        transfer = await router.client.post(
            f"/v1/tickets/{ticket_id}/transfer",
            json={"to_department": "publc_sector", "reason": "theirs"},
            headers=await credentials.headers_of(router.credentials, "department",
                                                 "public_sector"))
        told = refused(transfer, "body.to_department")
        async with stats.stats_api(database_url) as metrics:
            stats_answer = await metrics.stats("publc_sector", role="department",
                                               subject="public_sector")
        assert stats_answer.status_code == 404, stats_answer.text
        assert told == TOLD
        assert stats_answer.json()["detail"].startswith(f"{told}; ")


class TestWhoAmIForADepartment:
    @pytest.mark.parametrize(("role", "subject"), [
        ("department", "public_sector"), ("department", "business_desk"), ("admin", None)],
        ids=["a typo of its own", "another department's", "an admin's"])
    async def test_a_name_the_table_lacks_is_refused_with_its_departments(
            self, router: RouterApis, role: str, subject: str | None) -> None:
        """Before the credential's scope: whoever asks is told the name is unknown."""
        answer = await me(router, "publc_sector", role=role, subject=subject)
        assert refused(answer, "query.department") == TOLD

    async def test_a_department_of_the_table_is_answered_whose_the_credential_is(
            self, router: RouterApis) -> None:
        """Its scope is the caller's to judge (Holder.may_act_for), as without the name."""
        own = await me(router, "public_sector")
        other = await me(router, "business_desk")
        assert own.status_code == other.status_code == 200, (own.text, other.text)
        assert own.json() == other.json() == {"role": "department",
                                              "subject": "public_sector"}

    async def test_one_gone_from_the_table_holding_open_tickets_is_known(
            self, router: RouterApis) -> None:
        """Its lanes hold them until they are handed on: its queue is still read."""
        await routed_ticket(router.routed, "retired_desk", spent=timedelta(minutes=5))
        answer = await me(router, "retired_desk", subject="retired_desk")
        assert answer.status_code == 200, answer.text


class TestAReportOrATransferForADepartment:
    """The department a department's report (`department respond --department D`) or
    transfer (`--department D`, `from_department`) says it acts for: a name the table
    lacks is told as a typo (not as another department's, 403 or 409 `not_yours`), and
    an admin's is refused rather than recorded as the event's department."""

    @pytest.fixture
    async def ticket_id(self, router: RouterApis) -> str:
        ticket_id, _ = await routed_ticket(router.routed, "public_sector",
                                           spent=timedelta(minutes=5))
        return ticket_id

    async def asked(self, router: RouterApis, ticket_id: str, asked: str, department: str,
                    role: str, subject: str | None, *,
                    occurred_at: datetime | None = None) -> httpx.Response:
        headers = await credentials.headers_of(router.credentials, role, subject)
        if asked == "report":
            dated = {} if occurred_at is None else {"occurred_at": occurred_at.isoformat()}
            return await router.client.post(
                f"/v1/tickets/{ticket_id}/events",
                json={"type": "responded", "department": department, **dated},
                headers=headers)
        return await router.client.post(
            f"/v1/tickets/{ticket_id}/transfer", json={
                "to_department": "business_desk", "reason": "theirs",
                "from_department": department}, headers=headers)

    @pytest.mark.parametrize(("asked", "field"), [("report", "body.department"),
                                                  ("transfer", "body.from_department")])
    @pytest.mark.parametrize(("role", "subject"), [
        ("department", "public_sector"), ("admin", None)],
        ids=["a typo of its own", "an admin's"])
    async def test_a_name_the_table_lacks_is_refused_with_its_departments(
            self, router: RouterApis, ticket_id: str, asked: str, field: str, role: str,
            subject: str | None) -> None:
        answer = await self.asked(router, ticket_id, asked, "publc_sector", role, subject)
        assert refused(answer, field) == TOLD
        row = await router.routed.get(ticket_id)
        assert row is not None and row.department == "public_sector"
        assert [step["step"] for step in row.trace] == []

    async def test_an_admin_s_naming_one_of_the_table_the_ticket_never_came_to_is_refused(
            self, router: RouterApis, ticket_id: str) -> None:
        """Recorded, the event would say business_desk answered a ticket it never held,
        while the router and the metrics credit public_sector."""
        answer = await self.asked(router, ticket_id, "report", "business_desk", "admin",
                                  None)
        assert refused(answer, "body.department") == (
            f"ticket {ticket_id!r} never came to 'business_desk'; an admin reports for a"
            " department that held it: public_sector")
        held = await self.asked(router, ticket_id, "report", "public_sector", "admin", None)
        assert held.status_code == 202, held.text

    async def test_one_gone_from_the_table_holding_the_ticket_is_known(
            self, router: RouterApis) -> None:
        """An admin reporting for it: its tickets are still reported on."""
        ticket_id, _ = await routed_ticket(router.routed, "retired_desk",
                                           spent=timedelta(minutes=5))
        answer = await self.asked(router, ticket_id, "report", "retired_desk", "admin", None)
        assert answer.status_code == 202, answer.text


    @pytest.mark.parametrize(("role", "subject"), [("department", "retired_desk"),
                                                   ("admin", None)],
                             ids=["its own", "an admin's"])
    async def test_a_ticket_of_one_gone_from_the_table_is_handed_on(
            self, router: RouterApis, kafka_bootstrap: str, role: str,
            subject: str | None) -> None:
        """Its lanes hold the ticket until it is handed on: a transfer from it is taken,
        and the ticket is the named department's."""
        ticket_id = await routed_to_retired_desk(router)
        await kafka.ensure_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap),
                                  priority.lane_topics("business_desk"))
        answer = await self.asked(router, ticket_id, "transfer", "retired_desk", role,
                                  subject)
        assert answer.status_code == 202, answer.text
        row = await router.routed.get(ticket_id)
        assert row is not None and row.department == "business_desk"

    async def test_one_the_ticket_came_to_is_known_once_it_holds_none(
            self, router: RouterApis, kafka_bootstrap: str) -> None:
        """An admin's report dated while it held the ticket, after the ticket (its last)
        was handed on: the ticket's trace says it is a department, no typo. Dated now,
        when business_desk holds the ticket, it is refused, told who held it then."""
        ticket_id = await routed_to_retired_desk(router)
        await kafka.ensure_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap),
                                  priority.lane_topics("business_desk"))
        moved = await self.asked(router, ticket_id, "transfer", "retired_desk", "admin", None)
        assert moved.status_code == 202, moved.text
        assert not await acting_for.holds_open(router.routed, "retired_desk")
        row = await router.routed.get(ticket_id)
        assert row is not None
        while_held = intake_policy.routed_at(row.trace)
        assert while_held is not None
        answer = await self.asked(router, ticket_id, "report", "retired_desk", "admin", None,
                                  occurred_at=while_held + timedelta(minutes=1))
        assert answer.status_code == 202, answer.text
        now = await self.asked(router, ticket_id, "report", "retired_desk", "admin", None)
        assert re.fullmatch(
            rf"ticket {ticket_id!r} was with 'business_desk' at \S+, not 'retired_desk'; an"
            r" admin reports for the department holding it at the report's date: name"
            r" 'business_desk', or date it \(occurred_at\) while 'retired_desk' held it",
            refused(now, "body.department"))
        holder = await self.asked(router, ticket_id, "report", "business_desk", "admin", None)
        assert holder.status_code == 202, holder.text
        other, _ = await routed_ticket(router.routed, "business_desk",
                                       spent=timedelta(minutes=5))
        never = await self.asked(router, other, "report", "retired_desk", "admin", None)
        assert refused(never, "body.department").startswith(
            "no department 'retired_desk' in the routing table in force")
        # Another department's credential is not told which departments held a ticket
        # it never held: the same 422 on either ticket.
        for asked_about in (ticket_id, other):
            theirs = await self.asked(router, asked_about, "report", "retired_desk",
                                      "department", "business_desk")
            assert refused(theirs, "body.department").startswith(
                "no department 'retired_desk' in the routing table in force")


async def routed_to_retired_desk(router: RouterApis) -> str:
    """A whole ticket, as the router stage stores it, routed to retired_desk (a
    department the table in force lacks) by a table of its day: its id."""
    ticket_id = unique("t")
    at = datetime.now(UTC) - timedelta(minutes=5)
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=at, platform="helpdesk")
    then = table_file.parse(TEST_ROUTING_TABLE.read_text(encoding="utf-8").replace(
        "public_sector", "retired_desk"), "routing.yaml")
    first = router_service.route(ticket.with_segmentation(tickets.Segmentation(
        segment="government", rule="gov", rules_version="r1", customer_known=True,
        tier="existing")), table=then, load=ports.no_load, now=at,
        event_id=unique("e"), correlation_id=ticket_id)
    assert first.dispatch.department == "retired_desk"
    await router.routed.record_first_dispatches([first.dispatch])
    return ticket_id
