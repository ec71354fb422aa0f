"""One ticket's whole service-level lifecycle on the real pipeline (Kafka, the store, the
three services): routed -> warning -> responded -> waiting on the customer (clocks
paused) -> the customer replied -> next response -> transfer -> resolved, with every
deadline checked on the events the router publishes and on the ticket's state, and the
platform that posted it told each step by signed webhook calls.

Each step is a helper, so that other checks (the platform's webhook calls) can be added
to the same walk. Departments are open 24/7 here, so deadlines are plain sums; business
hours, DST and holidays are covered by tests/unit/test_service_clocks.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.core import envelope, events, topics
from services.router import ticket_ids
from services.webhooks import catalog
from tests.conftest import Pipeline, demo_pipeline, read_topic, unique
from tests.webhooks_receiver import Receiver

FIRST_RESPONSE = timedelta(minutes=2)
NEXT_RESPONSE = timedelta(hours=1)
RESOLUTION = timedelta(hours=2)
# The warning comes at 2% of the first-response target (2.4 s), long before its breach.
TABLE = """
version: service-lifecycle-1
fallback_department: customer_care
warning_share: 0.02
defaults: {priority: 3, first_response_target: 2m, next_response_target: 1h,
           resolution_target: 2h}
routes:
  - {segment: potential, department: sales_support}
departments:
  sales_support: {escalation_to: customer_care}
  customer_care: {}
"""
PLATFORM = "helpdesk-one"
TOLERANCE = timedelta(milliseconds=5)  # clocks keep seconds as floats


@pytest.fixture(scope="module")
def lifecycle_pipeline(kafka_bootstrap: str,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("service-lifecycle"),
                       customers=20, table=TABLE,
                       extra_env={"ESCALATION_CHECK_SECONDS": "0.3"}) as running:
        yield running


@pytest.fixture
async def router(lifecycle_pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=lifecycle_pipeline.url("router"),
                                 timeout=20) as client:
        yield client


@dataclass
class Walk:
    """The ticket walked through, and what the steps learnt on the way."""

    pipeline: Pipeline
    router: httpx.AsyncClient
    receiver: Receiver | None = None
    secret: str = ""
    ticket_id: str = ""
    routed_at: datetime | None = None
    moments: dict[str, datetime] = field(default_factory=dict)

    def headers(self, role: str, subject: str | None = None) -> dict[str, str]:
        return self.pipeline.headers(role, subject)


async def lifecycle_event(walk: Walk, kind: str,
                          matching: Callable[[dict[str, Any]], bool] = lambda _data: True,
                          ) -> envelope.Event:
    """The ticket's one lifecycle event of this type (and matching), waited for."""
    found = await read_topic(
        walk.pipeline.bootstrap, topics.EVENTS, until=1, within=30, settle=0.1,
        keep=lambda e: e.ticket_id == walk.ticket_id and e.type == f"ticket.{kind}"
        and matching(e.data))
    assert found, f"no ticket.{kind} event for {walk.ticket_id}"
    event, _record = found[-1]
    return event


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def assert_close(actual: str | None, expected: datetime) -> None:
    assert abs(at(actual) - expected) <= TOLERANCE, (actual, expected.isoformat())


async def report(walk: Walk, kind: str, department: str) -> datetime:
    response = await walk.router.post(
        f"/v1/tickets/{walk.ticket_id}/events", json={"type": kind},
        headers=walk.headers("department", department))
    assert response.status_code == 202, response.text
    return await changed_after(walk, kind)


async def changed_after(walk: Walk, kind: str) -> datetime:
    """When the report happened, as the event the router read says."""
    event = await lifecycle_event(walk, kind)
    walk.moments[kind] = at(event.data["occurred_at"])
    return walk.moments[kind]


async def deadlines_after(walk: Walk, moment: datetime) -> dict[str, Any]:
    event = await lifecycle_event(walk, "deadlines_changed",
                                  lambda data: at(data["occurred_at"]) == moment)
    return event.data


async def ticket_state(walk: Walk) -> dict[str, Any]:
    response = await walk.router.get(f"/v1/tickets/{walk.ticket_id}",
                                     headers=walk.headers("admin"))
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


# The steps, in order.

async def step_platform_registers(walk: Walk, receiver: Receiver) -> None:
    """The platform's endpoint, registered by an admin once the platform has its
    credential: its secret is shown once."""
    walk.headers("platform", PLATFORM)  # its credential, issued
    answer = await walk.router.post("/v1/webhooks/endpoints", headers=walk.headers("admin"),
                                    json={"platform": PLATFORM, "url": receiver.url})
    assert answer.status_code == 201, answer.text
    walk.receiver, walk.secret = receiver, answer.json()["secret"]


