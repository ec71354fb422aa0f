"""Dead letters on a real broker: listing, paging, replaying at most once, and the HTTP API.

The broker and `tickets.dlq` are shared with other tests, so each test dead-letters
records of a source topic of its own and selects by it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fastapi import FastAPI

from devtools import ports
from services.core import envelope, faults, http, kafka, service_context, topics
from services.core.settings import Settings
from services.router import dead_letter_records, dead_letters, dead_letters_api
from tests import credentials
from tests.conftest import unique

Headers = list[tuple[str, bytes]]


@pytest.fixture
async def settings(kafka_bootstrap: str) -> Settings:
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, topics.PIPELINE)
    return settings


@pytest.fixture
async def source_topic(settings: Settings) -> str:
    """A topic only this test dead-letters from, so its selections see only its records."""
    name = unique("dlq-source")
    await kafka.ensure_topics(settings, [name])
    return name


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.stop()


def original_headers(ticket_id: str) -> Headers:
    event = envelope.Event(type="ticket.segmented", source="/test", ticket_id=ticket_id,
                           correlation_id=ticket_id, data={})
    return [*envelope.to_headers(event), ("x-platform", b"helpdesk")]


async def dead_letter(producer: AIOKafkaProducer, source_topic: str, *, key: bytes,
                      value: bytes, headers: Headers, error_class: str = "EnvelopeError",
                      source_offset: int = 0) -> str:
    """Dead-letter a record as a stage does (`faults.dead_letter_headers`); its id."""
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=source_topic, partition=0, offset=source_offset, timestamp=0, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=len(key),
        serialized_value_size=len(value), headers=headers)
    metadata = await producer.send_and_wait(
        topics.DEAD_LETTERS, value, key=key,
        headers=faults.dead_letter_headers(record, "value is not JSON", error_class))
    return dead_letter_records.dead_letter_id(metadata.partition, metadata.offset)


async def some_dead_letters(producer: AIOKafkaProducer, source_topic: str,
                            count: int, **options: Any) -> dict[str, tuple[bytes, bytes, Headers]]:
    """`count` dead letters of `source_topic`: id -> (key, value, original headers)."""
    made = {}
    for n in range(count):
        ticket_id = unique("t")
        key, value = f"cust-{n}".encode(), f'{{"n": {n}}}'.encode()
        headers = original_headers(ticket_id)
        made[await dead_letter(producer, source_topic, key=key, value=value, headers=headers,
                               source_offset=n, **options)] = (key, value, headers)
    return made


async def read_all(bootstrap: str, topic: str, *, until: int, within: float = 20.0,
                   settle: float = 1.5) -> list[Any]:
    """Every record of a topic, read from the start by a fresh read_committed consumer,
    until `until` records came and `settle` more seconds brought no more (so duplicates
    show), or `within` seconds passed."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique("check"),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    found: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if len(found) >= until:
                deadline = min(deadline, loop.time() + settle)
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


