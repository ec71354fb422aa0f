"""An escalation published whose record the store refuses for a reason of the ticket's own
(not an outage, not a conflict): it ends there, counted and logged, with the ticket's
clocks marked as the escalation marks them (without clocks: marked escalated), and is not
published again at the next checks. It was published again every 15 minutes, for as long
as the store refused it (clock_watch.checked_again_later postponed it, and the next
check found the same notice owed): a callback and a lane copy each time. On the real
store (SQLite and PostgreSQL) and a real broker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.core import kafka, topics
from services.core.events import TicketEventType
from services.core.settings import Settings
from services.router import clock_watch, ports, priority, table_file
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
    monkeypatch.setattr(stores.router, "record_handover",
                        refused_for(ticket_id, stores.router.record_handover))
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


def refused_for(ticket_id: str, store_method: Any) -> Any:
    """`store_method` as the store answers it for a value it cannot store (22P05, the
    ticket's own data) when it is about `ticket_id`, at every try."""
    async def refused(poisoned: str, *args: Any, **given: Any) -> None:
        if poisoned == ticket_id:
            raise as_sqlalchemy_raises(asyncpg.exceptions.UntranslatableCharacterError(
                "unsupported Unicode escape sequence"))
        await store_method(poisoned, *args, **given)
    return refused


@pytest.mark.parametrize("clocks", [True, False], ids=["with_clocks", "without_clocks"])
async def test_an_escalation_whose_end_the_store_refuses_too_is_checked_again_later(
        stores: Stores, publisher: kafka.Publisher, kafka_bootstrap: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        clocks: bool) -> None:
    """The record refused, and its end (the clocks marked; without clocks, the ticket
    marked escalated) too: checked again 15 minutes later, as a notice not published is,
    and so published again then; each check counted once and logged in one line, with
    the class of the record's error (the store's), not the watch's own Unrecorded."""
    table = table_file.load(TEST_ROUTING_TABLE)
    ticket_id, _ = await routed_to_public_sector(stores, table, clocks=clocks)
    monkeypatch.setattr(stores.router, "record_handover",
                        refused_for(ticket_id, stores.router.record_handover))
    end = "update_clocks" if clocks else "mark_escalated"
    monkeypatch.setattr(stores.router, end, refused_for(ticket_id, getattr(stores.router, end)))
    caplog.set_level(logging.ERROR, logger=clock_watch.__name__)
    failed = failed_checks()
    checks = [DUE + timedelta(seconds=2) + each * clock_watch.CHECK_AGAIN_AFTER_FAILURE
              for each in range(3)]
    for now in checks:
        await router_service.escalate_due(
            stores.router, publisher, table=table, queue_for=priority.queue_for, now=now,
            claim_for=timedelta(0))

    escalated = await read_topic(
        kafka_bootstrap, topics.EVENTS, until=len(checks),
        keep=lambda event: event.ticket_id == ticket_id
        and event.type == TicketEventType.ESCALATED)
    assert len(escalated) == len(checks)  # once at each check
    assert failed_checks() == failed + len(checks)
    lines = [line for line in caplog.records
             if getattr(line, "ticket_id", None) == ticket_id]
    assert [(line.getMessage(), getattr(line, "error_class", None)) for line in lines] \
        == [("a ticket's service-level notice was published, and its record and its end"
             " failed for a reason of the ticket's own; checked again later",
             "DBAPIError")] * len(checks)
    row = await stores.router.get(ticket_id)
    assert row is not None
    assert row.next_clock_check == checks[-1] + clock_watch.CHECK_AGAIN_AFTER_FAILURE


@pytest.mark.parametrize("clocks", [True, False], ids=["with_clocks", "without_clocks"])
async def test_an_ended_escalation_ends_its_claim(
        stores: Stores, publisher: kafka.Publisher,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, clocks: bool) -> None:
    """Ended in place of its record, the escalation leaves the ticket to the next
    hand-over at once, as its record would have: its claim (taken for the usual hold)
    ends with the end, and a department's transfer right after claims the ticket, rather
    than be told a hand-over is in flight until the claim expires."""
    table = table_file.load(TEST_ROUTING_TABLE)
    ticket_id, _ = await routed_to_public_sector(stores, table, clocks=clocks)
    monkeypatch.setattr(stores.router, "record_handover",
                        refused_for(ticket_id, stores.router.record_handover))
    await router_service.escalate_due(
        stores.router, publisher, table=table, queue_for=priority.queue_for,
        now=DUE + timedelta(seconds=2), claim_for=ports.HANDOVER_CLAIM)

    row = await stores.router.get(ticket_id)
    assert row is not None
    assert row.escalated or clocks  # ended
    assert row.handover_until is None
    assert await stores.router.claim_handover(row, hold=ports.HANDOVER_CLAIM) is not None


async def test_an_escalation_ended_after_another_hand_over_marks_nothing_of_it(
        stores: Stores, publisher: kafka.Publisher,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The escalation's claim expired, and another router's transfer claimed the ticket
    and moved it before the escalation's record was refused: its end marks nothing, so
    that the new department's clocks do not take this escalation's marks (its breach
    counted as escalated there)."""
    table = table_file.load(TEST_ROUTING_TABLE)
    ticket_id, _ = await routed_to_public_sector(stores, table, clocks=True)
    recorded = stores.router.record_handover
    before = await stores.router.get(ticket_id)
    assert before is not None and before.service_clocks is not None

    async def moved_then_refused(poisoned: str, **given: Any) -> None:
        if poisoned != ticket_id:
            await recorded(poisoned, **given)
            return
        # Another router's transfer, its claim taken once the escalation's expired.
        row = await stores.router.get(poisoned)
        assert row is not None
        other = await stores.router.claim_handover(row, hold=ports.HANDOVER_CLAIM)
        assert other is not None
        await recorded(poisoned, department="customer_care",
                       steps=[{"step": "transferred"}], ticket=None,
                       now=DUE + timedelta(seconds=3), claim=other)
        raise as_sqlalchemy_raises(asyncpg.exceptions.UntranslatableCharacterError(
            "unsupported Unicode escape sequence"))

    monkeypatch.setattr(stores.router, "record_handover", moved_then_refused)
    await router_service.escalate_due(
        stores.router, publisher, table=table, queue_for=priority.queue_for,
        now=DUE + timedelta(seconds=2), claim_for=timedelta(0))

    row = await stores.router.get(ticket_id)
    assert row is not None
    assert row.department == "customer_care"
    assert row.service_clocks == before.service_clocks  # as the transfer left them
