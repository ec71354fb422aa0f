"""Listing dead letters: source, reason and ids without values, filters, pages, values
on request."""

from __future__ import annotations

import asyncio
import base64

from aiokafka import AIOKafkaProducer

from services.core import dead_letter_reading
from services.core.settings import Settings
from services.router import dead_letters
from tests.conftest import unique
from tests.integration.dead_letters.dead_lettering import dead_letter, some_dead_letters


class TestListing:
    async def test_dead_letters_show_source_reason_and_ids_but_not_values(
            self, settings: Settings, producer: AIOKafkaProducer, source_topic: str) -> None:
        made = await some_dead_letters(producer, source_topic, 3, error_class="ValidationError")
        listed = await dead_letters.list_dead_letters(settings, source_topic=source_topic)
        assert [item["id"] for item in listed] == sorted(made, key=dead_letter_reading.parse_id)
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
        assert [i for page in pages for i in page] == sorted(made, key=dead_letter_reading.parse_id)

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
