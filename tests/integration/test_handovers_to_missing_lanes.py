"""A transfer or an escalation to a department whose lanes the router could not make
(services/router/missing_lanes.py: here one broker, KAFKA_REPLICATION_FACTOR 2 when the
router tried), on the real store and broker. Measured before: the publish waited for the
lane as for a broker down, PRODUCE_TIMEOUT_SECONDS each time, so a transfer was answered
503 however often retried, and an escalation there ended every check of the clock watch,
holding up the notices of every ticket due after it; the intake's transactional
publisher failed the tickets its transaction shared with such a hand-over. Now nothing is
published: the transfer is refused 409 `lanes_missing` naming the department and its
lanes, the escalation checked again later, the ticket staying where it is."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.core import envelope, kafka, service_context, tickets, topics
from services.core.settings import Settings
from services.router import app as router_app
from services.router import (
    bootstrap,
    clock_watch,
    lane_check,
    missing_lanes,
    ports,
    priority,
    service_clocks,
    tickets_api,
)
from services.router import service as router_service
from services.router.store import RoutedTickets
from tests import credentials
from tests.conftest import unique
from tests.router_apis import RouterApis, router_apis


@dataclass
class Served:
    apis: RouterApis
    ghost: str  # the department whose lanes the router could not make
    lanes: missing_lanes.MissingLanes
    table: bootstrap.LiveTable
    settings: Settings


@pytest.fixture
async def served(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[Served]:
    """customer_care escalates to `ghost`, billing to customer_care; the lanes of these
    two exist, ghost's the router could not make (ensure_lanes as at a load sample).
    Warnings at 75%: customer_care's tickets are warned of their resolution (90h) at
    67.5h."""
    ghost = unique("ghost").replace("-", "_")
    table = ("fallback_department: customer_care\nwarning_share: 0.75\nroutes:\n"
             "  - {segment: standard, department: customer_care, first_response_target: 1h,"
             " resolution_target: 90h}\n"
             "  - {segment: business, department: billing, first_response_target: 1h}\n"
             "departments:\n"
             f"  customer_care: {{escalation_to: {ghost}}}\n"
             "  billing: {escalation_to: customer_care}\n"
             f"  {ghost}: {{}}\n")
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, database_url=database_url)
    await kafka.ensure_topics(settings, [*priority.lane_topics("customer_care"),
                                         *priority.lane_topics("billing")])
    lanes = missing_lanes.MissingLanes()
    async with router_apis(database_url, kafka_bootstrap, tmp_path, tickets_api.api,
                           table=table, lanes=lanes) as apis:
        live = bootstrap.live_table(settings.model_copy(update={
            "routing_table_file": tmp_path / "routing.yaml"}))
        await lane_check.ensure_lanes(settings.model_copy(update={
            "kafka_replication_factor": 2}), live, lanes)
        assert set(lanes.departments) == {ghost}
        yield Served(apis, ghost, lanes, live, settings)


async def routed_ticket(routed: RoutedTickets, table: bootstrap.LiveTable, segment: str,
                        *, spent: timedelta) -> str:
    """A whole ticket of `segment`, routed by `table` `spent` ago and stored as the router
    stage stores it: its id."""
    ticket_id, at = unique("t"), datetime.now(UTC) - spent
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=at, platform="helpdesk")
    first = router_service.route(ticket.with_segmentation(tickets.Segmentation(
        segment=segment, rule="r", rules_version="r1", customer_known=True,
        tier="existing")), table=table.current, load=ports.no_load, now=at,
        event_id=unique("e"), correlation_id=ticket_id)
    await routed.record_first_dispatches([first.dispatch])
    return ticket_id


def failed_checks(department: str) -> float:
    return REGISTRY.get_sample_value("routing_router_clock_checks_failed_total",
                                     {"department": department}) or 0.0


def missing(ghost: str) -> str:
    return ", ".join(priority.lane_topics(ghost))


class TestATransfer:
    async def test_is_refused_naming_the_department_and_the_ticket_stays(
            self, served: Served) -> None:
        ticket_id = await routed_ticket(served.apis.routed, served.table, "standard",
                                        spent=timedelta(minutes=5))
        answer = await served.apis.client.post(
            f"/v1/tickets/{ticket_id}/transfer",
            json={"to_department": served.ghost, "reason": "theirs"},
            headers=await credentials.headers_of(served.apis.credentials, "department",
                                                 "customer_care"))
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] == "lanes_missing"
        assert answer.json()["detail"] == (
            f"department {served.ghost}'s lanes do not exist and the router could not make"
            f" them ({missing(served.ghost)}): the ticket stays with 'customer_care';"
            " transfer it there once they exist (an operator's `routing topics`), or to"
            " another department")
        row = await served.apis.routed.get(ticket_id)
        assert row is not None and row.department == "customer_care"
        # The claim its hand-over took is released: another may take the ticket at once.
        assert await served.apis.routed.claim_handover(row, hold=timedelta(seconds=30))

    async def test_fails_none_of_the_intakes_tickets_sharing_its_transaction(
            self, served: Served) -> None:
        """The router's publisher is the intake's group commit: a hand-over to the
        missing lanes refused before it joins a transaction, the ticket queued beside it
        is committed."""
        intake = bootstrap.intake_publisher(served.settings)
        router = bootstrap.wire(served.settings, routed=served.apis.routed,
                                intake_keys=served.apis.idempotency_keys, publisher=intake,
                                held=served.apis.held, table=served.table,
                                lanes=served.lanes)
        ticket_id = unique("t")
        event = envelope.Event(type="ticket.received", source="/test", ticket_id=ticket_id,
                               correlation_id=ticket_id, data={})
        try:
            handed, received = await asyncio.gather(
                router.publisher.publish([kafka.Output(
                    priority.queue_for(served.ghost, 3), "c-1", event)]),
                router.publisher.publish([kafka.Output(topics.EVENTS, "c-1", event)]),
                return_exceptions=True)
        finally:
            await intake.close()
        assert isinstance(handed, missing_lanes.LanesMissing)
        assert received is None


class TestAnEscalation:
    async def test_is_checked_again_later_holding_up_no_other_ticket(
            self, served: Served, caplog: pytest.LogCaptureFixture) -> None:
        """Its ticket, due first, stays in customer_care, checked again
        CHECK_AGAIN_AFTER_FAILURE later, the reason logged once for the department with
        the count of tickets waiting; the resolution's warning it owes with it is sent
        (measured before: held back with the escalation); billing's, due after it, is
        escalated at the same check."""
        stuck = await routed_ticket(served.apis.routed, served.table, "standard",
                                    spent=timedelta(days=3))
        behind = await routed_ticket(served.apis.routed, served.table, "business",
                                     spent=timedelta(days=2, hours=23))
        now = datetime.now(UTC)
        failed_before = failed_checks("customer_care")
        publisher = kafka.Publisher(served.settings, client_id=unique("escalation"))
        router = bootstrap.wire(served.settings, routed=served.apis.routed,
                                intake_keys=served.apis.idempotency_keys, publisher=publisher,
                                held=served.apis.held, table=served.table,
                                lanes=served.lanes)
        try:
            with caplog.at_level(logging.ERROR):
                sent = await router_service.escalate_due(
                    router.routed, router.publisher, table=served.table.current,
                    queue_for=priority.queue_for, now=now)
        finally:
            await publisher.close()
        assert sent == 2  # stuck's warning, behind's escalation
        moved = await served.apis.routed.get(behind)
        assert moved is not None and moved.department == "customer_care"
        kept = await served.apis.routed.get(stuck)
        assert kept is not None and kept.department == "customer_care"
        assert kept.next_clock_check == now + clock_watch.CHECK_AGAIN_AFTER_FAILURE
        assert kept.service_clocks is not None
        resolution = service_clocks.from_json(kept.service_clocks).current("resolution")
        assert resolution is not None and resolution.warning_at is None  # sent
        assert failed_checks("customer_care") == failed_before + 1
        assert not [record for record in caplog.records
                    if getattr(record, "ticket_id", None) == stuck]
        [logged] = [record for record in caplog.records
                    if getattr(record, "escalated_to", None) == served.ghost]
        assert logged.tickets == 1  # type: ignore[attr-defined]
        assert logged.reason == (  # type: ignore[attr-defined]
            f"department {served.ghost}'s lanes do not exist and the router could not make"
            f" them ({missing(served.ghost)}): nothing is handed on to it until they do")


@contextlib.asynccontextmanager
async def intake_instance(settings: Settings, *, check_every: float
                          ) -> AsyncIterator[FastAPI]:
    """The router as the instance serving the intake alone runs (ROUTER_STAGE=false), its
    lanes checked every `check_every` seconds (LOAD_SAMPLE_SECONDS)."""
    app = router_app.create_app(settings.model_copy(update={
        "router_stage": False, "load_sample_seconds": check_every,
        "instance_id": unique("intake")}))
    async with app.router.lifespan_context(app):
        yield app


async def transfer(app: FastAPI, ticket_id: str, to: str) -> httpx.Response:
    store = service_context.of(app).credentials
    assert store is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://router") as client:
        return await client.post(
            f"/v1/tickets/{ticket_id}/transfer", json={"to_department": to, "reason": "r"},
            headers=await credentials.headers_of(store, "department", "customer_care"))


async def lanes_missing(department: str, *, now: bool) -> bool:
    """Whether the gauge says `department`'s lanes missing (`now`) or not, within 30 s
    (polled: no timing asserted)."""
    for _ in range(300):
        if (REGISTRY.get_sample_value("routing_router_department_lanes_missing",
                                      {"department": department}) == 1.0) is now:
            return True
        await asyncio.sleep(0.1)
    return False


class TestAnInstanceServingTheIntakeAlone:
    """It runs no stage, and no load sample, yet hands tickets over: it checks the lanes
    itself, every LOAD_SAMPLE_SECONDS and after each table put in force. Measured before:
    it checked them at its start only, so lanes made later stayed refused until a restart,
    and a department added by a table put in force was unknown to it (its transfers
    waited PRODUCE_TIMEOUT_SECONDS, then 503)."""

    @pytest.fixture
    def settings(self, database_url: str, kafka_bootstrap: str, tmp_path: Path) -> Settings:
        table_file = tmp_path / "routing.yaml"
        table_file.write_text("fallback_department: customer_care\nroutes:\n"
                              "  - {segment: standard, department: customer_care}\n"
                              "departments:\n  customer_care: {}\n", encoding="utf-8")
        return Settings(kafka_bootstrap_servers=kafka_bootstrap, database_url=database_url,
                        routing_table_file=table_file, kafka_replication_factor=2)

    async def test_accepts_a_transfer_once_the_lanes_it_could_not_make_are_made(
            self, settings: Settings) -> None:
        ghost = unique("ghost").replace("-", "_")
        made = settings.model_copy(update={"kafka_replication_factor": 1})
        await kafka.ensure_topics(made, [*topics.PIPELINE, *priority.lane_topics(
            "customer_care")])
        settings.routing_table_file.write_text(
            settings.routing_table_file.read_text("utf-8") + f"  {ghost}: {{}}\n",
            encoding="utf-8")
        async with intake_instance(settings, check_every=0.1) as app:
            router = service_context.of(app).part(bootstrap.Router)
            ticket_id = await routed_ticket(router.routed, router.table, "standard",
                                            spent=timedelta(minutes=5))
            refused = await transfer(app, ticket_id, ghost)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "lanes_missing"

            await kafka.ensure_topics(made, priority.lane_topics(ghost))  # an operator's
            assert await lanes_missing(ghost, now=False)
            accepted = await transfer(app, ticket_id, ghost)
            assert accepted.status_code == 202, accepted.text

    async def test_refuses_a_transfer_to_a_department_a_table_put_in_force_added(
            self, settings: Settings) -> None:
        """Its lanes, which the brokers do not make, are checked once the table is in
        force (not an interval later: here an hour): a transfer there is refused at once,
        not waited on until it fails."""
        ghost = unique("ghost").replace("-", "_")
        await kafka.ensure_topics(settings.model_copy(update={"kafka_replication_factor": 1}),
                                  [*topics.PIPELINE, *priority.lane_topics("customer_care")])
        async with intake_instance(settings, check_every=3600) as app:
            router = service_context.of(app).part(bootstrap.Router)
            ticket_id = await routed_ticket(router.routed, router.table, "standard",
                                            spent=timedelta(minutes=5))
            await router.table.put_in_force(
                settings.routing_table_file.read_text("utf-8") + f"  {ghost}: {{}}\n",
                source="test", author="test")
            assert await lanes_missing(ghost, now=True)
            refused = await transfer(app, ticket_id, ghost)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "lanes_missing"
