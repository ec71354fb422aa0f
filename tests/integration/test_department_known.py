"""The stats API on a real store (SQLite and PostgreSQL) with the routing table in force
in its config store: a department it does not know is answered 404, naming it and the
table's departments, where it answered zeros; a department of the table without tickets
still gets zeros, one taken out of the table keeps its history readable. The name is
looked up before a department credential's scope is checked, and the table's departments
are listed to it too, as the router lists them (services/core/unknown_departments.py);
another known department's name is refused 403."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import access, config_store, db, http, service_context
from services.core.credentials import Credentials
from services.metrics import api, table_departments
from services.metrics.store import TimelineStore
from services.metrics.timeline import Assignment, Timeline
from tests import credentials
from tests.conftest import unique
from tests.metrics_context import metrics_context

NOW = datetime.now(UTC)
TABLE = """version: known-{n}
fallback_department: customer_care
routes:
  - {{segment: government, department: public_sector}}
  - {{segment: business, department: {second}}}
"""


async def put_table_in_force(sessions: async_sessionmaker[AsyncSession], n: int,
                             second: str) -> None:
    """A routing table in force in the store, as an upload through the router puts it."""
    await config_store.ConfigVersions(sessions, config_store.ROUTING_TABLE).put_in_force(
        config_store.Candidate(TABLE.format(n=n, second=second), f"known-{n}", "tests"))


def routed(department: str, *, at: datetime, handed_to: str | None = None) -> Timeline:
    """A ticket routed to `department` at `at`; transferred to `handed_to` a minute on."""
    routing = Assignment("routed", department, at, "route", counted=True)
    if handed_to is None:
        return Timeline(ticket_id=unique("t"), department=department, segment="government",
                        received_at=at, routed_at=at, assignments=(routing,))
    moved = at + timedelta(minutes=1)
    return Timeline(ticket_id=unique("t"), department=handed_to, segment="government",
                    received_at=at, routed_at=at, transferred_at=moved, assignments=(
                        routing, Assignment("transferred", handed_to, moved, "transfer",
                                            from_department=department, counted=True)))


@dataclass
class StatsApi:
    client: httpx.AsyncClient
    app: FastAPI
    keys: Credentials
    sessions: async_sessionmaker[AsyncSession]

    async def stats(self, department: str, *, role: str = "admin", subject: str | None = None,
                    window: str = "1h") -> httpx.Response:
        return await self.client.get(f"/v1/departments/{department}/stats",
                                     params={"window": window},
                                     headers=await credentials.headers_of(
                                         self.keys, role, subject))


@asynccontextmanager
async def stats_api(database_url: str, *timelines: Timeline) -> AsyncIterator[StatsApi]:
    """The stats API on the store of `database_url`, which holds `timelines` and the
    routing table TABLE (version 1, `second`: business_desk) in force."""
    engine = db.engine(database_url)
    sessions = db.sessions(engine)
    app = FastAPI()
    try:
        async with engine.begin() as connection:
            await TimelineStore(sessions).save_many(connection, list(timelines))
        await put_table_in_force(sessions, 1, "business_desk")
        async with metrics_context(database_url) as metrics:
            service_context.of(app).provide(metrics)
            app.include_router(api.api)
            http.install(app, ready=lambda: True)
            async with credentials.authenticating(app, database_url) as keys, \
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                      base_url="http://metrics") as client:
                yield StatsApi(client, app, keys, sessions)
    finally:
        await engine.dispose()


# The router's words for a name the table lacks (services/core/unknown_departments.py),
# then where the departments that held tickets are listed.
ANSWER = ("no department 'publc_sector' in the routing table in force; its departments:"
          " business_desk, customer_care, public_sector; no ticket it held is kept (those"
          " that held tickets in a window: GET /v1/departments)")


class TestAnUnknownDepartment:
    async def test_is_answered_404_naming_it_and_the_departments_of_the_table(
            self, database_url: str) -> None:
        async with stats_api(database_url, routed("public_sector", at=NOW)) as api_:
            answer = await api_.stats("publc_sector")
        assert answer.status_code == 404, answer.text
        assert answer.json() == {
            "error": "not_found",
            "detail": ANSWER, "departments": ["business_desk", "customer_care",
                                              "public_sector"]}

    async def test_is_looked_up_in_the_credentials_turn(self, database_url: str) -> None:
        """A name the table lacks is searched among the kept timelines, which may read
        many: in the caller's report turn, as a report is (429 while its report is under
        way), so that a typo polled does not read them over and over at once."""
        async with stats_api(database_url) as api_:
            headers = await credentials.headers_of(api_.keys, "admin")
            split = access.split_token(headers["Authorization"].removeprefix("Bearer "))
            assert split is not None
            async with service_context.of(api_.app).report_turns.turn(split[0]):
                unknown = await api_.client.get("/v1/departments/publc_sector/stats",
                                                headers=headers)
                known = await api_.client.get("/v1/departments/public_sector/stats",
                                              headers=headers)
        assert (unknown.status_code, known.status_code) == (429, 429)
        async with stats_api(database_url) as api_:
            headers = await credentials.headers_of(api_.keys, "admin")
            assert (await api_.client.get("/v1/departments/publc_sector/stats",
                                          headers=headers)).status_code == 404

    @pytest.mark.parametrize("subject", ["public_sector", "publc_sector"],
                             ids=["a typo of its own", "its own, gone from the table"])
    async def test_a_department_credential_is_told_it_with_the_tables_departments(
            self, database_url: str, subject: str) -> None:
        """As the router tells it (unknown_departments): a department hands tickets to
        other departments by name, so it is told them; the name is looked up before the
        credential's scope, so that a typo of its own is told as a typo, not a 403."""
        async with stats_api(database_url) as api_:
            answer = await api_.stats("publc_sector", role="department", subject=subject)
        assert answer.status_code == 404, answer.text
        assert answer.json() == {
            "error": "not_found", "detail": ANSWER,
            "departments": ["business_desk", "customer_care", "public_sector"]}

    async def test_another_known_departments_credential_is_refused_403(
            self, database_url: str) -> None:
        async with stats_api(database_url) as api_:
            known = await api_.stats("public_sector", role="department",
                                     subject="business_desk")
        assert known.status_code == 403, known.text


