"""The pipeline as `bin/run` starts it: the router on ROUTER_PORT serves the intake and
the APIs and runs no stage; a second router instance, in its own process, routes. A
ticket posted to the first reaches its department's queue once; only the second runs
the router's consumers (its stage and its followers of the ticket events) and samples
the departments' load; both follow the routing table's changes and take their turns at
the fleet-wide jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import processes
from services.core import topics
from tests import credentials
from tests.conftest import department_lanes, read_topic
from tests.e2e.split_pipeline import running

# The router's consumers: its stage, the ticket events' follower, the webhooks' recorder,
# the reader of the tickets held as dead letters; and the load sample, which overflow
# routes by.
ROUTING_METRICS = [*(f'routing_stage_waiting_for_outage{{stage="{name}"}}' for name in
                     ("router", topics.ROUTER_TRACKER_GROUP, topics.ROUTER_WEBHOOKS_GROUP)),
                   'routing_background_task_up{task="load"}',
                   'routing_background_task_up{task="held-tickets"}']
# What an instance serving the intake alone still runs (README, ROUTER_STAGE): the routing
# table's followers (a table put in force reaches its simulator and APIs), the check of
# the department lanes its hand-overs go to, and its turn at the fleet-wide jobs any
# router can hold the lease of.
EVERY_ROUTERS = [f'routing_background_task_up{{task="{task}"}}' for task in (
    "routing_table-announcements", "routing_table-store-check", "lanes", "escalation",
    "retention-purge")]


@pytest.fixture
def split_pipeline(kafka_bootstrap: str, tmp_path: Path
                   ) -> Iterator[tuple[dict[str, processes.ServiceProcess], str]]:
    with running(kafka_bootstrap, tmp_path) as pipeline:
        yield {service.name: service for service in pipeline.services}, pipeline.token


async def test_the_intake_router_hands_its_tickets_to_the_routing_instance(
        split_pipeline: tuple[dict[str, processes.ServiceProcess], str],
        kafka_bootstrap: str) -> None:
    services, token = split_pipeline
    intake, routing = services["router"], services[processes.ROUTER_STAGE_INSTANCE]
    assert routing.env["INSTANCE_ID"] != intake.env.get("INSTANCE_ID", "0")
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{intake.url}/v1/tickets", headers=credentials.bearer(
            token), json={"customer_id": "gov-ministry-1", "subject": "Split",
                          "body": "Hello", "channel": "web"})
        assert response.status_code == 202, response.text
        ticket_id = response.json()["ticket_id"]
        found = await read_topic(kafka_bootstrap,
                                 *department_lanes("public_sector"), until=1, within=60,
                                 keep=lambda event: event.ticket_id == ticket_id)
        assert [event.ticket_id for event, _ in found] == [ticket_id]
        intake_metrics = (await client.get(f"{intake.url}/metrics")).text
        routing_metrics = (await client.get(f"{routing.url}/metrics")).text
        assert (await client.get(f"{intake.url}/readyz")).status_code == 200
    for metric in ROUTING_METRICS:
        assert metric not in intake_metrics
        assert metric in routing_metrics
    for metric in EVERY_ROUTERS:
        assert metric in intake_metrics and metric in routing_metrics, metric
