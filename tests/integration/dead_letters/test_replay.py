"""Replaying dead letters: each selected one arrives once as it was, at most once, with
its markers kept in a compacted topic."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.core import kafka, new_topics, topics
from services.core.settings import Settings
from services.router import dead_letter_records, dead_letters
from tests.conftest import unique
from tests.integration.dead_letters.dead_lettering import dead_letter, read_all, some_dead_letters


class TestReplay:
    async def test_each_selected_dead_letter_arrives_once_as_it_was(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        made = await some_dead_letters(producer, source_topic, 3)
        chosen = sorted(made)[:2]
        chosen_ones = dead_letter_records.Selection(ids=tuple(chosen))
        result = await dead_letters.replay(settings, chosen_ones)
        assert sorted(result.replayed) == chosen
        assert result.counts() == {"replayed": 2, "skipped_already_replayed": 0,
                                   "not_found": 0, "unreplayable": 0}

        again = await dead_letters.replay(settings, chosen_ones)
        assert sorted(again.skipped_already_replayed) == chosen
        assert again.replayed == []

        arrived = await read_all(settings.kafka_bootstrap_servers, source_topic, until=2)
        by_origin = {dict(r.headers)[dead_letter_records.REPLAY_HEADER].decode(): r
                     for r in arrived}
        assert len(arrived) == 2
        assert sorted(by_origin) == chosen
        for dead_letter_id, record in by_origin.items():
            key, value, headers = made[dead_letter_id]
            assert (record.key, record.value) == (key, value)
            assert list(record.headers) == [
                *headers, (dead_letter_records.REPLAY_HEADER, dead_letter_id.encode())]

    async def test_a_filter_replays_what_matches_and_only_once(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        error_class = unique("FixedError")
        matching = await some_dead_letters(producer, source_topic, 3, error_class=error_class)
        await some_dead_letters(producer, source_topic, 2)
        selection = dead_letter_records.Selection(source_topic=source_topic,
                                                  error_class=error_class)
        first = await dead_letters.replay(settings, selection)
        second = await dead_letters.replay(settings, selection)
        assert set(first.replayed) == set(matching)
        assert second.counts() == {"replayed": 0, "skipped_already_replayed": 3,
                                   "not_found": 0, "unreplayable": 0}
        arrived = await read_all(settings.kafka_bootstrap_servers, source_topic, until=3)
        assert len(arrived) == 3

    async def test_unknown_ids_and_vanished_source_topics_are_counted_not_replayed(
            self, settings: Settings, producer: AIOKafkaProducer) -> None:
        orphan = await dead_letter(producer, unique("deleted-topic"), key=b"k", value=b"v",
                                   headers=[])
        result = await dead_letters.replay(settings, dead_letter_records.Selection(
            ids=(orphan, "0:999999999999", "99:0")))
        assert result.unreplayable == [orphan]
        assert sorted(result.not_found) == ["0:999999999999", "99:0"]
        assert result.replayed == []

    async def test_markers_are_kept_in_a_compacted_topic(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        made = await some_dead_letters(producer, source_topic, 1)
        await dead_letters.replay(settings, dead_letter_records.Selection(ids=tuple(made)))
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topics.DEAD_LETTERS_REPLAYED)])
        finally:
            await admin.close()
        configs = {name: value for name, value, *_ in described[0].resources[0][4]}
        assert configs["cleanup.policy"] == "compact"


class TestSourceTopicsAsTheClusterShowsThem:
    """A topic shows in the brokers' metadata a moment after it was made: a replay waits
    for a stage input its dead letters name before calling them unreplayable."""

    async def test_a_source_topic_made_after_the_replay_looked_is_replayed_to(
            self, settings: Settings, producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """The topic is made right after the replay's first look at the cluster (the real
        description, which lacks it): what a look a moment after the topic was made sees
        on a broker whose metadata has not shown it yet, but every time."""
        source = unique("dlq-new-source")
        monkeypatch.setattr(topics, "STAGE_INPUTS", topics.STAGE_INPUTS | {source})
        made = await some_dead_letters(producer, source, 1)
        looks: list[bool] = []
        describe = kafka.described_partitions

        async def made_after_the_first_look(admin: AIOKafkaAdminClient) -> dict[str, list[int]]:
            described = await describe(admin)
            looks.append(source in described)
            if len(looks) == 1:
                await kafka.ensure_topics(settings, [source])
            return described

        monkeypatch.setattr(kafka, "described_partitions", made_after_the_first_look)
        result = await dead_letters.replay(settings, dead_letter_records.Selection(
            ids=tuple(made)))
        assert looks[0] is False
        assert result.replayed == list(made)
        arrived = await read_all(settings.kafka_bootstrap_servers, source, until=1)
        assert [dict(r.headers)[dead_letter_records.REPLAY_HEADER].decode()
                for r in arrived] == list(made)

    async def test_a_stage_input_the_cluster_lacks_stays_unreplayable(
            self, settings: Settings, producer: AIOKafkaProducer,
            monkeypatch: pytest.MonkeyPatch) -> None:
        source = unique("dlq-never-made")
        monkeypatch.setattr(topics, "STAGE_INPUTS", topics.STAGE_INPUTS | {source})
        monkeypatch.setattr(new_topics, "SHOWS_WITHIN_SECONDS", 0.5)
        made = await some_dead_letters(producer, source, 2)
        result = await dead_letters.replay(settings, dead_letter_records.Selection(
            ids=tuple(made)))
        assert sorted(result.unreplayable) == sorted(made)
        assert result.replayed == []
        admin = kafka.admin(settings, client_id="test")
        await admin.start()
        try:
            assert source not in await admin.list_topics()  # waiting made no topic
        finally:
            await admin.close()


class TestMarkersAsTheClusterShowsThem:
    """The replay reads its markers before it replays: a marker topic its look at the
    cluster lacks (made a moment ago, here or by another replayer) is looked for again,
    never taken for a topic without markers."""

    @staticmethod
    def hiding_the_markers(monkeypatch: pytest.MonkeyPatch, *, looks: int) -> list[bool]:
        """The cluster described without the marker topic for the first `looks` looks."""
        shown: list[bool] = []
        describe = kafka.described_partitions

        async def stale(admin: AIOKafkaAdminClient) -> dict[str, list[int]]:
            described = dict(await describe(admin))
            if len(shown) < looks:
                described.pop(topics.DEAD_LETTERS_REPLAYED, None)
            shown.append(topics.DEAD_LETTERS_REPLAYED in described)
            return described

        monkeypatch.setattr(kafka, "described_partitions", stale)
        return shown

    async def test_a_dead_letter_replayed_is_not_replayed_again_on_a_stale_look(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str,
            monkeypatch: pytest.MonkeyPatch) -> None:
        made = await some_dead_letters(producer, source_topic, 1)
        chosen = dead_letter_records.Selection(ids=tuple(made))
        assert (await dead_letters.replay(settings, chosen)).replayed == list(made)
        shown = self.hiding_the_markers(monkeypatch, looks=1)
        again = await dead_letters.replay(settings, chosen)
        assert shown[:2] == [False, True]
        assert again.skipped_already_replayed == list(made)
        assert again.replayed == []

    async def test_a_marker_topic_never_shown_replays_nothing(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str,
            monkeypatch: pytest.MonkeyPatch) -> None:
        made = await some_dead_letters(producer, source_topic, 1)
        monkeypatch.setattr(new_topics, "SHOWS_WITHIN_SECONDS", 0.5)
        describe = kafka.described_partitions
        self.hiding_the_markers(monkeypatch, looks=1_000)
        with pytest.raises(dead_letters.Unavailable, match=topics.DEAD_LETTERS_REPLAYED):
            await dead_letters.replay(settings, dead_letter_records.Selection(
                ids=tuple(made)))
        monkeypatch.setattr(kafka, "described_partitions", describe)  # shown again
        assert (await dead_letters.replay(settings, dead_letter_records.Selection(
            ids=tuple(made)))).replayed == list(made)
