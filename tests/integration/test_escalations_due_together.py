"""Escalations due at one check are one hand-over (service_clocks.escalation), on the
real store (SQLite and PostgreSQL) and a real broker: a breach and a second level due
together move the ticket once, to the second level's department, each clock at its own
level, charged to the department that held the ticket when they fell due."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from services.core import events, kafka, topics
from services.core.events import TicketEventType
from services.core.settings import Settings
from services.metrics import service, timeline
from services.router import priority, table_file, tickets_api
from services.router import service as router_service
from tests.conftest import read_topic
from tests.integration.test_lifecycle_agreement import (  # noqa: F401
    ROUTED_AT,
    Stores,
    routed_to_public_sector,
    stores,
)
from tests.routing_tables import routing_table_file

FIRST_RESPONSE_DUE = ROUTED_AT + timedelta(hours=4)
RESOLUTION_DUE = ROUTED_AT + timedelta(hours=6)


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[kafka.Publisher]:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.EVENTS, *(
        topic for department in ("key_accounts", "account_development", "sales_support")
        for topic in priority.lane_topics(department))])
    publisher = kafka.Publisher(settings, client_id="escalations-due-together")
    try:
        yield publisher
    finally:
        await publisher.close()


class TestABreachAndASecondLevelDueTogether:
    async def test_the_ticket_goes_once_to_the_second_levels_department(
            self, stores: Stores, publisher: kafka.Publisher,  # noqa: F811
            kafka_bootstrap: str, tmp_path: Path) -> None:
        """public_sector's ticket (escalation_to key_accounts, a second level 2h later to
        sales_support; key_accounts escalates to account_development): its first response
        breached at 13:00:02, to key_accounts; its resolution due 15:00 there, and the
        first response's second level at 15:00:02; the watch at 15:00:05 and 15:00:10.
        One hand-over, key_accounts to sales_support (one record on its lane, an event a
        clock), not one to account_development and on to sales_support; the metrics
        charge the resolution's miss and the second level to key_accounts."""
        table = table_file.load(routing_table_file(
            tmp_path, departments={"public_sector": {
                "second_escalation": {"after": "2h", "to": "sales_support"}}},
            routes={"public_sector": {"resolution_target": "6h"}}))
        ticket_id, first = await routed_to_public_sector(stores, table)
        for at in (FIRST_RESPONSE_DUE + timedelta(seconds=2),
                   RESOLUTION_DUE + timedelta(seconds=5),
                   RESOLUTION_DUE + timedelta(seconds=10)):
            await router_service.escalate_due(stores.router, publisher, table=table,
                                              queue_for=priority.queue_for, now=at)

        published = [events.read(event) for event, _ in await read_topic(
            kafka_bootstrap, topics.EVENTS, until=3,
            keep=lambda event: event.ticket_id == ticket_id
            and event.type == TicketEventType.ESCALATED)]
        assert [(e.target, e.level, e.from_department, e.department) for e in published] == [
            ("first_response", 1, "public_sector", "key_accounts"),
            ("resolution", 1, "key_accounts", "sales_support"),
            ("first_response", 2, "key_accounts", "sales_support")]
        lanes = [topic for department in ("account_development", "sales_support")
                 for topic in priority.lane_topics(department)]
        queued = [record.topic for _, record in await read_topic(  # type: ignore[attr-defined]
            kafka_bootstrap, *lanes, until=1, keep=lambda event: event.ticket_id == ticket_id)]
        assert queued == [priority.queue_for("sales_support", 2)]
        row = await stores.router.get(ticket_id)
        assert row is not None and row.department == "sales_support"
        assert [(clock["target"], clock["level"], clock["outcome"])
                for clock in tickets_api._clocks(row.service_clocks)["clocks"]] == [
            ("first_response", 2, "missed"), ("resolution", 1, "missed")]
        seen_by_metrics = timeline.Timeline(ticket_id=ticket_id)
        charged = []
        for event in [next(events.read(output.event) for output in first.outputs
                           if output.topic == topics.EVENTS), *published]:
            seen_by_metrics, observations = service.applied(event, seen_by_metrics)
            charged += [(type(o).__name__, getattr(o, "target", None), o.department)
                        for o in observations
                        if isinstance(o, timeline.ClockEscalated | timeline.HandedOver)]
        assert sorted(charged) == sorted([
            ("ClockEscalated", "first_response", "public_sector"),
            ("HandedOver", None, "key_accounts"),
            ("ClockEscalated", "resolution", "key_accounts"),
            ("ClockEscalated", "first_response", "key_accounts"),
            ("HandedOver", None, "sales_support")])