async def step_routed(walk: Walk) -> None:
    ticket = {"customer_id": unique("prospect"), "subject": "s", "body": "b", "channel": "web"}
    headers = {**walk.headers("platform", PLATFORM), "Idempotency-Key": unique("walk")}
    for _ in range(10):  # a 503 asks the platform to retry with the same key
        response = await walk.router.post("/v1/tickets", headers=headers, json=ticket)
        if response.status_code != 503:
            break
        await asyncio.sleep(1)
    assert response.status_code == 202, response.text
    walk.ticket_id = response.json()["ticket_id"]
    routed = (await lifecycle_event(walk, "routed")).data
    walk.routed_at = at(routed["occurred_at"])
    assert routed["department"] == "sales_support" and routed["platform"] == PLATFORM
    assert_close(routed["deadlines"]["first_response"], walk.routed_at + FIRST_RESPONSE)
    assert_close(routed["deadlines"]["resolution"], walk.routed_at + RESOLUTION)
    assert "next_response" not in routed["deadlines"]


async def step_warning(walk: Walk) -> None:
    warning = (await lifecycle_event(walk, "target_warning")).data
    assert (warning["target"], warning["department"]) == ("first_response", "sales_support")
    assert walk.routed_at is not None
    assert at(warning["occurred_at"]) >= walk.routed_at + FIRST_RESPONSE * 0.02
    assert_close(warning["deadlines"]["first_response"], walk.routed_at + FIRST_RESPONSE)


async def step_responded(walk: Walk) -> None:
    moment = await report(walk, "responded", "sales_support")
    changed = await deadlines_after(walk, moment)
    assert changed["outcomes"] == {"first_response#1": "met"}
    assert changed["deadlines"]["first_response"] is None
    assert walk.routed_at is not None
    assert_close(changed["deadlines"]["resolution"], walk.routed_at + RESOLUTION)


async def step_waiting_on_customer(walk: Walk) -> None:
    moment = await report(walk, "waiting_on_customer", "sales_support")
    changed = await deadlines_after(walk, moment)
    assert changed["paused"] is True
    assert changed["deadlines"]["resolution"] is None
    state = await ticket_state(walk)
    assert (state["status"], state["paused"]) == ("waiting_on_customer", True)
    assert state["trace"][-1]["clocks"] == "paused"


async def step_customer_replied(walk: Walk) -> None:
    # Another platform may not speak for this ticket's customer, nor learn that its id
    # is a ticket's: it gets the answer on an id of no ticket, issued at the same moment
    # (409 `not_routed_yet`, so lately issued), its id named.
    issued = ticket_ids.issued_at(walk.ticket_id)
    assert issued is not None
    unknown = ticket_ids.issue(issued)
    refused, nobodys = [await walk.router.post(
        f"/v1/tickets/{ticket_id}/customer-replies", json={},
        headers=walk.headers("platform", "other-desk")) for ticket_id in (walk.ticket_id,
                                                                          unknown)]
    assert refused.status_code == nobodys.status_code == 409, refused.text
    assert refused.json() == {key: value.replace(unknown, walk.ticket_id)
                              for key, value in nobodys.json().items()}
    response = await walk.router.post(f"/v1/tickets/{walk.ticket_id}/customer-replies",
                                      json={}, headers=walk.headers("platform", PLATFORM))
    assert response.status_code == 202, response.text
    moment = await changed_after(walk, "customer_replied")
    changed = await deadlines_after(walk, moment)
    assert changed["paused"] is False
    assert_close(changed["deadlines"]["next_response"], moment + NEXT_RESPONSE)
    assert walk.routed_at is not None
    spent = walk.moments["waiting_on_customer"] - walk.routed_at
    assert_close(changed["deadlines"]["resolution"], moment + RESOLUTION - spent)
    walk.moments["resolution_deadline"] = at(changed["deadlines"]["resolution"])


async def step_next_response(walk: Walk) -> None:
    moment = await report(walk, "responded", "sales_support")
    changed = await deadlines_after(walk, moment)
    assert changed["outcomes"] == {"next_response#1": "met"}
    assert changed["deadlines"]["next_response"] is None


async def step_transfer(walk: Walk) -> None:
    response = await walk.router.post(
        f"/v1/tickets/{walk.ticket_id}/transfer",
        json={"to_department": "customer_care", "reason": "needs a refund"},
        headers=walk.headers("department", "sales_support"))
    assert response.status_code == 202, response.text
    transferred = (await lifecycle_event(walk, "transferred")).data
    # Both open 24/7: the time spent and paused is kept, so the deadline stays.
    assert_close(transferred["deadlines"]["resolution"], walk.moments["resolution_deadline"])
    state = await ticket_state(walk)
    assert state["department"] == "customer_care"
    assert_close(state["deadlines"]["resolution"], walk.moments["resolution_deadline"])


