"""README, "How it works": ticket records are keyed by the customer's id (one customer's
tickets stay in order, on one partition of each topic), lifecycle events by the ticket's
id; so on every topic a ticket travels, from every writer: the intake, the segmenter and
the router's routing, transfer, escalation and reports."""

from __future__ import annotations

from datetime import timedelta

from services.core import events, topics
from services.router import service
from services.segmenter import worker
from tests.unit.router_fakes import Published, Wired, wired
from tests.unit.test_router_accept import accept
from tests.unit.test_router_use_cases import ADMIN, NOW, PUBLIC_SECTOR, routed_ticket, segmented
from tests.unit.test_segmented_ticket import RULES, lookup, received

CUSTOMER, TICKET = "c-1", "t-1"


def keys(published: list[Published]) -> list[tuple[str, str]]:
    """Each record's topic, with what it is keyed by: the customer or the ticket."""
    return [(p.topic if p.topic == topics.EVENTS else "ticket",
             "customer" if p.key == CUSTOMER else "ticket" if p.key == p.event.ticket_id
             else p.key) for p in published]


async def test_the_intake_keys_the_ticket_by_its_customer_its_event_by_its_id() -> None:
    router = wired()
    await accept(router, ticket_id=TICKET)
    assert keys(router.publisher.published) == [("ticket", "customer"),
                                                (topics.EVENTS, "ticket")]
    assert router.publisher.published[0].topic == topics.INCOMING


async def test_the_segmenter_keys_the_segmented_ticket_by_its_customer() -> None:
    stage = worker.SegmentTicket(lookup=lookup, current_rules=lambda: RULES)
    records = await stage(received(TICKET, customer_id=CUSTOMER))
    assert [(r.topic, r.key.decode()) for r in records] == [
        (topics.SEGMENTED, CUSTOMER), (topics.EVENTS, TICKET)]


async def test_the_router_keys_the_queued_ticket_by_its_customer() -> None:
    router = wired()
    first = service.route(segmented(TICKET), table=router.router.table.current,
                          load=router.router.load, now=NOW, event_id="e-1",
                          correlation_id="corr-1")
    assert [(output.topic, output.key) for output in first.outputs] == [
        ("dept.public_sector.high", CUSTOMER), (topics.EVENTS, TICKET)]


async def handed_on(router: Wired, how: str) -> None:
    if how == "transfer":
        await service.transfer(
            TICKET, to_department="business_desk", reason="needs the desk",
            from_department=None, principal=ADMIN, routed=router.routed, held=router.held,
            publisher=router.publisher, table=router.router.table.current,
            queue_for=router.router.queue_for, now=NOW + timedelta(hours=1))
    else:
        await service.escalate_due(router.routed, router.publisher,
                                   table=router.router.table.current,
                                   queue_for=router.router.queue_for,
                                   now=NOW + timedelta(hours=5))


async def test_a_transfer_and_an_escalation_key_the_ticket_by_its_customer() -> None:
    for how in ("transfer", "escalation"):
        router = wired()
        routed_ticket(router, clocks=False)
        await handed_on(router, how)
        assert keys(router.publisher.published) == [("ticket", "customer"),
                                                    (topics.EVENTS, "ticket")], how


async def test_a_departments_report_is_keyed_by_its_ticket() -> None:
    router = wired()
    routed_ticket(router)
    await service.record_report(
        TICKET, events.TicketEventType.RESPONDED, department=None, occurred_at=None,
        principal=PUBLIC_SECTOR, correlation_id=None, routed=router.routed, held=router.held,
        publisher=router.publisher, table=router.router.table.current, now=NOW + timedelta(hours=1))
    assert keys(router.publisher.published) == [(topics.EVENTS, "ticket")]
