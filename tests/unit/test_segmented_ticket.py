"""What the segmenter stage publishes for a ticket: the segmented ticket's
`segmentation.decided_by`, bound for department topics, carries no personal data."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from services.core import batches, envelope, tickets, topics
from services.core.outage import StoreOutage
from services.segmenter import live_rules, rules, rules_file, worker
from services.segmenter.profiles import (
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)

RULES = rules_file.parse(
    "version: t\ndefault_segment: general\nrules:\n"
    "  - name: seniors\n    segment: care_plus\n"
    "    when: customer.age_years != null && customer.age_years >= 75"
    " && customer.gender == 'female' && size(customer.attributes) > 0"
    " && customer.birth_date != null && customer.country == 'NL'\n",
    source="segments.yaml")

SENIOR = Customer(
    "c-1",
    CustomerProfile("c-1", CustomerType.INDIVIDUAL, birth_date=date(1941, 3, 9),
                    gender="female", country="NL", language="nl",
                    attributes={"nickname": "Granny Quaglione"}),
    ValueFeatures(), Tier.EXISTING)


async def lookup(_customer_id: str, **_: Any) -> Customer:
    return SENIOR


def received(ticket_id: str, customer_id: str = "c-1") -> envelope.Event:
    return envelope.Event(
        type="ticket.received", source="/test", ticket_id=ticket_id, correlation_id="corr",
        data={"ticket_id": ticket_id, "customer_id": customer_id, "subject": "s",
              "body": "b", "channel": "email", "received_at": datetime.now(UTC).isoformat()})


async def known(customer_id: str, **_: Any) -> Customer:
    return Customer(customer_id, CustomerProfile(customer_id, CustomerType.INDIVIDUAL),
                    ValueFeatures(), Tier.EXISTING)


class TestSegmentedTicket:
    async def test_decided_by_names_protected_attributes_and_maps_without_values(
            self) -> None:
        stage = worker.SegmentTicket(lookup=lookup, current_rules=lambda: RULES)
        outputs = await stage(received("t-1"))
        segmented = segmented_event(outputs)
        segmentation = segmented.data["segmentation"]
        assert segmentation["segment"] == "care_plus"
        assert segmentation["decided_by"] == {
            "customer.age_years": rules.WITHHELD, "customer.gender": rules.WITHHELD,
            "customer.attributes": rules.WITHHELD, "customer.birth_date": rules.WITHHELD,
            "customer.country": "NL"}
        published = json.dumps(segmentation)
        for personal in ("female", "1941-03-09", "Granny"):
            assert personal not in published

    async def test_the_segmented_ticket_is_the_received_one_with_its_segmentation(
            self) -> None:
        stage = worker.SegmentTicket(lookup=lookup, current_rules=lambda: RULES)
        event = received("t-2")
        event = envelope.Event(type=event.type, source=event.source, ticket_id="t-2",
                               correlation_id="corr", data={**event.data, "smuggled": 1})
        outputs = await stage(event)
        data = segmented_event(outputs).data
        ticket = tickets.Ticket.model_validate(event.data)
        segmentation = tickets.Segmentation.model_validate(data["segmentation"])
        assert data == ticket.with_segmentation(segmentation).model_dump(mode="json")
        assert tickets.SegmentedTicket.model_validate(data).model_dump(mode="json") == data
        assert "smuggled" not in data


def segmented_event(records: Sequence[envelope.Record]) -> envelope.Event:
    """The segmented ticket among a stage's records, read back."""
    return next(envelope.from_record(r.headers, r.value) for r in records
                if r.topic == topics.SEGMENTED)


