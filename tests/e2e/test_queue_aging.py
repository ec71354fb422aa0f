"""Aging from the routing table reaches every reader: each routed ticket carries the
table's `priority_aging` in force when it was routed, and the department tool (run as a
department runs it, a process) ages the tickets by it; its `--aging` only overrides."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Pipeline, demo_pipeline, department_lanes, read_topic, unique

# Unknown customers are potential customers; the ticket's kind picks the lane (low 5 or
# high 2), its channel the department, so that each test reads a queue of its own.
TABLE = """
version: aging-1
fallback_department: customer_care
priority_aging: 1s
defaults: {priority: 4, first_response_target: 1d}
routes:
  - segment: potential
    department: customer_care
    refinements:
      - {name: table-low, when: 'ticket.kind == "suggestion" && ticket.channel == "web"',
         department: aging_desk, priority: 5}
      - {name: table-high, when: 'ticket.kind == "incident" && ticket.channel == "web"',
         department: aging_desk, priority: 2}
      - {name: flag-low, when: 'ticket.kind == "suggestion"', department: override_desk,
         priority: 5}
      - {name: flag-high, when: 'ticket.kind == "incident"', department: override_desk,
         priority: 2}
departments:
  customer_care: {}
  aging_desk: {}
  override_desk: {}
"""
STEP = timedelta(seconds=1)


@pytest.fixture(scope="module")
def aging_pipeline(kafka_bootstrap: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("aging"), customers=50,
                       table=TABLE) as running:
        yield running


async def route(pipeline: Pipeline, kind: str, channel: str,
                department: str) -> dict[str, Any]:
    """Post a ticket and wait until it is in the department's lanes; its routing part."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{pipeline.url('router')}/v1/tickets", json={
            "customer_id": unique("prospect"), "subject": "s", "body": "b",
            "channel": channel, "kind": kind}, headers=pipeline.headers())
    assert answer.status_code == 202, answer.text
    ticket_id = answer.json()["ticket_id"]
    [(event, _record)] = await read_topic(pipeline.bootstrap, *department_lanes(department),
                                          until=1, keep=lambda e: e.ticket_id == ticket_id)
    routing: dict[str, Any] = event.data["routing"]
    return {"ticket_id": ticket_id, **routing}


async def department_queue(pipeline: Pipeline, department: str, *flags: str) -> list[str]:
    """The ticket ids the tool takes, in order."""
    token = pipeline.headers("department", department)["Authorization"].removeprefix(
        "Bearer ")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap,
           "ROUTER_URL": pipeline.url("router"), "LOG_FORMAT": "text", "API_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.departments.cli", "queue", department, "--json",
        "--max", "2", "--wait", "3", *flags, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return [json.loads(line)["ticket_id"] for line in out.decode().splitlines() if line]


async def aged(low: dict[str, Any], levels: int) -> None:
    """Wait until the low ticket has waited `levels` aging steps (not an assertion)."""
    ripe = datetime.fromisoformat(low["routed_at"]) + levels * STEP
    await asyncio.sleep(max(0.0, (ripe - datetime.now(UTC)).total_seconds()))


class TestAgingFromTheTable:
    async def test_every_routed_ticket_carries_the_tables_aging(
            self, aging_pipeline: Pipeline) -> None:
        routing = await route(aging_pipeline, "question", "web", "customer_care")
        assert routing["priority_aging_seconds"] == STEP.total_seconds()
        assert routing["priority"] == 4 and routing["routed_at"]

    async def test_an_aged_low_ticket_is_taken_before_a_newer_high_one(
            self, aging_pipeline: Pipeline) -> None:
        low = await route(aging_pipeline, "suggestion", "web", "aging_desk")
        high = await route(aging_pipeline, "incident", "web", "aging_desk")
        assert (low["queue"], high["queue"]) == ("dept.aging_desk.low", "dept.aging_desk.high")
        # Four steps of 1s take the low ticket from 5 to 1, where the newer high one
        # (2, or 1 once it has waited a step) can only tie it: the longer waiting goes first.
        await aged(low, 4)
        taken = await department_queue(aging_pipeline, "aging_desk")
        assert taken == [low["ticket_id"], high["ticket_id"]]

    async def test_the_aging_flag_overrides_what_the_records_say(
            self, aging_pipeline: Pipeline) -> None:
        low = await route(aging_pipeline, "suggestion", "email", "override_desk")
        high = await route(aging_pipeline, "incident", "email", "override_desk")
        await aged(low, 4)  # aged by the table's 1s, not by the flag's 1h
        taken = await department_queue(aging_pipeline, "override_desk", "--aging", "1h")
        assert taken == [high["ticket_id"], low["ticket_id"]]
