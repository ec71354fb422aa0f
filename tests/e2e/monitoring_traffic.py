"""The traffic Prometheus sees in tests/e2e/test_monitoring.py: real tickets and reports
over HTTP, the router's coming lifecycle events produced on tickets.events, one record no
stage can read, and the platform called back at its webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.core import envelope, events, kafka, topics
from services.core.settings import Settings
from tests.conftest import Pipeline
from tests.webhooks_receiver import Receiver


def lifecycle(ticket_id: str, kind: events.TicketEventType, at: datetime,
              **fields: Any) -> envelope.Event:
    return events.as_envelope(events.TicketEvent(ticket_id=ticket_id, type=kind,
                                                 occurred_at=at, **fields),
                              ticket_id, events.WRITTEN_BY[kind])


async def post_ticket(client: httpx.AsyncClient, router: str, customer: str) -> str:
    answer = await client.post(f"{router}/v1/tickets", json={
        "customer_id": customer, "subject": "Where is my invoice?", "body": "Hello",
        "channel": "email", "kind": "question"})
    assert answer.status_code == 202, answer.text
    ticket_id: str = answer.json()["ticket_id"]
    return ticket_id


async def report(client: httpx.AsyncClient, router: str, ticket_id: str, kind: str) -> None:
    answer = await client.post(f"{router}/v1/tickets/{ticket_id}/events", json={"type": kind})
    assert answer.status_code == 202, answer.text


async def transfer(client: httpx.AsyncClient, router: str, ticket_id: str,
                   department: str) -> None:
    """Hand a ticket on, once the router has routed it (404 until then)."""
    for _ in range(100):
        answer = await client.post(f"{router}/v1/tickets/{ticket_id}/transfer", json={
            "to_department": department, "reason": "needs the business desk"})
        if answer.status_code != 404:
            break
        await asyncio.sleep(0.2)
    assert answer.status_code == 202, answer.text


@contextlib.asynccontextmanager
async def traffic_on(pipeline: Pipeline) -> AsyncIterator[None]:
    """Real tickets and reports over HTTP; the router's coming events on tickets.events;
    one record no stage can read; the platform called back at its webhook receiver."""
    router = pipeline.url("router")
    now = datetime.now(UTC)
    receiver = Receiver()
    receiver.start()
    # Tickets come from a support platform; an admin reports and transfers for any
    # department.
    async with httpx.AsyncClient(timeout=10, headers=pipeline.headers()) as client, \
            httpx.AsyncClient(timeout=10, headers=pipeline.headers("admin")) as admin:
        registered = await admin.post(f"{router}/v1/webhooks/endpoints",
                                      json={"platform": "tests", "url": receiver.url})
        assert registered.status_code == 201, registered.text
        met, late, unanswered, gov = [await post_ticket(client, router, "gov-ministry-1")
                                      for _ in range(4)]
        escalated, transferred = [await post_ticket(client, router, "ind-vip-1")
                                  for _ in range(2)]
        prospect, business = [await post_ticket(client, router, customer)
                              for customer in ("never-seen-42", "org-acme-1")]
        await post_ticket(client, router, "ind-loyal-1")
        await transfer(admin, router, transferred, "business_desk")
        coming = [
            lifecycle(ticket, events.TicketEventType.ROUTED, now, department="public_sector",
                      segment="government", reason="route", first_response_deadline=deadline)
            for ticket, deadline in ((met, now + timedelta(hours=1)),
                                     (late, now - timedelta(minutes=2)),
                                     (unanswered, now - timedelta(minutes=2)))]
        coming.append(lifecycle(escalated, events.TicketEventType.ESCALATED, now,
                                department="public_sector", from_department="key_accounts",
                                segment="key_accounts", reason="escalation"))
        # The router's clock watch: a warning, then both escalation levels of a target.
        coming.append(lifecycle(unanswered, events.TicketEventType.TARGET_WARNING, now,
                                department="public_sector", segment="government",
                                target="first_response"))
        coming += [lifecycle(unanswered, events.TicketEventType.ESCALATED,
                             now + timedelta(seconds=level), department="public_sector",
                             from_department="public_sector", segment="government",
                             reason="escalation", target="first_response", level=level)
                   for level in (1, 2)]
        producer = kafka.producer(Settings(kafka_bootstrap_servers=pipeline.bootstrap),
                                  client_id="e2e-monitoring")
        await producer.start()
        try:
            for event in coming:
                await (await kafka.send(producer, envelope.encode(
                    topics.EVENTS, event.ticket_id or "", event)))
            await producer.send_and_wait(topics.EVENTS, b"not a cloud event", key=b"e2e")
        finally:
            await producer.stop()
        for ticket in (met, late, gov, escalated, prospect, business):
            await report(admin, router, ticket, "responded")
        # A pause: the department waits on the customer, the platform reports the reply.
        await report(admin, router, gov, "waiting_on_customer")
        answer = await client.post(f"{router}/v1/tickets/{gov}/customer-replies", json={})
        assert answer.status_code == 202, answer.text
        for ticket in (business, prospect):
            await report(admin, router, ticket, "picked_up")
            await report(admin, router, ticket, "resolved")
    await receiver.wait_for(1)  # the routing of a ticket, at least
    receiver.verified(registered.json()["secret"])
    try:
        yield
    finally:
        receiver.stop()