class TestListing:
    async def test_dead_letters_show_source_reason_and_ids_but_not_values(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        made = await some_dead_letters(producer, source_topic, 3, error_class="ValidationError")
        listed = await dead_letters.list_dead_letters(settings, source_topic=source_topic)
        assert [item["id"] for item in listed] == sorted(made, key=dead_letter_records.parse_id)
        for item in listed:
            key, _, headers = made[item["id"]]
            assert item["source_topic"] == source_topic
            assert item["error_class"] == "ValidationError"
            assert item["error"] == "value is not JSON"
            assert item["key"] == key.decode()
            assert item["ticket_id"] == dict(headers)["ce_ticketid"].decode()
            assert item["event_type"] == "ticket.segmented"
            assert item["id"] == f"{item['partition']}:{item['offset']}"
            assert "value" not in item

    async def test_filters_by_error_class(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        error_class = unique("OddError")
        odd = await some_dead_letters(producer, source_topic, 2, error_class=error_class)
        await some_dead_letters(producer, source_topic, 2)
        listed = await dead_letters.list_dead_letters(settings, error_class=error_class)
        assert {item["id"] for item in listed} == set(odd)

    async def test_pages_follow_each_other_without_gaps_or_repeats(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        made = await some_dead_letters(producer, source_topic, 7)
        pages: list[list[str]] = []
        since = None
        while not pages or len(pages[-1]) == 3:
            page = await dead_letters.list_dead_letters(
                settings, source_topic=source_topic, limit=3, since=since)
            pages.append([item["id"] for item in page])
            since = page[-1]["id"] if page else None
        assert [len(page) for page in pages] == [3, 3, 1]
        assert [i for page in pages for i in page] == sorted(made, key=dead_letter_records.parse_id)

    async def test_values_on_request_in_base64_when_not_utf8(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        binary = await dead_letter(producer, source_topic, key=b"k", value=b"\xff\xfe binary",
                                   headers=[])
        text = await dead_letter(producer, source_topic, key=b"k", value=b"plain", headers=[])
        listed = {item["id"]: item for item in await dead_letters.list_dead_letters(
            settings, source_topic=source_topic, include_value=True)}
        assert listed[binary]["value_encoding"] == "base64"
        assert base64.b64decode(listed[binary]["value"]) == b"\xff\xfe binary"
        assert (listed[text]["value"], listed[text]["value_encoding"]) == ("plain", "utf-8")

    async def test_a_listing_that_matches_nothing_returns_at_the_end(
            self, settings: Settings) -> None:
        async with asyncio.timeout(15):
            assert await dead_letters.list_dead_letters(
                settings, source_topic=unique("nothing-here")) == []


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
                [ConfigResource(ConfigResourceType.TOPIC, dead_letters.REPLAYED)])
        finally:
            await admin.close()
        configs = {name: value for name, value, *_ in described[0].resources[0][4]}
        assert configs["cleanup.policy"] == "compact"


def api_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.include_router(dead_letters_api.api)
    http.install(app, ready=lambda: True)
    service_context.install(app, settings)
    return app


async def call(settings: Settings, method: str, path: str, **options: Any) -> httpx.Response:
    """The dead-letter API called as an admin."""
    app = api_app(settings)
    async with credentials.authenticating(app, settings.database_url) as store, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                              headers=await credentials.headers_of(store, "admin"),
                              timeout=60) as client:
        return await client.request(method, path, **options)


class TestHttp:
    async def test_list_pages_and_replays(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        made = await some_dead_letters(producer, source_topic, 3)
        page = await call(settings, "GET", "/v1/dead-letters",
                          params={"source_topic": source_topic, "limit": 2})
        assert page.status_code == 200
        assert len(page.json()["dead_letters"]) == 2
        assert all("value" not in item for item in page.json()["dead_letters"])
        rest = await call(settings, "GET", "/v1/dead-letters",
                          params={"source_topic": source_topic, "since": page.json()["next"],
                                  "include_value": "true"})
        assert [item["value"] for item in rest.json()["dead_letters"]] == [
            made[rest.json()["dead_letters"][0]["id"]][1].decode()]
        assert rest.json()["next"] is None

        body = {"source_topic": source_topic}
        replayed = await call(settings, "POST", "/v1/dead-letters/replay", json=body)
        repeated = await call(settings, "POST", "/v1/dead-letters/replay", json=body)
        assert replayed.json() == {"replayed": 3, "skipped_already_replayed": 0,
                                   "not_found": 0, "unreplayable": 0}
        assert repeated.json()["skipped_already_replayed"] == 3

    @pytest.mark.parametrize(("method", "path", "options", "field"), [
        ("GET", "/v1/dead-letters", {"params": {"limit": 1001}}, "query.limit"),
        ("GET", "/v1/dead-letters", {"params": {"since": "soon"}}, "query.since"),
        ("GET", "/v1/dead-letters", {"params": {"include_value": "perhaps"}},
         "query.include_value"),
        ("POST", "/v1/dead-letters/replay", {"json": {}}, "body.ids"),
        ("POST", "/v1/dead-letters/replay", {"json": {"ids": ["0:1"], "error_class": "E"}},
         "body.ids"),
        ("POST", "/v1/dead-letters/replay", {"json": {"ids": ["0:1", "x"]}}, "body.ids.1"),
        ("POST", "/v1/dead-letters/replay", {"json": {"error_class": "E", "everything": 1}},
         "body.everything"),
    ])
    async def test_bad_input_names_the_field(self, settings: Settings, method: str, path: str,
                                             options: dict[str, Any], field: str) -> None:
        response = await call(settings, method, path, **options)
        assert response.status_code == 422
        assert response.json()["error"] == "invalid_request"
        assert [f["field"] for f in response.json()["fields"]] == [field]

    @pytest.mark.parametrize(("method", "path", "options"), [
        ("GET", "/v1/dead-letters", {}),
        ("POST", "/v1/dead-letters/replay", {"json": {"ids": ["0:1"]}}),
    ])
    async def test_kafka_unreachable_is_a_503_with_retry_after(
            self, method: str, path: str, options: dict[str, Any], sqlite_url: str) -> None:
        nowhere = Settings(kafka_bootstrap_servers=f"127.0.0.1:{ports.free_port()}",
                           database_url=sqlite_url, retry_after_seconds=7)
        response = await call(nowhere, method, path, **options)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"] == "unavailable"
