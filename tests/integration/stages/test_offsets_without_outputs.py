"""An exactly-once stage whose batch has nothing to publish (the router's event follower,
the webhook outbox, for most events) commits the batch's offsets with the group's own
commit: no transaction is begun for an offset alone. A batch with outputs still commits
them and its offsets in one transaction."""

from __future__ import annotations

import functools

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.core import envelope, kafka
from services.core.settings import Settings
from services.core.stage import StageRunner
from tests import waits
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import publish, segmented_event


async def committed(bootstrap: str, group: str) -> int:
    """The offsets the group has committed, summed over its partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sum(meta.offset for meta in
                   (await admin.list_consumer_group_offsets(group)).values())
    finally:
        await admin.close()


wait_until = functools.partial(waits.until, within=30.0, every=0.2)


@pytest.fixture
def transactions_begun(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The transactional ids of every transaction begun in this process meanwhile."""
    begun: list[str] = []
    original = AIOKafkaProducer.begin_transaction

    async def counting(producer: AIOKafkaProducer) -> None:
        begun.append(str(producer._txn_manager.transactional_id))  # type: ignore[attr-defined]
        await original(producer)

    monkeypatch.setattr(AIOKafkaProducer, "begin_transaction", counting)
    return begun


class TestBatchesWithNothingToPublish:
    async def test_offsets_are_committed_without_a_transaction(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            transactions_begun: list[str]) -> None:
        assert stage_settings.delivery == "exactly_once"
        source, group = unique("quiet-source"), unique("quiet")
        await kafka.ensure_topics(stage_settings, [source])
        seen: list[str | None] = []

        async def record_only(event: envelope.Event) -> list[kafka.Output]:
            seen.append(event.ticket_id)
            return []

        runner = StageRunner(stage_settings, name="record-only", source_topic=source,
                             group_id=group, transform=record_only)
        await runner.start()
        try:
            for _ in range(6):
                await publish(raw_producer, source, segmented_event("government"))

            async def all_committed() -> bool:
                return await committed(stage_settings.kafka_bootstrap_servers, group) == 6

            await wait_until(all_committed)
        finally:
            await runner.stop()
        assert len(seen) == 6
        assert not [tid for tid in transactions_begun if tid.startswith(group)]

    async def test_a_batch_with_outputs_commits_them_in_a_transaction(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            transactions_begun: list[str]) -> None:
        source, target, group = unique("busy-source"), unique("busy-target"), unique("busy")
        await kafka.ensure_topics(stage_settings, [source, target])

        async def forward(event: envelope.Event) -> list[kafka.Output]:
            return [kafka.Output(target, "k", event)]

        runner = StageRunner(stage_settings, name="forward", source_topic=source,
                             group_id=group, transform=forward)
        await runner.start()
        try:
            for _ in range(3):
                await publish(raw_producer, source, segmented_event("government"))
            found = await read_topic(stage_settings.kafka_bootstrap_servers, target, until=3)

            async def all_committed() -> bool:
                return await committed(stage_settings.kafka_bootstrap_servers, group) == 3

            await wait_until(all_committed)
        finally:
            await runner.stop()
        assert len(found) == 3
        assert [tid for tid in transactions_begun if tid.startswith(group)]