class TestAKnownDepartment:
    async def test_of_the_table_without_tickets_gets_zeros(self, database_url: str) -> None:
        async with stats_api(database_url) as api_:
            answer = await api_.stats("customer_care")  # the fallback: in no route
            own = await api_.stats("business_desk", role="department",
                                   subject="business_desk")
        assert answer.status_code == 200, answer.text
        assert (answer.json()["department"], answer.json()["volume"],
                answer.json()["backlog"]) == ("customer_care", 0, 0)
        assert own.status_code == 200, own.text

    async def test_taken_out_of_the_table_keeps_its_history_readable(
            self, database_url: str) -> None:
        """Its tickets routed long before the window (zeros in it), or all handed on."""
        long_ago = NOW - timedelta(days=30)
        async with stats_api(database_url, routed("retired_desk", at=long_ago),
                             routed("moved_desk", at=NOW - timedelta(minutes=30),
                                    handed_to="public_sector"),
                             routed("moved_desk_two", at=long_ago, handed_to="public_sector"),
                             ) as api_:
            retired = await api_.stats("retired_desk")
            moved = await api_.stats("moved_desk")
            moved_long_ago = await api_.stats("moved_desk_two")
            # A name only a prefix, or a LIKE pattern, of one kept: still unknown.
            prefix, pattern = await api_.stats("moved"), await api_.stats("moved_des_")
        assert (retired.status_code, retired.json()["volume"]) == (200, 0)
        assert (moved.status_code, moved.json()["volume"]) == (200, 1)
        assert (moved_long_ago.status_code, moved_long_ago.json()["volume"]) == (200, 0)
        assert (prefix.status_code, pattern.status_code) == (404, 404)

    async def test_put_in_the_table_while_the_service_runs_is_known_at_once(
            self, database_url: str) -> None:
        async with stats_api(database_url) as api_:
            before = await api_.stats("new_desk")
            await put_table_in_force(api_.sessions, 2, "new_desk")
            after = await api_.stats("new_desk")
            dropped = await api_.stats("business_desk")  # no tickets, out of the table
        assert (before.status_code, after.status_code, dropped.status_code) == (404, 200, 404)


class TestATableThatCannotBeRead:
    async def test_refuses_no_department_and_is_logged_once(
            self, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
        """One of a newer release, say: the stats API answers any name, as before it
        asked the table, rather than refuse real departments."""
        caplog.set_level(logging.WARNING, logger=table_departments.__name__)
        async with stats_api(database_url) as api_:
            await config_store.ConfigVersions(api_.sessions, config_store.ROUTING_TABLE
                                              ).put_in_force(config_store.Candidate(
                                                  "version: next\nroutes: []\n", "next",
                                                  "tests"))
            answers = [await api_.stats(name) for name in ("publc_sector", "public_sector")]
        assert [answer.status_code for answer in answers] == [200, 200]
        assert [record.getMessage() for record in caplog.records
                if record.name == table_departments.__name__] == [
            "routing table in force not read for its departments; the stats API answers"
            " for any department"]
