"""A department's transfer or priority change asked just after its ticket's deadline,
before the clock watch sent the breach: the request itself escalates the ticket to the
department's `escalation_to` (the breach is that department's), then refuses the change
403, as it would have had the watch run first, but says why (`escalated_away`): which
deadline passed and when, that this request sent that breach first, and where the ticket
went, not the generic "acts for its own department only", which read as a credential's
fault. On the real store and broker, for a ticket with clocks and one without (routed
before migration 0010, escalated by the older check: escalation.escalate), which a
department's transfer moved first, to be escalated from there. Asked after the watch sent
the breach, the department it was escalated from is told the same (which deadline, when
it was escalated, to where), and a department that never held the ticket only the plain
403 `forbidden`."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.core import access, kafka, topics
from services.core.settings import Settings
from services.router import priority, table_file
from services.router import service as router_service
from services.router.routing import RoutingTable
from services.router.service import verdicts
from tests.conftest import TEST_ROUTING_TABLE
from tests.integration.test_lifecycle_agreement import (  # noqa: F401
    ROUTED_AT,
    Stores,
    routed_to_public_sector,
    stores,
)

PUBLIC_SECTOR = access.Principal("cred-public-sector", access.Role.DEPARTMENT,
                                 "public_sector")


async def routed_to_public_sector_with(stores: Stores, clocks: bool) -> str:  # noqa: F811
    """A government ticket routed to public_sector at ROUTED_AT (first response within
    4h), with clocks or without (routed before migration 0010); its id."""
    ticket_id, _ = await routed_to_public_sector(stores, table_file.load(TEST_ROUTING_TABLE),
                                                 clocks=clocks)
    routed = await stores.router.get(ticket_id)
    assert routed is not None and routed.department == "public_sector"
    return ticket_id


async def asked_by(principal: access.Principal, asked: str, ticket_id: str, *,
                   stores: Stores, publisher: kafka.Publisher,  # noqa: F811
                   at: datetime, table: RoutingTable | None = None) -> object:
    """`principal`'s transfer of the ticket to customer_care, or change of its priority
    to 1, asked at `at`: the use case's answer."""
    table = table or table_file.load(TEST_ROUTING_TABLE)
    if asked == "transfer":
        return await router_service.transfer(
            ticket_id, to_department="customer_care", reason="theirs",
            from_department=None, principal=principal, routed=stores.router,
            publisher=publisher, table=table, queue_for=priority.queue_for, now=at)
    return await router_service.change_priority(
        ticket_id, priority=1, reason="outage", principal=principal, routed=stores.router,
        publisher=publisher, table=table, now=at)


@pytest.mark.parametrize("clocks", [True, False], ids=["clocks", "no clocks"])
@pytest.mark.parametrize("asked", ["transfer", "priority"])
async def test_the_refusal_names_the_escalation_the_request_made(
        stores: Stores, kafka_bootstrap: str, asked: str, clocks: bool) -> None:  # noqa: F811
    ticket_id = await routed_to_public_sector_with(stores, clocks)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS, *priority.lane_topics("key_accounts"),
                                         *priority.lane_topics("customer_care")])
    publisher = kafka.Publisher(settings, client_id="transfer-refused-after-breach")
    deadline = ROUTED_AT + timedelta(hours=4)
    asked_at = deadline + timedelta(seconds=3)
    try:
        answer = await asked_by(PUBLIC_SECTOR, asked, ticket_id, stores=stores,
                                publisher=publisher, at=asked_at)
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


@pytest.mark.parametrize("clocks", [True, False], ids=["clocks", "no clocks"])
@pytest.mark.parametrize("asked", ["transfer", "priority"])
async def test_after_the_watchs_breach_the_department_left_is_told_the_same(
        stores: Stores, kafka_bootstrap: str, asked: str, clocks: bool) -> None:  # noqa: F811
    """The watch escalated the ticket at 13:00:02; public_sector asks at 13:00:03: told
    which deadline passed, when the ticket was escalated and to where (`escalated_away`),
    as its own request's breach is; customer_care, which never held it, the plain 403."""
    ticket_id = await routed_to_public_sector_with(stores, clocks)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS, *priority.lane_topics("key_accounts"),
                                         *priority.lane_topics("customer_care")])
    publisher = kafka.Publisher(settings, client_id="transfer-refused-after-watch")
    deadline = ROUTED_AT + timedelta(hours=4)
    escalated_at = deadline + timedelta(seconds=2)
    care = access.Principal("cred-customer-care", access.Role.DEPARTMENT, "customer_care")
    try:
        assert await router_service.escalate_due(
            stores.router, publisher, table=table_file.load(TEST_ROUTING_TABLE),
            queue_for=priority.queue_for, now=escalated_at) >= 1
        answers = [await asked_by(principal, asked, ticket_id, stores=stores,
                                  publisher=publisher, at=escalated_at + timedelta(seconds=1))
                   for principal in (PUBLIC_SECTOR, care)]
    finally:
        await publisher.close()
    row = await stores.router.get(ticket_id)
    assert row is not None and (row.department, row.priority) == ("key_accounts", 2)
    assert answers == [verdicts.Refused(
        router_service.Refusal.FORBIDDEN,
        f"the ticket was escalated at {escalated_at.isoformat()}, before this request: its"
        f" first_response deadline passed at {deadline.isoformat()}, unanswered,"
        " escalating it (level 1) from 'public_sector' to 'key_accounts'. The ticket is"
        " with 'key_accounts' now, and a department credential acts for its own"
        " department only: ask 'key_accounts' or an admin", "escalated_away"),
        verdicts.ACTS_FOR_OWN]
