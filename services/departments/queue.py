"""A department's side of the pipeline: read its queue, report what it did.

Departments that do not use this library can read their lane topics (`dept.<department>`
and `dept.<department>.high` / `.low`) with any Kafka client (binary-mode CloudEvents,
JSON data) and post their reports over HTTP.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import TopicPartition

from services.core import envelope, kafka, tickets
from services.core.settings import Settings
from services.router import load, priority


async def read_queue(
    settings: Settings, department: str, *, max_tickets: int, wait_seconds: float,
    aging: priority.Aging = priority.DEFAULT_AGING,
) -> AsyncIterator[tickets.RoutedTicket]:
    """Yield up to `max_tickets` waiting tickets, the highest effective priority first
    (a ticket's priority rises while it waits, so none starves); each is committed once
    it has been yielded.

    Reading as the group `department.<department>` over the department's priority lanes,
    a later read continues where this one stopped, and agents of one department share
    the queue. On a secured cluster the settings name the department's own Kafka user
    (`KAFKA_SASL_USERNAME`), allowed to read its lanes and its group, nothing else.
    """
    lanes = dict(zip(priority.LANES, priority.lane_topics(department), strict=True))
    lane_of = {topic: lane for lane, topic in lanes.items()}
    consumer = kafka.consumer(settings, *lanes.values(), group_id=load.department_group(
        department), client_id=f"department-{department}")
    waiting: dict[priority.Lane, deque[tuple[Any, tickets.RoutedTicket]]] = {
        lane: deque() for lane in priority.LANES}
    try:
        # Inside: a start refused (no ACL for a lane, wrong password) still stops it.
        await consumer.start()
        taken = 0
        while taken < max_tickets:
            # Wait only when nothing is buffered; otherwise just top up the buffers.
            idle = not any(waiting.values())
            batch = await consumer.getmany(timeout_ms=int(wait_seconds * 1000) if idle else 50)
            for records in batch.values():
                for record in records:
                    event = envelope.from_record(record.headers, record.value)
                    waiting[lane_of[record.topic]].append(
                        (record, tickets.RoutedTicket.model_validate(event.data)))
            heads = {lane: priority.Head(ticket.routing.priority or 3, ticket.routing.routed_at)
                     for lane, queued in waiting.items() if queued
                     for ticket in [queued[0][1]]}
            lane = priority.choose_next(heads, now=datetime.now(UTC), aging=aging)
            if lane is None:
                return
            record, ticket = waiting[lane].popleft()
            yield ticket
            taken += 1
            await consumer.commit({TopicPartition(record.topic, record.partition):
                                   record.offset + 1})
    finally:
        await consumer.stop()


def report(router_url: str, ticket_id: str, kind: str, *, department: str | None,
           token: str | None, occurred_at: datetime | None = None,
           timeout: float = 10.0) -> dict[str, str]:
    """Report `picked_up`, `responded` or `resolved` for a ticket; returns the receipt.
    `token`: the department's credential."""
    body: dict[str, str] = {"type": kind}
    if department:
        body["department"] = department
    if occurred_at:
        body["occurred_at"] = occurred_at.isoformat()
    response = httpx.post(f"{router_url}/v1/tickets/{ticket_id}/events", json=body,
                          headers=_authorization(token), timeout=timeout)
    response.raise_for_status()
    receipt: dict[str, str] = response.json()
    return receipt


def transfer(router_url: str, ticket_id: str, to_department: str, reason: str, *,
             token: str | None, from_department: str | None = None,
             timeout: float = 10.0) -> dict[str, str]:
    """Hand a ticket to another department; the response clock keeps running."""
    body = {"to_department": to_department, "reason": reason}
    if from_department:
        body["from_department"] = from_department
    response = httpx.post(f"{router_url}/v1/tickets/{ticket_id}/transfer", json=body,
                          headers=_authorization(token), timeout=timeout)
    response.raise_for_status()
    receipt: dict[str, str] = response.json()
    return receipt


def _authorization(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
