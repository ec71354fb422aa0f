"""A department's side of the pipeline: read its queue, report what it did.

Departments that do not use this library can read `dept.<department>` with any Kafka
client (binary-mode CloudEvents, JSON data) and post their reports over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import httpx

from services.core import envelope, kafka, tickets, topics
from services.core.settings import Settings


async def read_queue(
    settings: Settings, department: str, *, max_tickets: int, wait_seconds: float
) -> AsyncIterator[tickets.RoutedTicket]:
    """Yield up to `max_tickets` waiting tickets; each is committed once it has been yielded.

    Reading as the group `department.<department>`, a later read continues where this
    one stopped, and several agents of one department share the queue.
    """
    consumer = kafka.consumer(settings, topics.department_queue(department),
                              group_id=f"department.{department}",
                              client_id=f"department-{department}")
    await consumer.start()
    try:
        seen = 0
        while seen < max_tickets:
            batch = await consumer.getmany(timeout_ms=int(wait_seconds * 1000),
                                           max_records=max_tickets - seen)
            if not batch:
                return
            for partition, records in batch.items():
                for record in records:
                    event = envelope.from_record(record.headers, record.value)
                    yield tickets.RoutedTicket.model_validate(event.data)
                    seen += 1
                    await consumer.commit({partition: record.offset + 1})
    finally:
        await consumer.stop()


def report(router_url: str, ticket_id: str, kind: str, *, department: str | None,
           occurred_at: datetime | None = None, timeout: float = 10.0) -> dict[str, str]:
    """Report `picked_up`, `responded` or `resolved` for a ticket; returns the receipt."""
    body: dict[str, str] = {"type": kind}
    if department:
        body["department"] = department
    if occurred_at:
        body["occurred_at"] = occurred_at.isoformat()
    response = httpx.post(f"{router_url}/v1/tickets/{ticket_id}/events", json=body,
                          timeout=timeout)
    response.raise_for_status()
    receipt: dict[str, str] = response.json()
    return receipt
