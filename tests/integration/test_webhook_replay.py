"""A replay of many dead callbacks goes a chunk at a time, each its own transaction, on
SQLite and PostgreSQL: every dead callback of the filter is sent again once, none
other, however many there are; each chunk is read by the index of a status in delivery
id order, from where the last one stopped. None is replayed for a platform without an
endpoint."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import db, migrate
from services.webhooks import endpoint_store, models, outbox_store
from services.webhooks.models import WebhookDeliveryRow
from services.webhooks.outbox_store import Deliveries
from tests.query_plans import plans


async def test_a_replay_of_many_goes_a_chunk_at_a_time(database_url: str) -> None:
    engine = db.engine(database_url)
    for platform in ("desk", "other"):
        await registered(engine, platform)
    now = datetime.now(UTC)
    rows = [{"delivery_id": f"d-{n:04d}", "platform": "desk" if n % 4 else "other",
             "event_type": "ticket.routed", "ticket_id": f"t-{n}", "body": "{}",
             "status": models.DELIVERED if n % 10 == 3 else models.DEAD, "attempts": 10,
             "next_attempt_at": now, "created_at": now, "updated_at": now}
            for n in range(250)]
    replayed = {row["delivery_id"] for row in rows
                if row["platform"] == "desk" and row["status"] == models.DEAD}
    try:
        async with engine.begin() as connection:
            await connection.execute(WebhookDeliveryRow.__table__.insert(), rows)
        deliveries = Deliveries(db.sessions(engine))
        commits: list[int] = []
        event.listen(engine.sync_engine, "commit", lambda _connection: commits.append(1))

        assert await deliveries.replay(platform="desk", chunk=40) == len(replayed) == 162
        assert len(commits) == 5  # 4 chunks of 40, then the last 2
        assert await deliveries.replay(platform="desk", chunk=40) == 0  # none left

        async with engine.connect() as connection:
            now_stored = (await connection.execute(select(
                WebhookDeliveryRow.delivery_id, WebhookDeliveryRow.status,
                WebhookDeliveryRow.attempts))).all()
    finally:
        await engine.dispose()
    before = {row["delivery_id"]: row["status"] for row in rows}
    assert {delivery_id for delivery_id, status, attempts in now_stored
            if status == models.PENDING and attempts == 0} == replayed
    assert Counter(status for delivery_id, status, _ in now_stored
                   if delivery_id not in replayed) == Counter(
        status for delivery_id, status in before.items() if delivery_id not in replayed)


@pytest.mark.parametrize("platform", [None, "desk"])
async def test_each_chunk_reads_the_dead_callbacks_from_where_the_last_stopped(
        empty_database_url: str, platform: str | None) -> None:
    await migrate.upgrade(empty_database_url)
    # An empty store: the first chunk's query alone.
    [plan] = await plans(empty_database_url, lambda sessions: Deliveries(sessions).replay(
        platform=platform, chunk=10))
    if empty_database_url.startswith("sqlite"):
        searched = "INDEX ix_webhook_deliveries_status_delivery (status=? AND delivery_id>?)"
        assert searched in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan  # nor sorted again
    else:
        assert " ix_webhook_deliveries_status_delivery " in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan


async def registered(engine: AsyncEngine, platform: str) -> None:
    endpoints = endpoint_store.Endpoints(db.sessions(engine), secret_overlap=timedelta(hours=1))
    assert await endpoints.register(platform, "https://desk.example.com/hooks") is not None


async def test_dead_callbacks_are_replayed_for_a_platform_with_an_endpoint_only(
        database_url: str) -> None:
    """Replayed while the platform had no endpoint, they waited for good (no worker sends
    to it, and retention keeps what waits), then went to its next registration unasked.
    Now they stay dead-lettered, listed, until an admin replays them once it registers
    again."""
    engine = db.engine(database_url)
    platform = f"gone-{datetime.now(UTC).timestamp():.0f}"
    try:
        await registered(engine, platform)
        deliveries = Deliveries(db.sessions(engine))
        await deliveries.enqueue([outbox_store.Outgoing(f"msg-{platform}-{n}", platform,
                                                 "ticket.routed", "t-1", "{}")
                                  for n in range(3)])
        async with engine.begin() as connection:
            await connection.execute(WebhookDeliveryRow.__table__.update().where(
                WebhookDeliveryRow.platform == platform).values(status=models.DEAD))
        endpoints = endpoint_store.Endpoints(db.sessions(engine), secret_overlap=timedelta(hours=1))
        assert await endpoints.delete(platform) is not None
        assert await deliveries.replay(platform=platform) == 0
        assert await deliveries.replay(delivery_id=f"msg-{platform}-0") == 0
        assert len(await deliveries.listed(models.DEAD, platform=platform)) == 3
        await registered(engine, platform)
        assert await deliveries.due(platform, datetime.now(UTC), limit=10) == []
        assert await deliveries.replay(platform=platform) == 3  # the admin's, once back
        assert len(await deliveries.due(platform, datetime.now(UTC), limit=10)) == 3
    finally:
        await engine.dispose()


async def test_a_replay_the_store_fails_part_way_keeps_its_chunks_and_is_run_again(
        database_url: str) -> None:
    """The chunks before the failure stay replayed (pending); run again, the replay
    sends the rest, none of those a second time."""
    engine = db.engine(database_url)
    await registered(engine, "desk")
    now = datetime.now(UTC)
    rows = [{"delivery_id": f"d-{n:03d}", "platform": "desk", "event_type": "ticket.routed",
             "ticket_id": f"t-{n}", "body": "{}", "status": models.DEAD, "attempts": 10,
             "next_attempt_at": now, "created_at": now, "updated_at": now}
            for n in range(100)]
    updates: list[str] = []

    def store_gone_at_the_second_chunk(_connection: Any, _cursor: Any, statement: str,
                                       *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE WEBHOOK_DELIVERIES"):
            updates.append(statement)
            if len(updates) == 2:
                raise ConnectionResetError("the store went away")

    try:
        async with engine.begin() as connection:
            await connection.execute(WebhookDeliveryRow.__table__.insert(), rows)
        deliveries = Deliveries(db.sessions(engine))
        event.listen(engine.sync_engine, "before_cursor_execute",
                     store_gone_at_the_second_chunk)
        with pytest.raises(ConnectionResetError):
            await deliveries.replay(chunk=40)
        event.remove(engine.sync_engine, "before_cursor_execute",
                     store_gone_at_the_second_chunk)
        pending = await deliveries.listed(models.PENDING)
        assert sorted(d.delivery_id for d in pending) == [f"d-{n:03d}" for n in range(40)]
        pending_since = {d.delivery_id: d.updated_at for d in pending}

        assert await deliveries.replay(chunk=40) == 60  # the rest, once
        assert await deliveries.listed(models.DEAD) == []
        again = {d.delivery_id: d.updated_at for d in await deliveries.listed(models.PENDING)
                 if d.delivery_id in pending_since}
        assert again == pending_since  # the first chunk's untouched
    finally:
        await engine.dispose()
