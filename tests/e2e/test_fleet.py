"""Two routers and two segmenters on one PostgreSQL store, as real processes: a ticket
past its first-response deadline is escalated once (one `ticket.escalated` event), by
the router holding the escalation lease; one segmenter holds the tier recompute's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from devtools import ports
from devtools.processes import ServiceProcess
from services.core import db, events, topics
from tests.conftest import TEST_ROUTING_TABLE, Pipeline, read_topic, unique

# Short enough that a test sees deadlines pass; the escalation checks twice a second.
FIRST_RESPONSE_TARGET = "3s"


@pytest.fixture
def fast_deadlines(tmp_path: Path) -> Path:
    """The test routing table with every first-response target a few seconds."""
    table = tmp_path / "routing.yaml"
    table.write_text(re.sub(r"first_response_target: [0-9dhms]+",
                            f"first_response_target: {FIRST_RESPONSE_TARGET}",
                            TEST_ROUTING_TABLE.read_text()))
    return table


def another_instance(pipeline: Pipeline, name: str, logs: Path) -> ServiceProcess:
    port = ports.free_port()
    env = {**pipeline.env, f"{name.upper()}_PORT": str(port), "INSTANCE_ID": "1"}
    return ServiceProcess(name, port, env, logs / f"{name}-1.log")


@pytest.fixture
def fleet(kafka_bootstrap: str, seeded_postgres: str, fast_deadlines: Path,
          tmp_path: Path) -> Iterator[tuple[Pipeline, list[ServiceProcess]]]:
    logs = tmp_path / "logs"
    pipeline = Pipeline(kafka_bootstrap, seeded_postgres, logs, extra_env={
        "ROUTING_TABLE_FILE": str(fast_deadlines), "ESCALATION_CHECK_SECONDS": "0.5",
        "TIER_RECOMPUTE_INTERVAL_SECONDS": "1"})
    extra = [another_instance(pipeline, name, logs) for name in ("router", "segmenter")]
    try:
        pipeline.start()
        for service in extra:
            service.start()
        for service in extra:
            service.wait_ready(timeout=90)
        yield pipeline, extra
    finally:
        for service in extra:
            service.stop()
        pipeline.stop()


async def post_ticket(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    response = await client.post(f"{url}/v1/tickets", headers=headers, json={
        "customer_id": "org-acme-1", "subject": unique("fleet"), "body": "no answer yet",
        "channel": "api"})
    assert response.status_code == 202, response.text
    ticket_id: str = response.json()["ticket_id"]
    return ticket_id


async def escalations(bootstrap: str, ticket_ids: set[str], *,
                      until: int) -> list[str]:
    found = await read_topic(bootstrap, topics.EVENTS, until=until, within=90, settle=2.0,
                             keep=lambda event: event.type == events.TicketEventType.ESCALATED
                             and event.ticket_id in ticket_ids)
    return [event.ticket_id or "" for event, _ in found]


async def lease_holders(database_url: str) -> dict[str, str]:
    engine = db.engine(database_url)
    try:
        async with engine.connect() as connection:
            return {name: holder for name, holder in (await connection.execute(
                text("SELECT name, holder FROM leases"))).all()}
    finally:
        await engine.dispose()


class TestOncePerFleet:
    async def test_two_routers_escalate_a_ticket_past_its_deadline_once(
            self, fleet: tuple[Pipeline, list[ServiceProcess]]) -> None:
        pipeline, (second_router, second_segmenter) = fleet
        routers = [pipeline.services["router"], second_router]
        async with httpx.AsyncClient(timeout=10) as client:
            first = await post_ticket(client, routers[0].url, pipeline.headers())
            assert await escalations(pipeline.bootstrap, {first}, until=1) == [first]
            # A later ticket escalated shows both routers had their turns at the first.
            marker = await post_ticket(client, routers[1].url, pipeline.headers())
            seen = await escalations(pipeline.bootstrap, {first, marker}, until=2)

        assert sorted(seen) == sorted([first, marker])
        holders = await lease_holders(pipeline.database_url)
        router_pids = {str(router.process.pid) for router in routers if router.process}
        segmenter_pids = {str(service.process.pid) for service in
                          (pipeline.services["segmenter"], second_segmenter) if service.process}
        assert holders["escalation"].split("-")[2] in router_pids
        assert holders["tier-recompute"].split("-")[2] in segmenter_pids