def consumed(event: envelope.Event, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    """The event as the stage's consumer hands it over."""
    record = envelope.encode(topics.INCOMING, "c-1", event)
    return ConsumerRecord(
        topic=record.topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=record.key, value=record.value, checksum=None,
        serialized_key_size=len(record.key), serialized_value_size=len(record.value),
        headers=list(record.headers))


class TestRuleFailure:
    async def test_a_rule_failing_on_a_ticket_does_not_hold_and_is_counted_without_values(
            self, caplog: pytest.LogCaptureFixture) -> None:
        """A rule that fails on a ticket's data (here CEL's message would repeat the
        customer's email, a key not in the map) does not hold for it: the ticket is
        segmented by the rules that can read it, not dead-lettered, and the failure is
        counted and logged by the rule and the kind of failure only."""
        email = "john.doe@example.com"
        by_email = rules_file.parse(
            "default_segment: general\nrules:\n  - name: by-email\n    segment: vip\n"
            "    when: has(customer.attributes.email)"
            " && customer.attributes[customer.attributes.email] == 'x'\n",
            source="segments.yaml")

        async def emailed(customer_id: str, **_: Any) -> Customer:
            return Customer(customer_id, CustomerProfile(
                customer_id, CustomerType.INDIVIDUAL, attributes={"email": email}),
                ValueFeatures(), Tier.EXISTING)

        def failures() -> float:
            return REGISTRY.get_sample_value("routing_segment_rule_failures_total",
                                             {"rule": "by-email"}) or 0.0

        stage = worker.SegmentTicket(lookup=emailed, current_rules=lambda: by_email)
        before = failures()
        with caplog.at_level(logging.WARNING):
            segmented, lifecycle = await batches.Batches(stage, stage="segmenter").outgoing(
                [consumed(received("t-1"))])
        assert (segmented.topic, lifecycle.topic) == (topics.SEGMENTED, topics.EVENTS)
        assert envelope.from_record(segmented.headers, segmented.value).data[
            "segmentation"]["segment"] == "general"
        assert failures() == before + 1
        [logged] = [r for r in caplog.records if "segment rule failed" in r.getMessage()]
        # README's words for it: the message, and the fields it names.
        assert (logged.levelno, logged.getMessage()) == (
            logging.WARNING, "a segment rule failed on a ticket's data: it did not hold")
        assert (logged.rule, logged.kind, logged.ticket_id,  # type: ignore[attr-defined]
                logged.rules_version) == (  # type: ignore[attr-defined]
            "by-email", "NOT_FOUND", "t-1", by_email.version)
        assert email not in json.dumps(logged.__dict__, default=str)
        assert email.encode() not in segmented.value + lifecycle.value


    def test_each_rule_is_at_0_failures_once_its_rule_set_is_in_force(
            self, tmp_path: Path) -> None:
        """Before any ticket: a series born at its first failure, at 1, is no increase
        to Prometheus, and the first failure after a start or a new version would not
        raise RoutingSegmentRuleFailing."""
        path = tmp_path / "segments.yaml"
        path.write_text("default_segment: general\nrules:\n"
                        "  - name: loaded-at-0\n    segment: vip\n    when: \"true\"\n",
                        encoding="utf-8")
        live_rules.live_rule_set(path)
        assert REGISTRY.get_sample_value("routing_segment_rule_failures_total",
                                         {"rule": "loaded-at-0"}) == 0.0


class TestCounted:
    async def test_a_share_counts_its_tickets_once_committed_not_when_transformed(
            self) -> None:
        """Tickets per known customer join the tally once their share is committed: an
        attempt that failed (its task and context gone) and the one after it that was
        committed count once."""
        stage = worker.SegmentTicket(lookup=known, current_rules=lambda: RULES)

        async def attempt(*, commits: bool) -> None:  # each attempt runs in a task of its own
            await stage.prefetch([received("t-a", "a")])
            await stage(received("t-a", "a"))
            assert stage.tally == {}
            if commits:
                stage.committed()

        await asyncio.create_task(attempt(commits=False))
        await asyncio.create_task(attempt(commits=True))
        assert stage.tally == {"a": 1}


    async def test_a_ticket_whose_records_cannot_be_written_is_dead_lettered_uncounted(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A ticket within the record budget as received, over it once segmented
        (envelope.Unserialisable), is dead-lettered: its share, committed, does not
        count it. (The budget is made small here: a ticket is over the broker's only
        near its limits, its segmentation copying values it read.)"""
        encode = envelope.encode

        def with_a_small_budget(topic: str, key: str, event: envelope.Event,
                                **_: Any) -> envelope.Record:
            return encode(topic, key, event,
                          max_bytes=5_000 if topic == topics.SEGMENTED else 1_000_000)

        monkeypatch.setattr(envelope, "encode", with_a_small_budget)
        stage = worker.SegmentTicket(lookup=known, current_rules=lambda: RULES)
        fits, swollen = received("t-fits", "a"), received("t-big", "a")
        swollen = envelope.Event(type=swollen.type, source=swollen.source, ticket_id="t-big",
                                 correlation_id="corr", data={**swollen.data, "body": "x" * 4_900})
        share = batches.Batches(stage, stage="segmenter")

        async def attempt() -> list[envelope.Record]:  # a share's attempt: a task of its own
            sent = await share.outgoing([consumed(fits, 0), consumed(swollen, 1)])
            share.committed()
            return sent

        sent = await asyncio.create_task(attempt())
        assert [r.topic for r in sent] == [topics.SEGMENTED, topics.EVENTS,
                                           topics.DEAD_LETTERS]
        assert dict(sent[2].headers)[topics.DLQ_ERROR_CLASS] == b"Unserialisable"
        assert stage.tally == {"a": 1}


class TestSharesApart:
    async def test_each_share_counts_its_own_tickets(self) -> None:
        """Two partitions' shares segmented at once, each in its task: a share that
        is committed adds its own tickets to the tally, not those of a share still going
        (or failed), whose prefetch came in between."""
        stage = worker.SegmentTicket(lookup=known, current_rules=lambda: RULES)
        counted, other_started = asyncio.Event(), asyncio.Event()

        async def finishing() -> None:
            await stage.prefetch([received("t-a", "a")])
            await stage(received("t-a", "a"))
            counted.set()
            await other_started.wait()
            stage.committed()

        async def failing() -> None:  # prefetched and counted, never finished
            await counted.wait()
            await stage.prefetch([received("t-b", "b")])
            await stage(received("t-b", "b"))
            other_started.set()

        await asyncio.gather(asyncio.create_task(finishing()),
                             asyncio.create_task(failing()))
        assert stage.tally == {"a": 1}
        assert stage.shares_apart

    async def test_one_share_going_by_the_cache_leaves_the_others_asking_the_store(
            self) -> None:
        """A share that met the store down past its grace goes by the cache; a share
        running meanwhile, whose store call answers, segments from the store."""
        asked: list[str] = []

        async def store(customer_id: str, **kwargs: Any) -> Customer:
            asked.append(customer_id)
            if customer_id == "down":
                raise OSError("connection refused")
            return await known(customer_id, **kwargs)

        stage = worker.SegmentTicket(lookup=store, current_rules=lambda: RULES,
                                     outage=StoreOutage(0.0))
        other_prefetched, cache_only = asyncio.Event(), asyncio.Event()

        async def going_by_the_cache() -> envelope.Event:
            await other_prefetched.wait()
            await stage.prefetch([received("t-a", "down")])
            outputs = await stage(received("t-a", "down"))  # past the grace: the cache
            cache_only.set()
            return segmented_event(outputs)

        async def asking_the_store() -> envelope.Event:
            await stage.prefetch([received("t-b", "b")])
            other_prefetched.set()
            await cache_only.wait()
            outputs = await stage(received("t-b", "b"))
            return segmented_event(outputs)

        degraded, segmented = await asyncio.gather(
            asyncio.create_task(going_by_the_cache()), asyncio.create_task(asking_the_store()))
        assert degraded.data["segmentation"]["degraded"] == worker.STORE_DOWN
        assert segmented.data["segmentation"]["customer_known"] is True
        assert asked == ["down", "b"]
