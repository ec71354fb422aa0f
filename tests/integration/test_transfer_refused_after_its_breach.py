"""A department's transfer or priority change asked just after its ticket's deadline,
before the clock watch sent the breach: the request itself escalates the ticket to the
department's `escalation_to` (the breach is that department's), then refuses the change
403, as it would have had the watch run first, but says why (`escalated_away`): which
deadline passed and when, that this request sent that breach first, and where the ticket
went, not the generic "acts for its own department only", which read as a credential's
fault. On the real store and broker, for a ticket with clocks and one without (routed
before migration 0010, escalated by the older check: escalation.escalate), which a
department's transfer moved first, to be escalated from there."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from services.core import access, kafka, tickets, topics
from services.core.settings import Settings
from services.router import ports, priority, table_file
from services.router import service as router_service
from services.router.service import verdicts
from tests.conftest import TEST_ROUTING_TABLE, unique
from tests.integration.test_lifecycle_agreement import ROUTED_AT, Stores, stores  # noqa: F401

PUBLIC_SECTOR = access.Principal("cred-public-sector", access.Role.DEPARTMENT,
                                 "public_sector")


@pytest.mark.parametrize("clocks", [True, False], ids=["clocks", "no clocks"])
@pytest.mark.parametrize("asked", ["transfer", "priority"])
async def test_the_refusal_names_the_escalation_the_request_made(
        stores: Stores, kafka_bootstrap: str, asked: str, clocks: bool) -> None:  # noqa: F811
    table = table_file.load(TEST_ROUTING_TABLE)
    ticket_id = unique("t")
    ticket = tickets.Ticket(ticket_id=ticket_id, customer_id="c-1", subject="s", body="b",
                            channel="web", received_at=ROUTED_AT, platform="helpdesk")
    first = router_service.route(ticket.with_segmentation(tickets.Segmentation(
        segment="government", rule="gov", rules_version="r1", customer_known=True,
        tier="existing")), table=table, load=ports.no_load, now=ROUTED_AT,
        event_id="e-1", correlation_id="corr-1")
    await stores.router.record_first_dispatches([
        first.dispatch if clocks else dataclasses.replace(first.dispatch, clocks=None)])
    routed = await stores.router.get(ticket_id)
    assert routed is not None and routed.department == "public_sector"
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS, *priority.lane_topics("key_accounts"),
                                         *priority.lane_topics("customer_care")])
    publisher = kafka.Publisher(settings, client_id="transfer-refused-after-breach")
    deadline = ROUTED_AT + timedelta(hours=4)
    asked_at = deadline + timedelta(seconds=3)
    try:
        if asked == "transfer":
            answer: object = await router_service.transfer(
                ticket_id, to_department="customer_care", reason="theirs",
                from_department=None, principal=PUBLIC_SECTOR, routed=stores.router,
                publisher=publisher, table=table, queue_for=priority.queue_for,
                now=asked_at)
        else:
            answer = await router_service.change_priority(
                ticket_id, priority=1, reason="outage", principal=PUBLIC_SECTOR,
                routed=stores.router, publisher=publisher, table=table, now=asked_at)
    finally:
        await publisher.close()
    row = await stores.router.get(ticket_id)
    assert row is not None and row.department == "key_accounts"  # escalated by the request
    assert row.priority == 2  # no priority change made
    assert [(step["step"], step["from"], step["to"]) for step in row.trace
            if step["step"] in ("escalated", "transferred")] == [
        ("escalated", "public_sector", "key_accounts")]
    # What the caller is told: its own ticket, escalated to key_accounts by its breach.
    assert answer == verdicts.Refused(
        router_service.Refusal.FORBIDDEN,
        f"this request, at {asked_at.isoformat()}, first sent the breach the ticket owed"
        " (the clock watch had not sent it yet): its first_response deadline passed at"
        f" {deadline.isoformat()}, unanswered, escalating it (level 1) from"
        " 'public_sector' to 'key_accounts'. The ticket is with 'key_accounts' now, and a"
        " department credential acts for its own department only: ask 'key_accounts' or"
        " an admin", "escalated_away")
