"""The router's HTTP APIs alone, as an integration test runs them: on a real SQL store
and the real broker, wired by the router's own bootstrap, called in process (ASGI), with
no pipeline stage running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI

from services.core import db, http, kafka, service_context, topics
from services.core.credentials import Credentials
from services.core.live_config import LiveConfig
from services.core.settings import Settings
from services.router import bootstrap, intake, missing_lanes, service_clocks, table_file
from services.router.held_store import HeldTickets
from services.router.intake_keys import IntakeKeys
from services.router.store import Dispatch, RoutedTickets
from tests import credentials
from tests.conftest import unique

# The service-level targets of the tickets the tests route: first response in 4 hours,
# next response in 2, resolution in 2 days.
TARGETS = service_clocks.Targets(timedelta(hours=4), timedelta(hours=2), timedelta(days=2))
# A routing table of one department, which every ticket goes to.
CUSTOMER_CARE_ONLY = """\
fallback_department: customer_care
routes:
  - {segment: standard, department: customer_care}
departments:
  customer_care: {}
"""
# CUSTOMER_CARE_ONLY with a department to transfer to, which no ticket is routed to.
CUSTOMER_CARE_AND_BILLING = CUSTOMER_CARE_ONLY + "  billing: {}\n"


async def routed_ticket(routed: RoutedTickets, department: str, *, spent: timedelta,
                        priority: int = 3, platform: str | None = None,
                        steps: int = 0, ticket_id: str | None = None,
                        correlation_id: str | None = None) -> tuple[str, datetime]:
    """A ticket (by `ticket_id`, else a new id; posted with `correlation_id`) routed to
    `department` (open 24/7) `spent` ago, with its clocks, as the router stage records it
    (with a trace of `steps` reports of its pick-up); its id and when it was routed."""
    ticket_id = ticket_id or unique("t")
    at = datetime.now(UTC) - spent
    await routed.record_first_dispatches([Dispatch(
        ticket_id=ticket_id, department=department, segment="standard", priority=priority,
        deadline=at + TARGETS.first_response,
        steps=[{"at": at.isoformat(), "step": "picked_up"}] * steps,
        payload={"routing": {"priority": priority}, "received_at": at.isoformat()}, at=at,
        clocks=service_clocks.routed(TARGETS, at, None), platform=platform,
        correlation_id=correlation_id)])
    return ticket_id, at


@dataclass
class RouterApis:
    client: httpx.AsyncClient  # to the APIs, base URL http://router
    routed: RoutedTickets
    idempotency_keys: IntakeKeys
    credentials: Credentials
    held: HeldTickets


@asynccontextmanager
async def router_apis(database_url: str, kafka_bootstrap: str, folder: Path,
                      *apis: APIRouter, table: str = CUSTOMER_CARE_ONLY,
                      lanes: missing_lanes.MissingLanes | None = None,
                      **settings_given: Any) -> AsyncIterator[RouterApis]:
    """`apis` served over the store of `database_url` (migrated) and the routing table
    `table` (YAML text, written into `folder`), publishing on `tickets.events` of
    `kafka_bootstrap`, with the settings given beside those (`intake_byte_rate_limit=...`);
    `lanes`, the department lanes the router could not make, as ensure_lanes finds them."""
    table_path = folder / "routing.yaml"
    table_path.write_text(table, encoding="utf-8")
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, database_url=database_url,
                        **settings_given)
    await kafka.ensure_topics(settings, [topics.EVENTS])
    engine = db.engine(database_url)
    publisher = kafka.Publisher(settings, client_id=unique("router-api-tests"))
    app = FastAPI()
    for api in apis:
        app.include_router(api)
    http.install(app, ready=lambda: True)
    sessions = db.sessions(engine)
    routed, keys, held = RoutedTickets(sessions), IntakeKeys(sessions), HeldTickets(sessions)
    router = bootstrap.wire(settings, routed=routed, intake_keys=keys, publisher=publisher,
                            table=LiveConfig("routing_table", table_path, table_file.parse),
                            lanes=lanes, held=held)
    service_context.install(app, settings).provide(router, bootstrap.known_departments(router))
    try:
        async with credentials.authenticating(app, database_url) as store, httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://router") as client:
            yield RouterApis(client, routed, keys, store, held)
    finally:
        await publisher.close()
        await engine.dispose()


@asynccontextmanager
async def intake_apis(database_url: str, kafka_bootstrap: str, folder: Path,
                      *apis: APIRouter, table: str = CUSTOMER_CARE_ONLY,
                      **settings_given: Any) -> AsyncIterator[RouterApis]:
    """router_apis with the intake among its APIs, the intake publishing the tickets on
    tickets.incoming (made here) and their `received` events on tickets.events."""
    await kafka.ensure_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap),
                              [topics.INCOMING])
    async with router_apis(database_url, kafka_bootstrap, folder, intake.api, *apis,
                           table=table, **settings_given) as served:
        yield served
