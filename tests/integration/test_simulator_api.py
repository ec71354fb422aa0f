"""The routing simulator over HTTP on a real store (SQLite and PostgreSQL): a generated
week of history written as the services write it, replayed through the version that was
in force and through candidates, read only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import config_files, config_store, db, http, service_context
from services.core.fleet_models import ConfigVersionRow
from services.core.settings import Settings
from services.metrics.store import TimelineRow, TimelineStore
from services.metrics.timeline import Assignment, Timeline
from services.router import priority
from services.router.held_store import HeldTickets
from services.router.held_tickets import Held
from services.router.store import Dispatch, RoutedTickets
from services.simulator import api, history
from tests import credentials, simulated_history

RULES = """\
version: everyone-business
default_segment: consumer
rules:
  - {name: strangers, segment: business, when: "!customer.known"}
"""


async def write_history(sessions: async_sessionmaker[AsyncSession],
                        generated: simulated_history.History) -> None:
    """As the router (its state) and the metrics service (timelines) keep them."""
    timelines = TimelineStore(sessions)
    dispatches, rows = [], []
    for ticket in generated.tickets:
        actual = ticket.actual
        payload = {"ticket_id": ticket.ticket_id, "customer_id": f"c-{ticket.ticket_id}",
                   "subject": "help", "body": "", "channel": "web", "kind": "question",
                   "received_at": actual.received_at.isoformat(),
                   "segmentation": {"segment": actual.segment, "tier": ticket.tier},
                   "routing": {"department": actual.department,
                               "overflowed_from": actual.overflowed_from}}
        dispatches.append(Dispatch(ticket.ticket_id, actual.department, actual.segment, 4,
                                   actual.first_response_deadline, [], payload,
                                   actual.received_at))
        rows.append(Timeline(
            ticket.ticket_id, department=actual.department, segment=actual.segment,
            routing_reason="overflow" if actual.overflowed_from else "route",
            received_at=actual.received_at, routed_at=actual.received_at,
            first_response_at=actual.first_response_at,
            first_response_deadline=actual.first_response_deadline,
            escalated_at=actual.first_response_deadline if actual.escalated else None,
            assignments=(Assignment("routed", actual.department, actual.received_at,
                                    "route", counted=True),)))
    await RoutedTickets(sessions).record_first_dispatches(dispatches)
    async with sessions() as session, session.begin():
        await timelines.save_many(session, rows)


async def put_in_force(sessions: async_sessionmaker[AsyncSession], table_text: str,
                       at: datetime | None = None) -> int:
    versions = config_store.ConfigVersions(sessions, config_store.ROUTING_TABLE)
    version, _ = await versions.put_in_force(config_store.Candidate(
        table_text, table_text.splitlines()[0], "tests"))
    if at is not None:
        async with sessions() as session, session.begin():
            await session.execute(update(ConfigVersionRow).where(
                ConfigVersionRow.version_id == version.version_id).values(created_at=at))
    return version.version_id


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[str]]:
    """Every row of every table but the credentials (authenticating may note a use)."""
    found = {}
    async with sessions() as session:
        for table in db.Base.metadata.sorted_tables:
            if "credential" not in table.name:
                rows = (await session.execute(select(table))).all()
                found[table.name] = sorted(repr(tuple(row)) for row in rows)
    return found


@pytest.fixture(scope="module")
def generated() -> simulated_history.History:
    return simulated_history.generate(seed=3, days=7)


@pytest.fixture
async def store(database_url: str, generated: simulated_history.History,
                ) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.engine(database_url)
    sessions = db.sessions(engine)
    await write_history(sessions, generated)
    try:
        yield sessions
    finally:
        await engine.dispose()


@asynccontextmanager
async def simulating(database_url: str, settings: Settings,
                     lanes_missing: Mapping[str, Sequence[str]] | None = None,
                     ) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of the simulator's API, the simulator made of `settings` as the
    router makes it (bootstrap.connect), `lanes_missing` the departments whose lanes the
    router could not make, each with its lanes missing (MissingLanes.departments)."""
    engine = db.engine(database_url)
    app = FastAPI()
    service_context.of(app).provide(api.Simulator.over(engine, settings,
                                                       lambda: lanes_missing or {}))
    app.include_router(api.api)
    http.install(app, ready=lambda: True)
    try:
        async with credentials.authenticating(app, database_url) as keys, httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://router",
                headers=await credentials.headers_of(keys, "admin"), timeout=60) as client:
            yield client
    finally:
        await engine.dispose()


