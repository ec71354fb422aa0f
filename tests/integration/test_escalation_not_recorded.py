"""An escalation published whose record the store refuses for a reason of the ticket's own
(not an outage, not a conflict): it ends there, counted and logged, with the ticket's
clocks marked as the escalation marks them (without clocks: marked escalated), and is not
published again at the next checks. It was published again every 15 minutes, for as long
as the store refused it (clock_watch.checked_again_later postponed it, and the next
check found the same notice owed): a callback and a lane copy each time. On the real
store (SQLite and PostgreSQL) and a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.core import kafka, topics
from services.core.events import TicketEventType
from services.core.settings import Settings
from services.router import clock_watch, priority, table_file
from services.router import service as router_service
from tests.conftest import TEST_ROUTING_TABLE, read_topic
from tests.integration.test_lifecycle_agreement import (  # noqa: F401
    ROUTED_AT,
    Stores,
    routed_to_public_sector,
    stores,
)
from tests.unit.test_outage import as_sqlalchemy_raises

DUE = ROUTED_AT + timedelta(hours=4)  # public_sector's first response, 4h


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[kafka.Publisher]:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS, *priority.lane_topics("key_accounts")])
    publisher = kafka.Publisher(settings, client_id="escalation-not-recorded")
    try:
        yield publisher
    finally:
        await publisher.close()


def failed_checks() -> float:
    return REGISTRY.get_sample_value("routing_router_clock_checks_failed_total",
                                     {"department": "public_sector"}) or 0.0


@pytest.mark.parametrize("clocks", [True, False], ids=["with_clocks", "without_clocks"])
async def test_a_published_escalation_the_store_refuses_is_published_once(
        stores: Stores, publisher: kafka.Publisher, kafka_bootstrap: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, clocks: bool) -> None:
    """The ticket's hand-over record refused as PostgreSQL refuses a value it cannot
    store (22P05, the ticket's own data), at every try; the watch every 15 minutes for an
    hour, its claim of a moment (as one long expired by the next check)."""
    table = table_file.load(TEST_ROUTING_TABLE)
    ticket_id, _ = await routed_to_public_sector(stores, table, clocks=clocks)
    refusal = as_sqlalchemy_raises(asyncpg.exceptions.UntranslatableCharacterError(
        "unsupported Unicode escape sequence"))
    recorded = stores.router.record_handover

    async def refused(poisoned: str, **given: Any) -> None:
        if poisoned == ticket_id:
            raise refusal
        await recorded(poisoned, **given)

    monkeypatch.setattr(stores.router, "record_handover", refused)
    failed = failed_checks()
    for check in range(5):
        await router_service.escalate_due(
            stores.router, publisher, table=table, queue_for=priority.queue_for,
            now=DUE + timedelta(seconds=2) + check * clock_watch.CHECK_AGAIN_AFTER_FAILURE,
            claim_for=timedelta(0))

    escalated = await read_topic(
        kafka_bootstrap, topics.EVENTS, until=1,
        keep=lambda event: event.ticket_id == ticket_id
        and event.type == TicketEventType.ESCALATED)
    assert len(escalated) == 1
    assert failed_checks() == failed + 1
    row = await stores.router.get(ticket_id)
    assert row is not None
    if clocks:  # its breach marked sent: nothing owed, none checked again for it
        assert row.next_clock_check is None or row.next_clock_check > DUE + timedelta(hours=1)
        assert row.service_clocks is not None
        [clock] = row.service_clocks["clocks"]
        assert clock["level"] == 1
    else:
        assert row.escalated
    # Not recorded: where the store had it, its trace as it was.
    assert row.department == "public_sector"
    assert [step["step"] for step in row.trace if step["step"] == "escalated"] == []