async def step_resolved(walk: Walk) -> None:
    moment = await report(walk, "resolved", "customer_care")
    changed = await deadlines_after(walk, moment)
    assert changed["outcomes"] == {"resolution#1": "met"}
    state = await ticket_state(walk)
    assert state["status"] == "resolved" and state["deadlines"]["resolution"] is None
    paused = [clock["paused_seconds"] for clock in state["clocks"]
              if clock["target"] == "resolution"]
    expected = walk.moments["customer_replied"] - walk.moments["waiting_on_customer"]
    assert paused == [pytest.approx(expected.total_seconds(), abs=0.01)]


async def step_metrics(walk: Walk) -> None:
    """The metrics service counted each clock, per department and segment (its
    exposition sorts the labels)."""
    wanted = [
        r'routing_service_target_total\{department="sales_support",outcome="met",'
        r'segment="potential",target="first_response"\} [1-9]',
        r'routing_service_target_total\{department="sales_support",outcome="met",'
        r'segment="potential",target="next_response"\} [1-9]',
        r'routing_service_target_total\{department="customer_care",outcome="met",'
        r'segment="potential",target="resolution"\} [1-9]',
        r'routing_target_warnings_total\{department="sales_support",segment="potential",'
        r'target="first_response"\} [1-9]',
        r'routing_paused_seconds_count\{department="sales_support",segment="potential"\}'
        r' [1-9]']
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(100):
            text = (await client.get(f"{walk.pipeline.url('metrics')}/metrics")).text
            missing = [line for line in wanted if not re.search(line, text)]
            if not missing:
                return
            await asyncio.sleep(0.2)
    shown = [line for line in text.splitlines() if "target" in line or "paused" in line]
    raise AssertionError(f"metrics never showed {missing}; they show {shown}")


async def step_platform_was_told(walk: Walk) -> None:
    """Every lifecycle event of the ticket that platforms receive reached the platform's
    receiver once delivered, signed (verified by the standardwebhooks library), with the
    event's data: the routing, the warning, each report, every change of deadlines, the
    transfer and the resolution."""
    published = await read_topic(
        walk.pipeline.bootstrap, topics.EVENTS, until=10_000, within=15, settle=1.0,
        keep=lambda e: e.ticket_id == walk.ticket_id)
    expected = {catalog.delivery_id(event.id): (catalog.WEBHOOK_EVENTS[
        events.TicketEventType(event.type)], {**event.data,
                                               "correlation_id": event.correlation_id})
        for event, _record in published if event.type in catalog.WEBHOOK_EVENTS}
    assert {kind for kind, _data in expected.values()} >= {
        "ticket.routed", "ticket.target_warning", "ticket.responded",
        "ticket.waiting_on_customer", "ticket.deadlines_changed", "ticket.transferred",
        "ticket.resolved"}
    receiver = walk.receiver
    assert receiver is not None

    def delivered(r: Receiver) -> int:
        return len({item.headers.get("webhook-id") for item in r.received} & set(expected))

    await receiver.wait_for(len(expected), what=delivered)
    verified = receiver.verified(walk.secret)  # raises on a bad signature
    told = {item.headers["webhook-id"]: (body["type"], body["data"])
            for item, body in zip(receiver.received, verified, strict=True)}
    for delivery, (kind, data) in expected.items():
        told_kind, told_data = told[delivery]
        assert told_kind == kind
        # The event as published, less the platform's own name (and its type, which the
        # callback carries outside `data`), with the correlation id its record carries.
        assert told_data == {k: v for k, v in data.items()
                             if k not in ("platform", "type")}, kind
    # The deadlines the platform learnt at each step are those the walk checked.
    routed = next(data for kind, data in told.values() if kind == "ticket.routed")
    assert walk.routed_at is not None
    assert_close(routed["deadlines"]["first_response"], walk.routed_at + FIRST_RESPONSE)
    transferred = next(data for kind, data in told.values() if kind == "ticket.transferred")
    assert_close(transferred["deadlines"]["resolution"], walk.moments["resolution_deadline"])
    assert all(data["ticket_id"] == walk.ticket_id for _kind, data in told.values())


async def test_one_ticket_through_its_whole_service_level_lifecycle(
        lifecycle_pipeline: Pipeline, router: httpx.AsyncClient,
        webhook_receiver: Callable[..., Receiver]) -> None:
    walk = Walk(lifecycle_pipeline, router)
    await step_platform_registers(walk, webhook_receiver())
    await step_routed(walk)
    await step_warning(walk)
    await step_responded(walk)
    await step_waiting_on_customer(walk)
    await step_customer_replied(walk)
    await step_next_response(walk)
    await step_transfer(walk)
    await step_resolved(walk)
    await step_metrics(walk)
    await step_platform_was_told(walk)