@pytest.fixture
async def client(database_url: str, store: async_sessionmaker[AsyncSession],
                 ) -> AsyncIterator[httpx.AsyncClient]:
    async with simulating(database_url, Settings(protected_group_minimum_size=1)) as client:
        yield client


def window(generated: simulated_history.History, **more: Any) -> dict[str, Any]:
    return {"start": generated.start.isoformat(), "end": generated.end.isoformat(), **more}


def by_name(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


def all_lanes(*departments: str) -> dict[str, list[str]]:
    """Every lane of each department missing, as the router's lane check finds them when
    it could make none (MissingLanes.departments)."""
    return {department: priority.lane_topics(department) for department in departments}


class TestReplay:
    async def test_the_version_in_force_then_is_replayed_within_the_stated_error(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        before = generated.start - timedelta(days=1)
        in_force_then = await put_in_force(store, simulated_history.TABLE_TEXT, before)
        await put_in_force(store, simulated_history.CANDIDATE_TEXT)  # since, not then
        answer = await client.post("/v1/simulations", json=window(generated))
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["baseline"]["table_version_id"] == in_force_then
        assert result["tickets"] == len(generated.tickets)
        departments = by_name(result["departments"], "department")
        assert departments["care"]["actual"]["received"] == sum(
            t.actual.department == "care" for t in generated.tickets)
        # A one-week window is noisier than the four weeks of the unit test.
        error = result["replay_error"]
        assert error["received"] <= 0.02 and error["p50"] <= 0.35 and error["p90"] <= 0.35
        assert error["attainment_points"] <= 5

    async def test_the_version_in_force_at_the_windows_end_is_the_baseline(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        """Not the one in force at its start, nor the one in force now."""
        await put_in_force(store, simulated_history.TABLE_TEXT,
                           generated.start - timedelta(days=1))
        in_force_at_the_end = await put_in_force(
            store, simulated_history.CANDIDATE_TEXT,
            generated.start + (generated.end - generated.start) / 2)
        await put_in_force(store, simulated_history.TABLE_TEXT)  # since, not then
        answer = await client.post("/v1/simulations", json=window(generated, replications=1))
        assert answer.status_code == 200, answer.text
        assert answer.json()["baseline"]["table_version_id"] == in_force_at_the_end

    async def test_a_candidate_table_and_rules_change_where_tickets_go(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        await put_in_force(store, simulated_history.TABLE_TEXT)
        answer = await client.post("/v1/simulations", json=window(
            generated, table=simulated_history.CANDIDATE_TEXT, rules=RULES, replications=1))
        assert answer.status_code == 200, answer.text
        result = answer.json()
        # No customer is in the store: every ticket is a stranger's, so business.
        segments = by_name(result["segments"], "segment")
        assert segments["business"]["simulated"]["received"] == len(generated.tickets)
        assert result["candidate"]["rules_version"].startswith("everyone-business")


    async def test_no_ticket_overflows_to_a_department_whose_lanes_are_missing(
            self, database_url: str, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        """The router could not make care_overflow's lanes: as the router hands it no
        ticket (routing.decide), neither does the replay, where care overflows to it
        otherwise."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        overflowed = {}
        for missing in ((), ("care_overflow",)):
            async with simulating(database_url, Settings(protected_group_minimum_size=1),
                                  lanes_missing=all_lanes(*missing)) as client:
                answer = await client.post("/v1/simulations",
                                           json=window(generated, replications=1))
            assert answer.status_code == 200, answer.text
            care = by_name(answer.json()["departments"], "department")["care"]
            overflowed[missing] = care["simulated"]["overflowed_out"]
        assert overflowed[()] > 0
        assert overflowed[("care_overflow",)] == 0

    async def test_the_answer_names_the_departments_whose_lanes_are_missing(
            self, database_url: str, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        """care_overflow's and public_sector's lanes could not be made, and the candidate
        has business_desk hand its tickets to care_overflow after hours. The answer's
        `lanes_missing` names both, with their lanes, as found when the simulation ran
        and applied to every replayed ticket, and counts the tickets each changed: every
        business ticket received while business_desk was closed kept by it, tickets care
        kept rather than overflowed, every government ticket (routed to public_sector)
        one the router dead-letters, which no department receives in the replay."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        candidate = simulated_history.TABLE_TEXT.replace(
            "after_hours: pause", "after_hours: {route_to: care_overflow}")
        missing = all_lanes("care_overflow", "public_sector")
        async with simulating(database_url, Settings(protected_group_minimum_size=1),
                              lanes_missing=missing) as client:
            answer = await client.post("/v1/simulations", json=window(
                generated, table=candidate, replications=2))
        assert answer.status_code == 200, answer.text
        found = answer.json()["lanes_missing"]
        assert "when the simulation ran" in found["found"]
        assert "applied to every replayed ticket" in found["found"]
        rows = by_name(found["departments"], "department")
        assert {name: row["lanes"] for name, row in rows.items()} == {
            name: list(lanes) for name, lanes in missing.items()}
        business_hours = generated.table.policy("business_desk").calendar
        assert business_hours is not None
        closed = sum(t.segment == "business" and not business_hours.is_open(t.received_at)
                     for t in generated.tickets)
        government = sum(t.segment == "government" for t in generated.tickets)
        assert closed > 0 and government > 0
        assert (rows["care_overflow"]["not_handed_after_hours"],
                rows["care_overflow"]["dead_lettered"]) == (closed, 0)
        assert rows["care_overflow"]["not_overflowed"] > 0
        assert (rows["public_sector"]["not_handed_after_hours"],
                rows["public_sector"]["not_overflowed"],
                rows["public_sector"]["dead_lettered"]) == (0, 0, government)
        simulated = {name: row["simulated"]["received"] for name, row in by_name(
            answer.json()["departments"], "department").items()}
        assert simulated["public_sector"] == 0
        assert sum(simulated.values()) == len(generated.tickets) - government

    async def test_stored_versions_are_candidates_by_their_ids(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        """`table_version_id` and `rules_version_id`: a stored table and stored rules,
        replayed as the texts themselves would be."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        candidate = await put_in_force(store, simulated_history.CANDIDATE_TEXT)
        await put_in_force(store, simulated_history.TABLE_TEXT.replace(
            "version:", "version: again-", 1))  # in force again: the candidate is not
        rules, _changed = await config_store.ConfigVersions(
            store, config_store.SEGMENT_RULES).put_in_force(config_store.Candidate(
                RULES, "everyone-business", "tests"))
        by_text = await client.post("/v1/simulations", json=window(
            generated, table=simulated_history.CANDIDATE_TEXT, rules=RULES, replications=1))
        by_id = await client.post("/v1/simulations", json=window(
            generated, table_version_id=candidate, rules_version_id=rules.version_id,
            replications=1))
        assert by_id.status_code == 200, by_id.text
        assert by_id.json()["candidate"] == by_text.json()["candidate"]
        assert by_id.json()["departments"] == by_text.json()["departments"]
        segments = by_name(by_id.json()["segments"], "segment")
        assert segments["business"]["simulated"]["received"] == len(generated.tickets)

    async def test_what_happened_counts_a_ticket_in_the_backlog_from_its_routing(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        """The backlog of services/core/lifecycle.py: routed tickets awaiting a first
        response. Had each ticket been routed only at its first response, none would have
        awaited one in a backlog; the first responses, from receipt, are as they were."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        asked = window(generated, replications=1)
        before = by_name((await client.post("/v1/simulations", json=asked)).json()[
            "departments"], "department")
        async with store() as session, session.begin():
            await session.execute(update(TimelineRow).values(
                routed_at=TimelineRow.first_response_at))
        after = by_name((await client.post("/v1/simulations", json=asked)).json()[
            "departments"], "department")
        assert before["care"]["actual"]["peak_backlog"] > 1
        assert {name: row["actual"]["peak_backlog"] for name, row in after.items()} == {
            name: 0 for name in before}
        assert {name: row["actual"]["first_response_seconds"] for name, row in after.items()} \
            == {name: row["actual"]["first_response_seconds"] for name, row in before.items()}

    async def test_what_happened_counts_a_ticket_answered_while_paused_by_its_verdict(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        """A ticket answered while its clock was paused has no deadline on its timeline
        (clock_events.py), and the router's clock decided its target (`target_outcome`).
        The actual side counts the metrics' verdict: here one answered in time, then its
        timeline as if answered while paused and decided missed by the router's clock."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        ticket = next(t.actual for t in generated.tickets
                      if t.actual.department == "care" and t.actual.first_response_at
                      and t.actual.first_response_deadline
                      and t.actual.first_response_at <= t.actual.first_response_deadline)
        asked = window(generated, replications=1)
        before = by_name((await client.post("/v1/simulations", json=asked)).json()[
            "departments"], "department")["care"]["actual"]
        async with store() as session, session.begin():
            await session.execute(update(TimelineRow).where(
                TimelineRow.ticket_id == ticket.ticket_id).values(
                first_response_deadline=None, target_outcome="missed"))
        after = by_name((await client.post("/v1/simulations", json=asked)).json()[
            "departments"], "department")["care"]["actual"]
        counted = ("met", "missed", "pending", "escalations")
        assert {name: after[name] for name in counted} == {
            "met": before["met"] - 1, "missed": before["missed"] + 1,
            "pending": before["pending"], "escalations": before["escalations"] + 1}

    async def test_a_ticket_whose_state_is_gone_is_counted_not_replayed(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        await put_in_force(store, simulated_history.TABLE_TEXT)
        async with store() as session, session.begin():
            await session.execute(text("DELETE FROM routed_tickets WHERE ticket_id = 't00000'"))
        answer = await client.post("/v1/simulations", json=window(generated, replications=1))
        assert answer.status_code == 200, answer.text
        assert (answer.json()["tickets"], answer.json()["without_state"]) == (
            len(generated.tickets) - 1, 1)

    async def test_a_ticket_held_as_a_dead_letter_is_counted_held_not_without_state(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        """Received (its timeline from the intake's `received`), then dead-lettered by a
        stage: no routed state yet, held (held_store), routed once replayed; next to one
        whose state is gone."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        received = generated.start + timedelta(hours=1)
        async with store() as session, session.begin():
            await TimelineStore(store).save_many(session, [
                Timeline("held-1", received_at=received)])
            await session.execute(text("DELETE FROM routed_tickets WHERE ticket_id = 't00000'"))
        await HeldTickets(store).hold([Held(
            ticket_id="held-1", dead_letter_id="0:7", stage="router",
            error_class="Unprocessable", held_at=received + timedelta(seconds=1))])
        answer = await client.post("/v1/simulations", json=window(generated, replications=1))
        assert answer.status_code == 200, answer.text
        counted = {name: answer.json().get(name) for name in ("tickets", "held", "without_state")}
        assert counted == {"tickets": len(generated.tickets) - 1, "held": 1, "without_state": 1}


class TestParityGroups:
    @pytest.mark.parametrize(("given", "attributes"), [
        ({}, ["age_band", "gender", "socio_economic_band"]),  # the default: as before
        ({"parity_attributes": ["age_band", "socio_economic_band"]},
         ["age_band", "socio_economic_band"]),
        ({"parity_attributes": ["gender"]}, ["gender"]),
    ])
    async def test_the_groups_are_those_of_the_attributes_the_service_parity_measures(
            self, database_url: str, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History, given: dict[str, Any],
            attributes: list[str]) -> None:
        """PARITY_ATTRIBUTES, read as the service parity reads it (ParityConfig.of)."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        settings = Settings(**given, protected_group_minimum_size=1)
        async with simulating(database_url, settings) as client:
            answer = await client.post("/v1/simulations",
                                       json=window(generated, replications=1))
        assert answer.status_code == 200, answer.text
        groups = answer.json()["groups"]
        assert sorted(groups) == attributes
        # No customer is in the store: every ticket is in the unknown band of each.
        assert all([row["group"] for row in rows] == ["unknown"] for rows in groups.values())

    @pytest.mark.parametrize(("more", "group"), [(0, "unknown"), (1, history.SUPPRESSED)])
    async def test_groups_under_protected_group_minimum_size_are_pooled(
            self, database_url: str, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History, more: int, group: str) -> None:
        """PROTECTED_GROUP_MINIMUM_SIZE, read as the service parity reads it: every
        ticket is in the unknown band, one group as large as the window; a minimum one
        past it pools the group as suppressed."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        settings = Settings(parity_attributes=["gender"],
                            protected_group_minimum_size=len(generated.tickets) + more)
        async with simulating(database_url, settings) as client:
            answer = await client.post("/v1/simulations",
                                       json=window(generated, replications=1))
        assert answer.status_code == 200, answer.text
        assert [row["group"] for row in answer.json()["groups"]["gender"]] == [group]

    async def test_groups_come_from_the_customer_through_groups_of(
            self, database_url: str, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        engine = db.engine(database_url)
        try:
            reader = history.HistoryReader(
                history.read_only_sessions(engine),
                groups_of=lambda customer: {"known": "yes" if customer.profile else "no"})
            read = await reader.window(generated.start, generated.end, with_customers=False)
        finally:
            await engine.dispose()
        assert len(read.tickets) == len(generated.tickets)
        assert {ticket.actual.groups["known"] for ticket in read.tickets} == {"no"}


class TestReadOnly:
    async def test_a_simulation_changes_no_row(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        await put_in_force(store, simulated_history.TABLE_TEXT)
        before = await snapshot(store)
        answer = await client.post("/v1/simulations", json=window(generated, rules=RULES))
        assert answer.status_code == 200, answer.text
        assert await snapshot(store) == before

    async def test_the_readers_transactions_refuse_writes_on_postgresql(
            self, database_url: str) -> None:
        if not database_url.startswith("postgresql"):
            pytest.skip("SQLite has no read-only transactions")
        engine = db.engine(database_url)
        try:
            async with history.read_only_sessions(engine)() as session:
                with pytest.raises(DBAPIError, match="read-only"):
                    await session.execute(text(
                        "UPDATE config_versions SET comment = 'written' WHERE false"))
        finally:
            await engine.dispose()

    def test_the_simulator_loads_no_kafka_client(self) -> None:
        loaded = subprocess.run(
            [sys.executable, "-c", "import sys, services.simulator.api, services.simulator.cli;"
             " print(sorted(m for m in sys.modules if 'kafka' in m))"],
            capture_output=True, text=True, check=True).stdout.strip()
        assert loaded == "[]"


class TestRefusals:
    @pytest.mark.parametrize(("change", "field"), [
        ({"end": "2026-11-01T00:00:00+00:00"}, "body.end"),
        ({"end": "2999-01-01T00:00:00+00:00"}, "body.end"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "body.start"),
        ({"table": "x", "table_version_id": 1}, "body.table_version_id"),
        ({"table_version_id": 99999}, "body.table_version_id"),
        ({"replications": 0}, "body.replications"),
    ])
    async def test_a_wrong_field_is_named(self, client: httpx.AsyncClient,
                                          store: async_sessionmaker[AsyncSession],
                                          generated: simulated_history.History,
                                          change: dict[str, Any], field: str) -> None:
        await put_in_force(store, simulated_history.TABLE_TEXT)
        answer = await client.post("/v1/simulations", json={**window(generated), **change})
        assert answer.status_code == 422, answer.text
        assert [f["field"] for f in answer.json()["fields"]] == [field]

    @pytest.mark.parametrize("field", ["table", "rules"])
    async def test_a_candidate_over_the_uploads_limit_is_refused_as_an_upload_is(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History, field: str) -> None:
        """config_files.CONFIG_MAX_BYTES, counted in bytes as UTF-8 by the uploads' own
        check: one byte over (a comment of ASCII) is refused naming the limit."""
        await put_in_force(store, simulated_history.TABLE_TEXT)
        text = simulated_history.TABLE_TEXT if field == "table" else RULES
        padded = text + "#" * (config_files.CONFIG_MAX_BYTES - len(text.encode()) - 1) + "\n"
        assert len(padded.encode()) == config_files.CONFIG_MAX_BYTES
        answer = await client.post("/v1/simulations", json=window(
            generated, **{field: padded + "#"}, replications=1))
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "invalid_configuration"
        assert answer.json()["problem"] == (
            f"the file is {config_files.CONFIG_MAX_BYTES + 1:,} bytes, at most"
            f" {config_files.CONFIG_MAX_BYTES:,} (256 KiB)")

    async def test_a_candidate_that_does_not_load_names_its_line(
            self, client: httpx.AsyncClient, store: async_sessionmaker[AsyncSession],
            generated: simulated_history.History) -> None:
        await put_in_force(store, simulated_history.TABLE_TEXT)
        broken = simulated_history.TABLE_TEXT.replace("department: care,",
                                                      "department: Not A Name,")
        answer = await client.post("/v1/simulations", json=window(generated, table=broken))
        assert answer.status_code == 422
        assert answer.json()["error"] == "invalid_configuration"
        assert answer.json()["line"] is not None

    async def test_only_admins_simulate(self, client: httpx.AsyncClient,
                                        generated: simulated_history.History) -> None:
        answer = await client.post("/v1/simulations", json=window(generated),
                                   headers={"Authorization": "Bearer nonsense"})
        assert answer.status_code == 401
