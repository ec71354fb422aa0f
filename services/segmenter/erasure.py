"""Erasing a customer: their personal data leaves every table of the SQL store at once;
what remains in Kafka until the topics' retention is said in the answer.

The store is one database shared by the three services, so the erasure reaches the
router's tables too (through the router's own module, services/router/erasures.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete

from services.core import retention, topics
from services.router import erasures
from services.segmenter.models import CustomerFeaturesRow, CustomerRow, PurchaseRow

if TYPE_CHECKING:
    from services.segmenter.store import CustomerStore

# What stays in the SQL store after an erasure, and why: nothing personal, bar the
# customer's id for as long as Kafka may bring back a ticket of theirs.
KEPT = {
    "ticket_timelines": "ticket ids, departments, segments and times only",
    "webhook_deliveries": "the platforms' callbacks about the tickets: ticket ids,"
                          " departments, segments, deadlines and times only",
    "held_tickets": "their tickets held as dead letters: ticket ids, stages, platforms and"
                    " times only, until the dead letter leaves Kafka",
    "erased_customers": "the customer id and the erasure's time, for"
                        f" {retention.ERASURES_REMEMBERED.days} days: a ticket of theirs"
                        " Kafka still holds is then routed but not kept",
}
# What each topic holds of a customer's tickets, and how long it keeps it (days).
IN_KAFKA = [
    (topics.INCOMING, "the tickets as posted (text, customer id)",
     topics.RETENTION_DAYS[topics.INCOMING]),
    (topics.SEGMENTED, "the tickets with their segment (text, customer id)",
     topics.RETENTION_DAYS[topics.SEGMENTED]),
    (f"{topics.DEPARTMENT_QUEUE_PREFIX}<department>"
     f"[{'|'.join(f'.{lane}' for lane in topics.LANES if lane != 'normal')}]",
     "the tickets as routed (text, customer id)",
     topics.DEPARTMENT_LANE_RETENTION_DAYS),
    (topics.DEAD_LETTERS, "tickets no stage could process, as they were",
     topics.RETENTION_DAYS[topics.DEAD_LETTERS]),
    (topics.EVENTS, "lifecycle events: ticket ids, departments, segments, times",
     topics.RETENTION_DAYS[topics.EVENTS]),
    (topics.CUSTOMER_EVENTS, "the customer id (changes and tier changes)",
     topics.RETENTION_DAYS[topics.CUSTOMER_EVENTS]),
]


@dataclass(frozen=True)
class Erasure:
    """What erasing a customer deleted."""

    customer_id: str
    customer: bool  # the profile, and the values computed from it
    purchases: int
    tickets: int  # routed tickets: state, trace and the ticket's copy
    idempotency_keys: int  # the intake keys that made those tickets, or reports on them

    @property
    def found(self) -> bool:
        return self.customer or self.tickets > 0

    def answer(self) -> dict[str, Any]:
        """The erasure's report: what was deleted, what stays, what Kafka keeps until
        when."""
        return {
            "customer_id": self.customer_id,
            "erased": {"customer": self.customer, "purchases": self.purchases,
                       "tickets": self.tickets, "idempotency_keys": self.idempotency_keys},
            "kept": KEPT,
            "kafka_until_retention": [
                {"topic": topic, "holds": holds, "retention_days": days}
                for topic, holds, days in IN_KAFKA],
        }


async def erase_customer(store: CustomerStore, customer_id: str) -> Erasure:
    """Erase the customer from every table in one transaction: the profile, purchases
    and values, and their tickets as the router keeps them with the tickets' intake keys.
    A customer unknown to the store may still have tickets: those go too. The erasure is
    remembered even when it finds nothing: their tickets still in Kafka may reach the
    router later, which then does not keep them."""
    async with store.sessions() as session, session.begin():
        purchases = await session.execute(delete(PurchaseRow).where(
            PurchaseRow.customer_id == customer_id))
        await session.execute(delete(CustomerFeaturesRow).where(
            CustomerFeaturesRow.customer_id == customer_id))
        customer = await session.execute(delete(CustomerRow).where(
            CustomerRow.customer_id == customer_id))
        tickets = await erasures.erase_tickets_of(session, customer_id,
                                                  at=datetime.now(UTC))
    store.cache.forget(customer_id)
    return Erasure(customer_id=customer_id,
                   customer=bool(customer.rowcount),  # type: ignore[attr-defined]
                   purchases=purchases.rowcount,  # type: ignore[attr-defined]
                   tickets=tickets.tickets, idempotency_keys=tickets.idempotency_keys)
