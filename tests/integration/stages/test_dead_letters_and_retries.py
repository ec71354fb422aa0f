"""A stage meeting records it cannot process: dead letters with their reason, bounded
retries of transient failures, a segment rule failing at run time, a customer row the
store cannot read."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from sqlalchemy.engine import make_url

from services.core import db, envelope, kafka, logs, migrate, topics
from services.core.settings import Settings
from services.core.stage import StageRunner
from services.router import worker
from services.segmenter import rules_file
from services.segmenter.cache import CustomerCache
from services.segmenter.models import CustomerRow
from services.segmenter.store import CustomerStore
from tests.conftest import read_topic, unique
from tests.integration.stages.stage_records import (
    TABLE,
    dead_letters_marked,
    publish,
    publish_received,
    router_runner,
    segmented_event,
    segmenter_runner,
)


class TestDeadLetters:
    async def test_poison_records_go_to_the_dlq_with_reasons_and_good_ones_flow(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        good = segmented_event("government")
        marker = unique("poison")
        headers = envelope.to_headers(good)
        poison: dict[str, tuple[bytes, list[tuple[str, bytes]]]] = {
            "not-json": (b"\xff not json", headers),
            "no-headers": (b"{}", []),
            "schema-version": (envelope.to_value(good),
                               [(k, b"9" if k == "ce_schemaversion" else v)
                                for k, v in headers]),
            "missing-fields": (b'{"ticket_id": "x"}', headers),
        }
        for name, (value, record_headers) in poison.items():
            await raw_producer.send_and_wait(topics.SEGMENTED, value, key=f"{marker}:{name}"
                                             .encode(), headers=record_headers)
        await publish(raw_producer, topics.SEGMENTED, good)
        runner = router_runner(stage_settings, unique("router"))
        await runner.start()
        try:
            delivered = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         "dept.public_sector", until=1,
                                         keep=lambda e: e.ticket_id == good.ticket_id)
            dead = await dead_letters_marked(stage_settings.kafka_bootstrap_servers, marker, 4)
        finally:
            await runner.stop()
        assert len(delivered) == 1
        assert set(dead) == set(poison)
        for name, dead_headers in dead.items():
            assert dead_headers["dlq_source_topic"] == topics.SEGMENTED
            assert int(dead_headers["dlq_source_offset"]) >= 0
            assert dead_headers["dlq_source_partition"].isdigit()
            assert dead_headers["dlq_error"], name
        assert dead["not-json"]["dlq_error_class"] == "EnvelopeError"
        assert "missing CloudEvents headers" in dead["no-headers"]["dlq_error"]
        assert "unknown schema version" in dead["schema-version"]["dlq_error"]
        assert dead["missing-fields"]["dlq_error_class"] == "ValidationError"
        assert "customer_id: Field required" in dead["missing-fields"]["dlq_error"]


class TestRetries:
    async def test_a_transient_failure_retries_the_batch_and_loses_nothing(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        calls = {"n": 0}
        real = worker.RouteTicket(lambda: TABLE)

        async def flaky(event: envelope.Event) -> list[kafka.Output]:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("database went away")
            return await real(event)

        event = segmented_event("government")
        await publish(raw_producer, topics.SEGMENTED, event)
        runner = StageRunner(stage_settings, name="router-test", source_topic=topics.SEGMENTED,
                             group_id=unique("router"), transform=flaky)
        runner.loop._retry_pause = 0.1
        await runner.start()
        try:
            found = await read_topic(stage_settings.kafka_bootstrap_servers,
                                     "dept.public_sector", until=1,
                                     keep=lambda e: e.ticket_id == event.ticket_id)
        finally:
            await runner.stop()
        assert len(found) == 1
        assert calls["n"] >= 2


class TestRuleFailingAtRunTime:
    async def test_the_rule_does_not_hold_for_that_ticket_which_flows_on_with_the_next(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer) -> None:
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(CustomerRow.__table__.insert(), [
                {"customer_id": "odd-1", "customer_type": "individual",
                 "attributes": {"level": "high"}},
                {"customer_id": "fine-1", "customer_type": "individual",
                 "attributes": {"level": 5}}])
        store = CustomerStore(db.sessions(engine),
                              cache=CustomerCache(max_customers=100, ttl_seconds=60))
        rule_set = rules_file.parse(
            "default_segment: general\nrules:\n  - name: levels\n    segment: high_level\n"
            "    when: has(customer.attributes.level) && customer.attributes.level > 3\n",
            source="levels.yaml")
        marker = unique("odd")
        sent = {}
        for customer_id in ("odd-1", "fine-1"):
            sent[customer_id] = f"{marker}-{customer_id}"
            await publish_received(raw_producer, sent[customer_id], customer_id)
        runner = segmenter_runner(stage_settings, store, rule_set)
        await runner.start()
        try:
            segmented = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         topics.SEGMENTED, until=2,
                                         keep=lambda e: e.ticket_id in sent.values())
        finally:
            await runner.stop()
            await engine.dispose()
        segments = {event.ticket_id: event.data["segmentation"]["segment"]
                    for event, _record in segmented}
        # The odd customer's level is text: the rule fails on it and does not hold.
        assert segments == {sent["odd-1"]: "general", sent["fine-1"]: "high_level"}
        assert await read_topic(stage_settings.kafka_bootstrap_servers, topics.DEAD_LETTERS,
                                until=0, keep=lambda e: e.ticket_id in sent.values()) == []


class TestUndecodableStoredText:
    async def test_a_customer_row_sqlite_cannot_decode_dead_letters_its_ticket_alone(
            self, stage_settings: Settings, raw_producer: AIOKafkaProducer,
            caplog: pytest.LogCaptureFixture) -> None:
        """A customer whose gender the store holds as bytes that are not UTF-8: SQLite
        fails the read (its message quoting the text) every time, so it is no outage to
        wait out: the ticket is dead-lettered, the next flows on, and neither the log
        nor the dead letter quotes the stored text."""
        caplog.set_level(logging.INFO)
        await migrate.upgrade(stage_settings.database_url)
        engine = db.engine(stage_settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(CustomerRow.__table__.insert(), [
                {"customer_id": "garbled-1", "customer_type": "individual", "attributes": {}},
                {"customer_id": "fine-1", "customer_type": "individual", "attributes": {}}])
        stored_text = "Henrietta Quaglione"
        database = make_url(stage_settings.database_url).database
        assert database is not None
        with contextlib.closing(sqlite3.connect(database)) as raw, raw:
            raw.execute("UPDATE customers SET gender = CAST(? AS TEXT)"
                        " WHERE customer_id = 'garbled-1'", (stored_text.encode() + b" \xff",))
        store = CustomerStore(db.sessions(engine),
                              cache=CustomerCache(max_customers=100, ttl_seconds=60))
        rule_set = rules_file.load(Path("config/segments.yaml"))
        garbled, fine = unique("garbled"), unique("fine")
        await publish_received(raw_producer, garbled, "garbled-1")
        await publish_received(raw_producer, fine, "fine-1")
        runner = segmenter_runner(stage_settings, store, rule_set)
        runner.loop._retry_pause = 0.1
        await runner.start()
        try:
            dead = await read_topic(stage_settings.kafka_bootstrap_servers,
                                    topics.DEAD_LETTERS, until=1,
                                    keep=lambda e: e.ticket_id == garbled)
            segmented = await read_topic(stage_settings.kafka_bootstrap_servers,
                                         topics.SEGMENTED, until=1,
                                         keep=lambda e: e.ticket_id in (garbled, fine))
        finally:
            await runner.stop()
            await engine.dispose()
        assert [event.ticket_id for event, _record in segmented] == [fine]
        assert len(dead) == 1
        letter = dead[0][1]
        assert isinstance(letter, ConsumerRecord)
        headers = {name: value.decode() for name, value in letter.headers}
        assert headers["dlq_error"] == ("column 'gender' of a row the record needs holds"
                                        " text that is not UTF-8 in the store"
                                        " (OperationalError)")
        assert headers["dlq_error_class"] == "OperationalError"
        formatter = logs.TextWithFields("%(levelname)s %(name)s %(message)s")
        logged = "\n".join(formatter.format(record) for record in caplog.records)
        assert "record sent to the dead-letter topic" in logged
        assert "Henrietta" not in logged
        assert "Henrietta" not in str(headers)
