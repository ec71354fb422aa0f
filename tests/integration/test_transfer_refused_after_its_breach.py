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

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from services.core import access, kafka, topics
from services.core.settings import Settings
from services.router import priority, table_file
from services.router import service as router_service
from services.router.routing import RoutingTable
from services.router.service import verdicts
from tests.conftest import TEST_ROUTING_TABLE, unique
from tests.integration.test_lifecycle_agreement import (  # noqa: F401
    ROUTED_AT,
    Stores,
    routed_to_public_sector,
    stores,
)

PUBLIC_SECTOR = access.Principal("cred-public-sector", access.Role.DEPARTMENT,
                                 "public_sector")
DEADLINE = ROUTED_AT + timedelta(hours=4)  # the ticket's first response's, at public_sector


@pytest.fixture(params=[True, False], ids=["clocks", "no clocks"])
async def ticket_id(request: pytest.FixtureRequest, stores: Stores) -> str:  # noqa: F811
    """A government ticket routed to public_sector at ROUTED_AT (first response within
    4h), with clocks or without (routed before migration 0010); its id."""
    ticket_id, _ = await routed_to_public_sector(stores, table_file.load(TEST_ROUTING_TABLE),
                                                 clocks=request.param)
    routed = await stores.router.get(ticket_id)
    assert routed is not None and routed.department == "public_sector"
    return ticket_id


@pytest.fixture(params=["transfer", "priority"])
def asked(request: pytest.FixtureRequest) -> str:
    """What the department asks: a transfer, or a change of priority."""
    return str(request.param)


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[kafka.Publisher]:
    """The router's publisher, on a broker with the topics the escalation and the
    transfer publish on."""
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS, *priority.lane_topics("key_accounts"),
                                         *priority.lane_topics("customer_care")])
    publisher = kafka.Publisher(settings, client_id=unique("transfer-refused-after-breach"))
    try:
        yield publisher
    finally:
        await publisher.close()


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
            held=stores.held,
            publisher=publisher, table=table, queue_for=priority.queue_for, now=at)
    return await router_service.change_priority(
        ticket_id, priority=1, reason="outage", principal=principal, routed=stores.router,
        held=stores.held, publisher=publisher, table=table, now=at)


async def test_the_refusal_names_the_escalation_the_request_made(
        stores: Stores, publisher: kafka.Publisher, ticket_id: str,  # noqa: F811
        asked: str) -> None:
    asked_at = DEADLINE + timedelta(seconds=3)
    answer = await asked_by(PUBLIC_SECTOR, asked, ticket_id, stores=stores,
                            publisher=publisher, at=asked_at)
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
        f" {DEADLINE.isoformat()}, unanswered, escalating it (level 1) from"
        " 'public_sector' to 'key_accounts'. The ticket is with 'key_accounts' now, and a"
        " department credential acts for its own department only: ask 'key_accounts' or"
        " an admin", "escalated_away")


async def test_after_the_watchs_breach_the_department_left_is_told_the_same(
        stores: Stores, publisher: kafka.Publisher, ticket_id: str,  # noqa: F811
        asked: str) -> None:
    """The watch escalated the ticket at 13:00:02; public_sector asks at 13:00:03: told
    which deadline passed, when the ticket was escalated and to where (`escalated_away`),
    as its own request's breach is; customer_care, which never held it, the plain 403."""
    escalated_at = DEADLINE + timedelta(seconds=2)
    care = access.Principal("cred-customer-care", access.Role.DEPARTMENT, "customer_care")
    assert await router_service.escalate_due(
        stores.router, publisher, table=table_file.load(TEST_ROUTING_TABLE),
        queue_for=priority.queue_for, now=escalated_at) >= 1
    answers = [await asked_by(principal, asked, ticket_id, stores=stores,
                              publisher=publisher, at=escalated_at + timedelta(seconds=1))
               for principal in (PUBLIC_SECTOR, care)]
    row = await stores.router.get(ticket_id)
    assert row is not None and (row.department, row.priority) == ("key_accounts", 2)
    assert answers == [verdicts.Refused(
        router_service.Refusal.FORBIDDEN,
        f"the ticket was escalated at {escalated_at.isoformat()}, before this request: its"
        f" first_response deadline passed at {DEADLINE.isoformat()}, unanswered,"
        " escalating it (level 1) from 'public_sector' to 'key_accounts'. The ticket is"
        " with 'key_accounts' now, and a department credential acts for its own"
        " department only: ask 'key_accounts' or an admin", "escalated_away"),
        verdicts.ACTS_FOR_OWN]
