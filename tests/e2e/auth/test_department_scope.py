"""A department's token reads and reports on its own tickets and stats, not another's."""

from __future__ import annotations

import httpx

from tests.conftest import Pipeline
from tests.e2e.auth.access import ADMIN, DEPARTMENT, OTHER, OWN


class TestDepartmentScope:
    async def test_a_department_reads_and_reports_on_its_own_tickets(
            self, secured: Pipeline, routed_ticket: str) -> None:
        async with httpx.AsyncClient(base_url=secured.url("router"), timeout=10,
                                     headers=secured.headers(DEPARTMENT, OWN)) as own:
            assert (await own.get(f"/v1/tickets/{routed_ticket}")).status_code == 200
            report = await own.post(f"/v1/tickets/{routed_ticket}/events",
                                    json={"type": "picked_up"})
            assert report.status_code == 202, report.text
            other_name = await own.post(f"/v1/tickets/{routed_ticket}/events",
                                        json={"type": "picked_up", "department": OTHER})
            assert other_name.status_code == 403
            backdated = await own.post(f"/v1/tickets/{routed_ticket}/events", json={
                "type": "responded", "occurred_at": "2000-01-01T00:00:00Z"})
            assert backdated.status_code == 422  # would dodge the escalation
            assert backdated.json()["fields"][0]["field"] == "body.occurred_at"
        async with httpx.AsyncClient(base_url=secured.url("metrics"), timeout=10,
                                     headers=secured.headers(DEPARTMENT, OWN)) as stats:
            assert (await stats.get(f"/v1/departments/{OWN}/stats")).status_code == 200
            assert (await stats.get(f"/v1/departments/{OTHER}/stats")).status_code == 403
            # a name no department has: told so, with the table's departments, as the
            # router tells it (services/core/unknown_departments.py), not refused 403
            typo = await stats.get("/v1/departments/publc_sector/stats")
            assert typo.status_code == 404, typo.text
            assert OWN in typo.json()["departments"]

    async def test_stats_of_a_department_nobody_knows_are_404_not_zeros(
            self, secured: Pipeline) -> None:
        """Against the routing table in force, the router's (put in the store at its
        start): a name it lacks, with no tickets kept, is 404; one of its departments is
        answered."""
        async with httpx.AsyncClient(base_url=secured.url("metrics"), timeout=10,
                                     headers=secured.headers(ADMIN)) as stats:
            typo = await stats.get("/v1/departments/publc_sector/stats")
            quiet = await stats.get("/v1/departments/sales_support/stats")
        assert typo.status_code == 404, typo.text
        assert typo.json()["error"] == "not_found"
        assert "'publc_sector'" in typo.json()["detail"]
        assert OWN in typo.json()["departments"]
        assert quiet.status_code == 200, quiet.text
