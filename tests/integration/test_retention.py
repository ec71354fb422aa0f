"""Retention and erasure in a real SQL store (SQLite and PostgreSQL): the purge deletes
ticket states and traces, timelines and idempotency keys past their retention, in
chunks, and nothing younger; the router's and the metrics service's purge jobs, as their
apps run them, purge every table with a retention, each table once; erasing a customer
removes their personal data from every table, and a ticket of theirs routed after it
(still in Kafka then) is not kept if it was received before it; migration 0007 finds the
customer of tickets routed before it."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import kafka, migrate, retention, topics
from services.core.settings import Settings
from services.metrics import bootstrap as metrics_bootstrap
from services.metrics.store import TimelineRow, TimelineStore
from services.metrics.timeline import Timeline
from services.router import bootstrap as router_bootstrap
from services.router import erasures
from services.router.intake_keys import IntakeKeys
from services.router.models import (
    ErasedCustomerRow,
    HeldTicketRow,
    IntakeKeyRow,
    RoutedTicketRow,
)
from services.router.store import Dispatch, RoutedTickets
from services.segmenter import erasure
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerFeaturesRow, CustomerRow, PurchaseRow
from services.segmenter.store import CustomerStore
from services.webhooks import models, outbox_store
from services.webhooks.models import WebhookDeliveryRow
from tests.migrated import written_at

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ANNA = "c-7781"
KEEP = retention.Retention.of_days(ticket_states=90, timelines=400, idempotency_keys=7)


def dispatch(ticket_id: str, *, at: datetime, customer_id: str = "c-other",
             body: str = "where is my order?",
             received_at: datetime | None = None) -> Dispatch:
    payload = {"ticket_id": ticket_id, "customer_id": customer_id,
               "subject": "a question", "body": body}
    return Dispatch(ticket_id=ticket_id, department="customer_care", segment="consumer",
                    priority=3, deadline=at + timedelta(hours=4), steps=[], payload=payload,
                    at=at, event_id=f"e-{ticket_id}", customer_id=customer_id,
                    received_at=received_at)


async def count(sessions: async_sessionmaker[AsyncSession], row: type[Any],
                *where: Any) -> int:
    async with sessions() as session:
        return int((await session.execute(
            select(func.count()).select_from(row).where(*where))).scalar_one())


async def remaining(sessions: async_sessionmaker[AsyncSession], row: type[Any]) -> set[str]:
    key = {RoutedTicketRow: RoutedTicketRow.ticket_id, TimelineRow: TimelineRow.ticket_id,
           IntakeKeyRow: IntakeKeyRow.idempotency_key,
           WebhookDeliveryRow: WebhookDeliveryRow.delivery_id,
           ErasedCustomerRow: ErasedCustomerRow.customer_id,
           HeldTicketRow: HeldTicketRow.ticket_id}[row]
    async with sessions() as session:
        return set((await session.scalars(select(key))).all())


class TestPurge:
    async def test_rows_past_retention_go_in_chunks_and_younger_ones_stay(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        routed, keys, timelines = RoutedTickets(sessions), IntakeKeys(sessions), \
            TimelineStore(sessions)
        old_state, young_state = NOW - timedelta(days=91), NOW - timedelta(days=89)
        await routed.record_first_dispatches(
            [dispatch(f"old-{n}", at=old_state) for n in range(5)]
            + [dispatch("young", at=young_state)])
        for n in range(5):
            await keys.claim(f"k-old-{n}", fingerprint="f", ticket_id=f"old-{n}",
                             now=NOW - timedelta(days=8))
        await keys.claim("k-young", fingerprint="f", ticket_id="young",
                         now=NOW - timedelta(days=6))
        async with sessions() as session, session.begin():
            for n in range(5):
                await timelines.save(session, Timeline(
                    ticket_id=f"old-{n}", routed_at=NOW - timedelta(days=401)))
            await timelines.save(session, Timeline(
                ticket_id="never-routed", received_at=NOW - timedelta(days=402)))
            await timelines.save(session, Timeline(
                ticket_id="young", routed_at=NOW - timedelta(days=399)))

        deleted = await retention.purge_past_retention(
            {"routed_tickets": routed, "intake_keys": keys, "ticket_timelines": timelines},
            retention=KEEP, now=NOW, chunk=2)

        assert deleted == {"routed_tickets": 5, "intake_keys": 5, "ticket_timelines": 6}
        assert await remaining(sessions, RoutedTicketRow) == {"young"}
        assert await remaining(sessions, IntakeKeyRow) == {"k-young"}
        assert await remaining(sessions, TimelineRow) == {"young"}

    async def test_a_purge_with_nothing_past_retention_deletes_nothing(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        routed = RoutedTickets(sessions)
        await routed.record_first_dispatches([dispatch("fresh", at=NOW)])

        deleted = await retention.purge_past_retention(
            {"routed_tickets": routed}, retention=KEEP, now=NOW, chunk=1)

        assert deleted == {"routed_tickets": 0}
        assert await remaining(sessions, RoutedTicketRow) == {"fresh"}


async def old_and_young_rows_in_every_table(sessions: async_sessionmaker[AsyncSession],
                                            now: datetime) -> None:
    """In each table with a retention (the defaults: states and callbacks 90 days,
    timelines 400, keys 7, erasures 37, tickets held as dead letters 30), rows `old-*`
    just past it and `young` just within it."""
    await RoutedTickets(sessions).record_first_dispatches(
        [dispatch("old-1", at=now - timedelta(days=91)),
         dispatch("young", at=now - timedelta(days=89))])
    keys = IntakeKeys(sessions)
    await keys.claim("old-1", fingerprint="f", ticket_id="old-1", now=now - timedelta(days=8))
    await keys.claim("young", fingerprint="f", ticket_id="young", now=now - timedelta(days=6))
    async with sessions() as session, session.begin():
        await TimelineStore(sessions).save(session, Timeline(
            ticket_id="old-1", routed_at=now - timedelta(days=401)))
        await TimelineStore(sessions).save(session, Timeline(
            ticket_id="young", routed_at=now - timedelta(days=399)))
    deliveries = outbox_store.Deliveries(sessions)
    await deliveries.enqueue([outbox_store.Outgoing(delivery_id, "desk", "ticket.routed",
                                                      "t", "{}")
                              for delivery_id in ("old-1", "old-pending", "young")])
    for delivery_id in ("old-1", "young"):
        await deliveries.record_attempt(delivery_id, status=models.DELIVERED,
                                        attempts=1, next_attempt_at=now, error=None)
    async with sessions() as session, session.begin():
        for delivery_id, age in (("old-1", 91), ("old-pending", 91), ("young", 89)):
            await session.execute(update(WebhookDeliveryRow).where(
                WebhookDeliveryRow.delivery_id == delivery_id).values(
                updated_at=now - timedelta(days=age)))
        session.add_all([ErasedCustomerRow(customer_id="old-1", erased_at=now - timedelta(days=38)),
                         ErasedCustomerRow(customer_id="young",
                                           erased_at=now - timedelta(days=36))])
        # Tickets held as dead letters: forgotten once Kafka dropped the dead letter (30
        # days), which nothing can replay then. Tickets never routed (the purge of a
        # routed ticket's state forgets it held too: test_held_tickets.py).
        session.add_all([HeldTicketRow(ticket_id=ticket_id, dead_letter_id="0:1",
                                       stage="router", error_class="Unprocessable",
                                       held_at=now - timedelta(days=age))
                         for ticket_id, age in (("old-held", 31), ("young-held", 29))])


class TestEachServicesPurge:
    """The jobs the router's and the metrics service's apps run every
    RETENTION_PURGE_INTERVAL_SECONDS (each service's bootstrap.purge_past_retention),
    against one store: together they purge every table with a retention, once."""

    async def test_the_two_jobs_purge_every_table_with_a_retention_once(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        now, settings = datetime.now(UTC), Settings(retention_purge_chunk=1)
        await old_and_young_rows_in_every_table(sessions, now)

        by_router = await router_bootstrap.purge_past_retention(settings, sessions, now=now)
        by_metrics = await metrics_bootstrap.purge_past_retention(settings, sessions,
                                                                  now=now)

        assert by_router == {"routed_tickets": 1, "intake_keys": 1, "webhook_deliveries": 1,
                             "erased_customers": 1, "held_tickets": 1}
        assert by_metrics == {"ticket_timelines": 1}
        assert await remaining(sessions, RoutedTicketRow) == {"young"}
        assert await remaining(sessions, IntakeKeyRow) == {"young"}
        assert await remaining(sessions, TimelineRow) == {"young"}
        assert await remaining(sessions, WebhookDeliveryRow) == {"old-pending", "young"}
        assert await remaining(sessions, ErasedCustomerRow) == {"young"}
        assert await remaining(sessions, HeldTicketRow) == {"young-held"}

    async def test_every_table_with_a_retention_is_in_the_schema_and_one_jobs(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        now, settings = datetime.now(UTC), Settings()

        by_router = await router_bootstrap.purge_past_retention(settings, sessions, now=now)
        by_metrics = await metrics_bootstrap.purge_past_retention(settings, sessions,
                                                                  now=now)

        async with sessions() as session:
            schema = set(await session.run_sync(
                lambda sync: inspect(sync.connection()).get_table_names()))
        with_a_retention = set(retention.of_settings(settings).cutoffs(now))
        assert with_a_retention <= schema
        assert not set(by_router) & set(by_metrics)
        assert set(by_router) | set(by_metrics) == with_a_retention


async def a_customer_with_tickets(sessions: async_sessionmaker[AsyncSession],
                                  customer_id: str) -> None:
    async with sessions() as session, session.begin():
        session.add(CustomerRow(customer_id=customer_id, customer_type="individual",
                                name="Anna de Vries", email="anna@example.org",
                                birth_date=date(1980, 5, 1), attributes={}))
    async with sessions() as session, session.begin():
        session.add(CustomerFeaturesRow(customer_id=customer_id, computed_at=NOW))
        for amount in (10, 20):
            session.add(PurchaseRow(customer_id=customer_id, amount=amount, currency="EUR",
                                    purchased_at=NOW))
    routed = RoutedTickets(sessions)
    await routed.record_first_dispatches([
        dispatch("t-anna-1", at=NOW, customer_id=customer_id,
                 body="I now live at Keizersgracht 1"),
        dispatch("t-anna-2", at=NOW, customer_id=customer_id),
        dispatch("t-bert-1", at=NOW, customer_id="bert")])
    keys = IntakeKeys(sessions)
    await keys.claim("key-anna", fingerprint="f", ticket_id="t-anna-1", now=NOW)
    await keys.claim("key-bert", fingerprint="f", ticket_id="t-bert-1", now=NOW)
    async with sessions() as session, session.begin():
        await TimelineStore(sessions).save(session, Timeline(ticket_id="t-anna-1",
                                                             routed_at=NOW))
        session.add(WebhookDeliveryRow(
            delivery_id="d-anna-1", platform="desk", event_type="ticket.routed",
            ticket_id="t-anna-1", body='{"ticket_id": "t-anna-1", "segment": "consumer"}',
            status="delivered", attempts=1, next_attempt_at=NOW, created_at=NOW,
            updated_at=NOW))
        # A ticket of theirs a stage dead-lettered: ids, a stage, a platform and a time.
        session.add(HeldTicketRow(ticket_id="t-anna-3", dead_letter_id="0:7",
                                  stage="segmenter", error_class="Unprocessable",
                                  held_at=NOW, platform="desk"))


def customer_store(sessions: async_sessionmaker[AsyncSession]) -> CustomerStore:
    return CustomerStore(sessions, cache=CustomerCache(max_customers=10, ttl_seconds=60))


class TestErasure:
    async def test_erasing_a_customer_removes_their_data_from_every_table(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await a_customer_with_tickets(sessions, ANNA)

        erased = await erasure.erase_customer(customer_store(sessions), ANNA)

        assert (erased.customer, erased.purchases, erased.tickets,
                erased.idempotency_keys) == (True, 2, 2, 1)
        assert await count(sessions, CustomerRow, CustomerRow.customer_id == ANNA) == 0
        assert await count(sessions, PurchaseRow, PurchaseRow.customer_id == ANNA) == 0
        assert await count(sessions, CustomerFeaturesRow,
                           CustomerFeaturesRow.customer_id == ANNA) == 0
        assert await remaining(sessions, RoutedTicketRow) == {"t-bert-1"}
        assert await remaining(sessions, IntakeKeyRow) == {"key-bert"}

    async def test_no_table_holds_the_customers_personal_data_afterwards(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await a_customer_with_tickets(sessions, ANNA)

        await erasure.erase_customer(customer_store(sessions), ANNA)

        dumps = await every_table(sessions)
        for personal in ("Anna de Vries", "anna@example.org", "1980", "Keizersgracht"):
            assert [table for table, dump in dumps.items() if personal in dump] == []
        # Their id alone, where the erasure is remembered.
        assert [table for table, dump in dumps.items() if ANNA in dump] == \
            ["erased_customers"]

    async def test_what_stays_of_their_tickets_is_what_the_answer_says_is_kept(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await a_customer_with_tickets(sessions, ANNA)

        await erasure.erase_customer(customer_store(sessions), ANNA)

        dumps = await every_table(sessions)
        left = {table for table, dump in dumps.items()
                if "t-anna-" in dump or ANNA in dump}
        assert left == set(erasure.KEPT)
        assert await remaining(sessions, TimelineRow) == {"t-anna-1"}

    async def test_a_customer_unknown_to_the_store_still_has_their_tickets_erased(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await RoutedTickets(sessions).record_first_dispatches(
            [dispatch("t-walk-in", at=NOW, customer_id="walk-in")])

        erased = await erasure.erase_customer(customer_store(sessions), "walk-in")

        assert erased.found and not erased.customer and erased.tickets == 1
        assert await remaining(sessions, RoutedTicketRow) == set()

    async def test_erasing_nobody_finds_nothing_and_is_remembered_all_the_same(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        erased = await erasure.erase_customer(customer_store(sessions), "nobody")

        assert not erased.found
        # Their tickets may not have reached the router yet.
        assert await remaining(sessions, ErasedCustomerRow) == {"nobody"}

    async def test_the_answer_says_what_kafka_keeps_until_when(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await a_customer_with_tickets(sessions, ANNA)

        answer = (await erasure.erase_customer(customer_store(sessions), ANNA)).answer()

        assert answer["erased"] == {"customer": True, "purchases": 2, "tickets": 2,
                                    "idempotency_keys": 1}
        in_kafka = {item["topic"]: item["retention_days"]
                    for item in answer["kafka_until_retention"]}
        assert in_kafka[topics.INCOMING] == kafka.retention_days(topics.INCOMING) == 7
        assert in_kafka[topics.SEGMENTED] == 7
        assert in_kafka["dept.<department>[.high|.low]"] == \
            kafka.retention_days("dept.customer_care.high") == 14
        assert in_kafka[topics.EVENTS] == in_kafka[topics.DEAD_LETTERS] == 30


async def every_table(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Each table of the schema, as text: a table added later is read too."""
    dumps: dict[str, str] = {}
    async with sessions() as session:
        for table in migrate.metadata().sorted_tables:
            dumps[table.name] = " ".join(
                str(row) for row in (await session.execute(table.select())).all())
    assert {"customers", "routed_tickets", "webhook_deliveries",
            "erased_customers"} <= set(dumps)
    return dumps


async def erased_at(sessions: async_sessionmaker[AsyncSession], customer_id: str) -> datetime:
    async with sessions() as session:
        at = await session.get(ErasedCustomerRow, customer_id)
    assert at is not None
    return at.erased_at


class TestTicketsInKafkaAtTheErasure:
    """A ticket of an erased customer still on its way (or a dead letter replayed) when
    the erasure ran is routed after it: the router does not keep it if it was received
    before the erasure."""

    async def test_a_ticket_received_before_the_erasure_is_not_kept_one_after_is(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await erasure.erase_customer(customer_store(sessions), ANNA)
        erased = await erased_at(sessions, ANNA)
        routed_at = erased + timedelta(minutes=1)

        await RoutedTickets(sessions).record_first_dispatches([
            dispatch("t-in-flight", at=routed_at, customer_id=ANNA,
                     received_at=erased - timedelta(seconds=1), body="Keizersgracht 1"),
            dispatch("t-at-erasure", at=routed_at, customer_id=ANNA, received_at=erased),
            dispatch("t-new-contact", at=routed_at, customer_id=ANNA,
                     received_at=erased + timedelta(seconds=1)),
            dispatch("t-bert", at=routed_at, customer_id="bert",
                     received_at=erased - timedelta(seconds=1))])

        assert await remaining(sessions, RoutedTicketRow) == {"t-new-contact", "t-bert"}
        assert "Keizersgracht" not in " ".join((await every_table(sessions)).values())

    async def test_a_routing_kept_through_an_outage_is_not_written_if_forgotten(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        routed = RoutedTickets(sessions)
        await erasure.erase_customer(customer_store(sessions), ANNA)
        erased = await erased_at(sessions, ANNA)

        await routed.record_kept_dispatches([
            dispatch("t-in-flight", at=erased + timedelta(minutes=1), customer_id=ANNA,
                     received_at=erased - timedelta(minutes=1)),
            dispatch("t-bert", at=erased, customer_id="bert")])

        assert await remaining(sessions, RoutedTicketRow) == {"t-bert"}
        # A report on it gets the answer for a ticket the router does not know.
        assert await routed.record_report("t-in-flight", "ticket.picked_up",
                                          erased + timedelta(minutes=2)) is None

    async def test_a_second_erasure_forgets_the_tickets_received_since_the_first(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        await erasure.erase_customer(customer_store(sessions), ANNA)
        first = await erased_at(sessions, ANNA)
        await erasure.erase_customer(customer_store(sessions), ANNA)
        second = await erased_at(sessions, ANNA)
        between = first + (second - first) / 2

        await RoutedTickets(sessions).record_first_dispatches([
            dispatch("t-between", at=second, customer_id=ANNA, received_at=between)])

        assert second > first
        assert await remaining(sessions, RoutedTicketRow) == set()

    async def test_an_erasure_meeting_a_batch_being_written_deletes_its_tickets(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """The batch's lookup found no erasure; the erasure runs before the batch's
        write commits: it waits for it, then deletes what it wrote."""
        async with sessions() as session, session.begin():
            assert await erasures.erased_at(session, {ANNA}) == {}
            erasing = asyncio.create_task(
                erasure.erase_customer(customer_store(sessions), ANNA))
            await asyncio.sleep(0.5)  # a chance to run as far as it can
            session.add(RoutedTicketRow(
                ticket_id="t-racing", department="customer_care", segment="consumer",
                status="routed", trace=[], payload={"body": "Keizersgracht 1"},
                updated_at=NOW, customer_id=ANNA))
        erased = await erasing

        assert erased.tickets == 1
        assert await remaining(sessions, RoutedTicketRow) == set()

    async def test_erasures_are_remembered_until_kafka_holds_no_ticket_before_them(
            self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session, session.begin():
            session.add(ErasedCustomerRow(customer_id="c-old",
                                          erased_at=NOW - timedelta(days=38)))
            session.add(ErasedCustomerRow(customer_id="c-recent",
                                          erased_at=NOW - timedelta(days=36)))

        deleted = await retention.purge_past_retention(
            {"erased_customers": erasures.ErasedCustomers(sessions)}, retention=KEEP,
            now=NOW, chunk=1)

        assert deleted == {"erased_customers": 1}
        assert await remaining(sessions, ErasedCustomerRow) == {"c-recent"}


class TestMigration:
    async def test_tickets_routed_before_0007_get_their_customer_from_their_copy(
            self, empty_database_url: str) -> None:
        async with written_at(
                empty_database_url, "0006",
                "INSERT INTO routed_tickets (ticket_id, department, segment, status,"
                " escalated, trace, payload, updated_at) VALUES ('t-1', 'care',"
                " 'consumer', 'routed', false, '[]', :payload, :at)",
                {"payload": '{"customer_id": "c-42", "subject": "hi"}', "at": NOW},
        ) as engine, engine.connect() as connection:
            customer = (await connection.execute(text(
                "SELECT customer_id FROM routed_tickets WHERE ticket_id = 't-1'"))
            ).scalar_one()
        assert customer == "c-42"
