"""A transfer or priority change asked after its ticket's deadline, whose breach fails
for the ticket's own reason (a deadline the calendar cannot give): the request counts it
and postpones the ticket's next check (clock_watch.checked_again_later), then is made on
the ticket as it is, not held up by the notice it could not send. On the real store and
broker, where a row read before the postponement no longer matches the stored one (the
claim compares its clocks' next check)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.core import kafka, topics
from services.core.settings import Settings
from services.router import clock_notices, priority, table_file
from services.router import service as router_service
from tests.conftest import TEST_ROUTING_TABLE
from tests.integration.test_lifecycle_agreement import (  # noqa: F401
    ROUTED_AT,
    Stores,
    routed_to_public_sector,
    stores,
)
from tests.integration.test_transfer_refused_after_its_breach import PUBLIC_SECTOR, asked_by


@pytest.mark.parametrize("asked", ["transfer", "priority"])
async def test_a_breach_failing_for_the_tickets_own_reason_holds_up_no_change(
        stores: Stores, kafka_bootstrap: str, asked: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    table = table_file.load(TEST_ROUTING_TABLE)
    ticket_id, _ = await routed_to_public_sector(stores, table)

    def cannot(*args: object, **kwargs: object) -> object:
        raise ValueError("the calendar does not open within ten years")

    monkeypatch.setattr(clock_notices, "escalation", cannot)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS, *priority.lane_topics("customer_care"),
                                         *priority.lane_topics("public_sector")])
    publisher = kafka.Publisher(settings, client_id="handover-after-failed-notice")
    asked_at = ROUTED_AT + timedelta(hours=4, seconds=3)  # just past its deadline
    try:
        answer = await asked_by(PUBLIC_SECTOR, asked, ticket_id, stores=stores,
                                publisher=publisher, at=asked_at, table=table)
    finally:
        await publisher.close()
    row = await stores.router.get(ticket_id)
    assert row is not None
    if asked == "transfer":
        assert answer == router_service.Transferred(ticket_id, "customer_care")
        assert row.department == "customer_care"
    else:
        assert isinstance(answer, router_service.Reprioritised), answer
        assert (row.department, row.priority) == ("public_sector", 1)
