"""Callbacks through the whole pipeline: a platform's endpoint registered over the
router's admin API; a ticket the platform posts is routed, transferred, responded to and
resolved; the platform's receiver gets each step, signed, verified with the
standardwebhooks library, and nothing about another platform's tickets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from services.webhooks import catalog
from tests.conftest import Pipeline
from tests.webhooks_receiver import Receiver


async def routed(client: httpx.AsyncClient, ticket_id: str) -> None:
    for _ in range(300):  # bounded: the router's state says it was routed
        if (await client.get(f"/v1/tickets/{ticket_id}")).status_code == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{ticket_id} not routed within 30 s")


async def test_the_platform_is_told_each_step_of_its_ticket(
        pipeline: Pipeline, webhook_receiver: Callable[..., Receiver]) -> None:
    receiver = webhook_receiver()
    async with httpx.AsyncClient(base_url=pipeline.url("router"), timeout=30,
                                 headers=pipeline.headers("admin")) as admin, \
            httpx.AsyncClient(base_url=pipeline.url("router"), timeout=30,
                              headers=pipeline.headers("platform", "e2e-desk")) as desk, \
            httpx.AsyncClient(base_url=pipeline.url("router"), timeout=30,
                              headers=pipeline.headers("platform", "silent-desk")) as other:
        answer = await admin.post("/v1/webhooks/endpoints",
                                  json={"platform": "e2e-desk", "url": receiver.url})
        assert answer.status_code == 201, answer.text
        secret = answer.json()["secret"]
        ticket = {"customer_id": "gov-ministry-1", "subject": "Invoice", "body": "Where?",
                  "channel": "email", "kind": "question"}
        assert (await other.post("/v1/tickets", json=ticket)).status_code == 202
        ticket_id = (await desk.post("/v1/tickets", json=ticket)).json()["ticket_id"]
        await routed(admin, ticket_id)
        transferred = await admin.post(f"/v1/tickets/{ticket_id}/transfer", json={
            "to_department": "business_desk", "reason": "needs the business desk"})
        assert transferred.status_code == 202, transferred.text
        for kind in ("responded", "resolved"):
            reported = await admin.post(f"/v1/tickets/{ticket_id}/events", json={"type": kind})
            assert reported.status_code == 202, reported.text

        wanted = {"ticket.routed", "ticket.transferred", "ticket.responded",
                  "ticket.resolved"}
        await receiver.wait_for(len(wanted), what=lambda r: len(wanted & {
            payload["type"] for payload in r.verified(secret)}))
        payloads = receiver.verified(secret)
        steps = {payload["type"]: payload["data"] for payload in payloads}
        # Each step, and the clocks' notices between them (ticket.deadlines_changed).
        assert wanted <= set(steps) <= set(catalog.WEBHOOK_EVENTS.values())
        # Only its own ticket: not the one another platform posted just before.
        assert {payload["data"]["ticket_id"] for payload in payloads} == {ticket_id}
        first = steps["ticket.routed"]
        assert first["department"] == "public_sector" and "first_response_deadline" in first
        assert (steps["ticket.transferred"]["department"],
                steps["ticket.transferred"]["from_department"]) == (
            "business_desk", "public_sector")
        assert (await admin.get("/v1/webhooks/dead-letters")).json() == {
            "dead_letters": [], "next": None}

