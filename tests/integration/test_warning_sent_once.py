"""A ticket's warning sent by two routers at once (the clock watch, a hand-over's
send_owed) is published once: each claims the ticket as it read it, its clocks' next
check too (claim_handover), and the warning's mark ends the claim. The two sendings are
interleaved step by step (the second runs after the first's record, or during its
publish), on SQLite and PostgreSQL, with the real broker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from services.core import kafka, topics
from services.core.settings import Settings
from services.router import clock_sending, clock_watch, priority, routing, table_file
from services.router.models import RoutedTicketRow
from tests.integration.test_lifecycle_agreement import (  # noqa: F401
    ROUTED_AT,
    Stores,
    routed_to_public_sector,
    stores,
)
from tests.routing_tables import routing_table_file

WARNED = ROUTED_AT + timedelta(hours=3)  # 75% of public_sector's 4h


class CountingPublisher:
    """The real publisher, counting the warnings it published; `meanwhile` runs once,
    during the first publish, before it."""

    def __init__(self, publisher: kafka.Publisher) -> None:
        self.publisher, self.warnings = publisher, 0
        self.meanwhile: list[object] = []

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        for run in self.meanwhile[:1]:
            self.meanwhile[0] = await run  # type: ignore[misc]
        await self.publisher.publish(outputs)
        self.warnings += sum(b"target_warning" in output.value
                             for output in kafka.records(outputs))


async def routed_ticket(stores: Stores, table: routing.RoutingTable) -> str:  # noqa: F811
    return (await routed_to_public_sector(stores, table))[0]


@pytest.mark.parametrize("second_sends", ["after_the_record", "during_the_publish"])
async def test_two_sendings_at_once_publish_the_warning_once(
        stores: Stores, kafka_bootstrap: str, tmp_path: Path,  # noqa: F811
        second_sends: str) -> None:
    table = table_file.load(routing_table_file(tmp_path, warning_share=0.75))
    ticket_id = await routed_ticket(stores, table)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS])
    publisher = CountingPublisher(kafka.Publisher(settings, client_id="warning-sent-once"))

    async def send_owed(row: RoutedTicketRow | None) -> clock_sending.Sent | None:
        assert row is not None
        return await clock_watch.send_owed(
            stores.router, publisher, row, table=table, queue_for=priority.queue_for,
            now=WARNED + timedelta(seconds=1))

    read_by_the_second = await stores.router.get(ticket_id)
    try:
        if second_sends == "during_the_publish":
            publisher.meanwhile.append(send_owed(read_by_the_second))
        first = await send_owed(await stores.router.get(ticket_id))
        second = publisher.meanwhile[0] if publisher.meanwhile \
            else await send_owed(read_by_the_second)
    finally:
        await publisher.publisher.close()
    assert (first, second) == (clock_sending.Sent(1), None)
    assert publisher.warnings == 1
    row = await stores.router.get(ticket_id)
    assert row is not None and row.handover_until is None  # the claim ended with the mark
    assert row.next_clock_check is not None and row.next_clock_check > WARNED
