"""The contracts every consumer reads by: the envelope, the ticket and the lifecycle event
refuse what breaks them with a reason, and faults are classified once."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from pydantic import ValidationError
from sqlalchemy.exc import DataError, OperationalError

from services.core import config_files, envelope, events, faults, tickets, tiers, topics
from services.core.settings import Settings
from services.router import app as router_app
from services.router import dead_letter_records
from services.segmenter import admin_api, rows

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
README = Path(__file__).resolve().parents[2] / "README.md"


def headers(**replaced: bytes | None) -> list[tuple[str, Any]]:
    event = envelope.Event(type="ticket.received", source="/test", ticket_id="t-1",
                           correlation_id="c-1", data={})
    written = dict(envelope.to_headers(event))
    written.update(replaced)
    return list(written.items())


def ticket(**changed: Any) -> dict[str, Any]:
    return {"ticket_id": "t-1", "customer_id": "c-1", "subject": "s", "body": "b",
            "channel": "email", "received_at": NOW.isoformat(), **changed}


class TestEnvelopeReader:
    @pytest.mark.parametrize(("replaced", "problem"), [
        ({"ce_type": None}, "header 'ce_type' has no value"),
        ({"ce_source": b"\xff\xfe"}, "header 'ce_source' is not UTF-8 text"),
        ({"ce_time": b"2026-11-30T09:00:00"}, "ce_time: not an RFC 3339 timestamp with offset"),
        ({"ce_time": b"yesterday"}, "ce_time: not an RFC 3339 timestamp with offset"),
        ({"ce_time": b"2026-11-30 09:00+00:00"}, "ce_time: not an RFC 3339 timestamp"),
        ({"ce_time": b"0001-01-01T00:00:00+01:00"}, "ce_time: outside the years 1 to 9999"),
        ({"ce_id": b"x" * 65}, "ce_id must be 1 to 64 characters"),
        ({"ce_ticketid": b"t" * 129}, "ce_ticketid must be 1 to 128 characters"),
    ])
    def test_a_malformed_header_is_an_envelope_error(
            self, replaced: dict[str, bytes | None], problem: str) -> None:
        with pytest.raises(envelope.EnvelopeError, match=problem):
            envelope.from_record(headers(**replaced), b"{}")

    def test_headers_that_are_not_pairs_are_an_envelope_error(self) -> None:
        with pytest.raises(envelope.EnvelopeError):
            envelope.from_record([("ce_id",)], b"{}")  # type: ignore[list-item]

    def test_a_value_that_is_not_bytes_is_an_envelope_error(self) -> None:
        with pytest.raises(envelope.EnvelopeError, match="not bytes"):
            envelope.from_record(headers(), "{}")  # type: ignore[arg-type]


class TestEncoding:
    def test_an_event_over_the_size_bound_is_unserialisable(self) -> None:
        event = envelope.Event(type="t", source="/test", ticket_id="t-1",
                               correlation_id="c", data={"body": "x" * 2000})
        with pytest.raises(envelope.Unserialisable, match="at most 1000"):
            envelope.encode("topic", "key", event, max_bytes=1000)

    def test_data_that_is_not_json_is_unserialisable(self) -> None:
        event = envelope.Event(type="t", source="/test", ticket_id="t-1",
                               correlation_id="c", data={"n": 2**70})
        with pytest.raises(envelope.Unserialisable):
            envelope.encode("topic", "key", event)


class TestTicketContract:
    @pytest.mark.parametrize(("attributes", "problem"), [
        ({"n": 2**63}, "must fit in 64 bits"),
        ({"n": -(2**63) - 1}, "must fit in 64 bits"),
        ({"n": float("nan")}, "must be finite"),
        ({"n": float("inf")}, "must be finite"),
        ({"n": 1e300}, "at least -2\\^63 and below 2\\^63"),
        ({"n": 2.0**63}, "at least -2\\^63 and below 2\\^63"),  # 2^63-1 as a float
        ({"s": "\ud800"}, "not valid Unicode"),
        ({"s": "a\x00b"}, "NUL"),
        ({"\udfff": "key"}, "not valid Unicode"),
        ({"s": "x" * 1001}, "at most 1000"),
        ({"s": [1, 2]}, "text, a number or true/false"),
    ])
    def test_attributes_that_no_stage_could_carry_are_refused(
            self, attributes: dict[str, Any], problem: str) -> None:
        with pytest.raises(ValidationError, match=problem):
            tickets.Ticket.model_validate(ticket(attributes=attributes))

    def test_what_json_parsing_makes_of_odd_numbers_is_refused(self) -> None:
        for raw in ('{"n": NaN}', '{"n": 1e400}', '{"n": 100000000000000000000000}'):
            with pytest.raises(ValidationError):
                tickets.Ticket.model_validate(ticket(attributes=json.loads(raw)))

    def test_the_limits_of_64_bits_and_finite_numbers_are_accepted(self) -> None:
        values = {"max": 2**63 - 1, "min": -(2**63), "big": math.nextafter(2.0**63, 0),
                  "flag": True, "t": "é"}
        accepted = tickets.Ticket.model_validate(ticket(attributes=values))
        assert accepted.attributes == values
        assert accepted.attributes["flag"] is True

    @pytest.mark.parametrize("field", ["subject", "body"])
    def test_text_that_is_not_valid_unicode_is_refused(self, field: str) -> None:
        with pytest.raises(ValidationError, match="not valid Unicode"):
            tickets.Ticket.model_validate(ticket(**{field: "x\udc80"}))

    def test_a_time_without_offset_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="received_at"):
            tickets.Ticket.model_validate(ticket(received_at="2026-11-30T09:00:00"))

    def test_a_ticket_carries_only_its_fields_on(self) -> None:
        read = tickets.Ticket.model_validate(ticket(smuggled="x" * 100))
        segmentation = tickets.Segmentation(segment="s", rule="r", rules_version="v",
                                            customer_known=True, tier="existing")
        assert "smuggled" not in read.with_segmentation(segmentation).model_dump()

    def test_a_subject_of_only_spaces_accepted_before_is_still_read(self) -> None:
        """The intake refuses one now (TicketSubmission); a record of one it took before
        is read by every stage, not dead-lettered."""
        assert tickets.Ticket.model_validate(ticket(subject="   ")).subject == "   "

    @pytest.mark.parametrize(("recorded", "read"), [
        ("en-12", "en-12"), ("nl-a1", "nl-a1"), ("nl-be", "nl-BE"), ("zh-Hant-TW", "zh-Hant-TW"),
        ("ZH-hant-tw", "zh-Hant-TW")])
    def test_a_language_the_intake_took_before_is_still_read(self, recorded: str,
                                                              read: str) -> None:
        """The intake takes BCP 47 tags alone now (TicketSubmission); a record of a
        language it took before ("en-12", no BCP 47 tag) is read by every stage, not
        dead-lettered, and a tag is read in its canonical case, as rules compare it."""
        assert tickets.Ticket.model_validate(ticket(language=recorded)).language == read

    @pytest.mark.parametrize("recorded", ["pt_BR", "english", "x-private", "en-" + "a" * 9])
    def test_a_language_neither_took_is_refused(self, recorded: str) -> None:
        with pytest.raises(ValidationError, match="language"):
            tickets.Ticket.model_validate(ticket(language=recorded))


def segmentation(tier: str) -> dict[str, Any]:
    return {"segment": "s", "rule": "r", "rules_version": "v", "customer_known": True,
            "tier": tier}


class TestSegmentationTier:
    @pytest.mark.parametrize("tier", [*tiers.NAMES, tiers.UNKNOWN])
    def test_a_tier_travels_as_its_name(self, tier: str) -> None:
        read = tickets.Segmentation.model_validate(segmentation(tier))
        assert json.loads(read.model_dump_json())["tier"] == tier
        assert read.model_dump(mode="json")["tier"] == tier

    def test_a_known_tier_is_read_as_the_tier(self) -> None:
        read = tickets.Segmentation.model_validate_json(json.dumps(
            segmentation("most_valuable")))
        assert read.tier is tiers.Tier.MOST_VALUABLE

    def test_a_tier_that_does_not_exist_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="tier"):
            tickets.Segmentation.model_validate(segmentation("platinum"))


class TestSegmentationText:
    """A segmented ticket from any writer of the topic is held to the ticket's rules for
    text: no NUL, valid Unicode, single values (the router stores it as JSON, and
    PostgreSQL's jsonb, read by its migrations, takes no NUL)."""

    @pytest.mark.parametrize(("field", "value"), [
        ("rule", "r\u0000"), ("rules_version", "v\u0000"), ("degraded", "\u0000"),
        ("decided_by", {"customer.type": "b\u0000"}), ("decided_by", {"k\u0000": 1}),
        ("decided_by", {"customer": {"type": "b2b"}}), ("decided_by", {"x": "\ud800"}),
        ("degraded", "x" * 201)])
    def test_text_no_store_could_hold_is_refused(self, field: str, value: Any) -> None:
        with pytest.raises(ValidationError, match=field):
            tickets.Segmentation.model_validate(json.loads(json.dumps(
                {**segmentation("unknown"), field: value})))

    def test_a_path_of_any_length_a_rule_reads_is_carried(self) -> None:
        """A rule may read an attribute of a long name: the ticket it decides carries the
        path, not dead-lettered for it."""
        path = "ticket.attributes." + "a" * 250
        read = tickets.Segmentation.model_validate(
            {**segmentation("unknown"), "decided_by": {path: True}})
        assert read.decided_by == {path: True}

    def test_what_the_segmenter_writes_is_read_as_written(self) -> None:
        written = {**segmentation("unknown"), "degraded": "customer store unavailable",
                   "decided_by": {"customer.type": "b2b", "tier": None, "score": 1.5,
                                  "vip": True, "customer.name": "WITHHELD"}}
        read = tickets.Segmentation.model_validate_json(json.dumps(written))
        assert read.model_dump(mode="json") == {**written, "tier": "unknown"}


def lifecycle(kind: events.TicketEventType, source: str, **data: Any) -> envelope.Event:
    return envelope.Event(type=kind, source=source, ticket_id="t-1", correlation_id="c",
                          data={"ticket_id": "t-1", "type": kind,
                                "occurred_at": NOW.isoformat(), **data})


class TestLifecycleContract:
    def test_every_event_is_trusted_from_its_writer(self) -> None:
        for kind, source in events.WRITTEN_BY.items():
            assert events.read(lifecycle(kind, source)).type == kind

    def test_readme_lists_every_type_with_its_writer(self) -> None:
        """README, "How it works": the pipeline's events, then the reports (written by
        the intake), then the writers; exactly the types there are."""
        text = " ".join(README.read_text(encoding="utf-8").split())
        said = text.split("**Lifecycle events** on `tickets.events`: ", 1)[1]
        pipeline, reports = said.split(" over the router's HTTP API", 1)[0].split(
            " from the pipeline; ")
        listed = [re.findall(r"`(ticket\.[a-z_]+)`", words) for words in (pipeline, reports)]
        assert sorted(listed[0]) == sorted(
            kind for kind, source in events.WRITTEN_BY.items()
            if kind not in events.REPORTS)
        assert sorted(listed[1]) == sorted(events.REPORTS)
        assert set(events.WRITTEN_BY) == set(events.TicketEventType)
        assert {events.WRITTEN_BY[kind] for kind in events.REPORTS} == {events.INTAKE_SOURCE}
        assert "`/services/router/intake` for `received` and the reports" in said

    def test_no_event_carries_the_tickets_text_or_its_customer(self) -> None:
        """README: ids, department, segment and times, never the ticket's text or
        personal data; what a department's ticket carries of its customer stays there."""
        personal = set(tickets.Ticket.model_fields) - {
            "ticket_id", "received_at", "platform", "channel", "kind"}
        assert {"subject", "body", "customer_id", "attributes"} <= personal
        assert set(events.TicketEvent.model_fields) & personal == set()

    def test_a_report_from_anyone_but_the_intake_is_untrusted(self) -> None:
        forged = lifecycle(events.TicketEventType.RESPONDED, "/departments/key_accounts")
        with pytest.raises(events.UntrustedEvent, match="written by /services/router/intake"):
            events.read(forged)

    def test_an_unknown_type_is_untrusted(self) -> None:
        with pytest.raises(events.UntrustedEvent, match="unknown lifecycle event type"):
            events.read(lifecycle("ticket.vanished", events.ROUTER_SOURCE))  # type: ignore[arg-type]

    def test_an_unknown_type_or_source_is_told_by_its_length(self) -> None:
        """The reason goes to logs and dead-letter headers: the sender's ce_type or
        ce_source (jane.doe) is not quoted; a source of ours is."""
        with pytest.raises(events.UntrustedEvent) as raised:
            events.read(lifecycle("jane.doe", events.ROUTER_SOURCE))  # type: ignore[arg-type]
        assert str(raised.value) == "unknown lifecycle event type (8 characters, not shown)"
        with pytest.raises(events.UntrustedEvent) as raised:
            events.read(lifecycle(events.TicketEventType.RESPONDED, "john_smith-1980"))
        assert str(raised.value) == (
            "ticket.responded is written by /services/router/intake only, not by an unknown"
            " source (15 characters, not shown)")
        with pytest.raises(events.UntrustedEvent) as raised:
            events.read(lifecycle(events.TicketEventType.RESPONDED, events.ROUTER_SOURCE))
        assert str(raised.value).endswith(f"only, not by {events.ROUTER_SOURCE!r}")

    def test_data_about_another_ticket_is_untrusted(self) -> None:
        event = lifecycle(events.TicketEventType.ROUTED, events.ROUTER_SOURCE)
        other = envelope.Event(type=event.type, source=event.source, ticket_id="t-2",
                               correlation_id="c", data=event.data)
        with pytest.raises(events.UntrustedEvent, match="does not match"):
            events.read(other)

    @pytest.mark.parametrize(("field", "value"), [
        ("department", "d" * 64), ("department", "Key Accounts"),
        ("segment", "x" * 100), ("occurred_at", "2026-11-30T09:00:00"),
        ("priority", 10**6), ("reason", "r" * 33), ("ticket_id", "t" * 129)])
    def test_data_that_breaks_the_contract_is_refused(self, field: str, value: Any) -> None:
        event = lifecycle(events.TicketEventType.ROUTED, events.ROUTER_SOURCE,
                          **{field: value})
        with pytest.raises((ValidationError, events.UntrustedEvent)):
            events.read(event)


class TestClassification:
    @pytest.mark.parametrize(("error", "fault"), [
        (OperationalError("SELECT", {}, ConnectionRefusedError()), faults.Fault.OUTAGE),
        (DataError("INSERT", {}, ValueError("too long")), faults.Fault.RECORD),
        (KafkaConnectionError(), faults.Fault.OUTAGE),
        (MessageSizeTooLargeError(), faults.Fault.RECORD),
        (TimeoutError(), faults.Fault.OUTAGE),
        (ConnectionResetError(), faults.Fault.OUTAGE),
        (faults.Transient("later"), faults.Fault.TRANSIENT),
        (KeyError("x"), faults.Fault.RECORD),
        (OverflowError("date value out of range"), faults.Fault.RECORD),
        (envelope.EnvelopeError("no"), faults.Fault.RECORD),
    ])
    def test_each_error_has_one_class(self, error: Exception, fault: faults.Fault) -> None:
        assert faults.classify(error) is fault

    def test_a_reason_never_repeats_an_unexpected_errors_message(self) -> None:
        assert faults.reason(KeyError("Jane Doe")) == \
            "unexpected KeyError while processing the record"
        assert "Jane" not in faults.reason(DataError("INSERT", {"name": "Jane"}, ValueError()))

    def test_a_validation_reason_names_the_field_not_the_value(self) -> None:
        with pytest.raises(ValidationError) as refused:
            tickets.Ticket.model_validate(ticket(subject="", customer_id="Jane Doe!"))
        reason = faults.reason(refused.value)
        assert "customer_id" in reason and "subject" in reason
        assert "Jane" not in reason


class TestConfigurationText:
    @pytest.mark.parametrize(("text", "problem"), [
        ('version: "\\ud800"', "not valid Unicode"), ('rule: "a\\0b"', "NUL"),
        ('"\\udfff": key', "not valid Unicode")])
    def test_a_yaml_escape_no_service_could_store_is_refused_with_its_line(
            self, text: str, problem: str) -> None:
        with pytest.raises(config_files.ConfigError, match=f"rules.yaml:1: .*{problem}"):
            config_files.load_yaml("rules.yaml", text)


class TestCustomerContract:
    def test_customer_attributes_follow_the_ticket_attribute_rules(self) -> None:
        for attributes in ({"n": 2**64}, {"n": float("nan")}, {"s": "\ud800"}):
            with pytest.raises(ValidationError):
                admin_api.CustomerIn(customer_type="individual", attributes=attributes)

    def test_personal_text_that_no_store_could_hold_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="NUL"):
            admin_api.CustomerIn(customer_type="individual", name="Jane\x00")

    @pytest.mark.parametrize(("amount", "cents"), [
        (19.99, "19.99"), (0.1 + 0.2, "0.30"), ("10.5", "10.50"),
        (999_999_999_999.99, "999999999999.99"), (123456.78, "123456.78"),
        (1792.6599999999994, "1792.66")])  # a sum of prices, three last places off
    def test_an_amount_is_read_to_the_cent(self, amount: object, cents: str) -> None:
        purchase = admin_api.PurchaseIn(amount=amount, currency="EUR")
        assert purchase.amount.quantize(Decimal("0.01")) == Decimal(cents)

    @pytest.mark.parametrize("amount", [0.001, 0, "0.00", -5, 1e13, 1e308, -1e308,
                                        123456.789, 5000000.004, 200000000000.0001,
                                        600000000000.0001, 999999999999.9805])
    def test_an_amount_that_is_not_a_positive_sum_in_cents_is_refused(
            self, amount: object) -> None:
        with pytest.raises(ValidationError, match="amount"):
            admin_api.PurchaseIn(amount=amount, currency="EUR")

    @pytest.mark.parametrize("amount", ["1e5", "1_000", " 5", "5 ", "+5",
                                        "\u0661\u0662", "\uff11\uff12"])
    def test_an_amount_is_plain_digits_alike_over_the_api_and_in_an_import(
            self, amount: str) -> None:
        """One rule (rows.Amount): the API took exponents, underscores and spaces that an
        import refused, and both took other scripts' digits."""
        with pytest.raises(ValidationError, match="amount"):
            admin_api.PurchaseIn(amount=amount, currency="EUR")
        record = rows.parse_record("purchases", 2, {
            "customer_id": "c-1", "amount": amount, "currency": "EUR",
            "purchased_at": "2026-01-01T00:00:00Z"}, today=NOW.date(), now=NOW)
        assert isinstance(record, rows.RowError) and "amount" in record.reason


class TestReceivedTicket:
    """The intake's ticket, built from the request's content and what the intake adds."""

    CONTENT = tickets.TicketContent(
        customer_id="c-1", subject="Invoice", body="missing", channel="email",
        kind="question", language="nl-BE", attributes={"order": 12, "vip": True})

    def test_is_the_ticket_a_full_validation_builds(self) -> None:
        fast = tickets.received(self.CONTENT, ticket_id="t-1", received_at=NOW,
                                platform="acme")
        full = tickets.Ticket(ticket_id="t-1", received_at=NOW, platform="acme",
                              **dict(self.CONTENT))
        assert fast == full
        assert fast.model_dump(mode="json") == full.model_dump(mode="json")
        assert fast.model_fields_set == full.model_fields_set

    @pytest.mark.parametrize(("added", "field"), [
        ({"ticket_id": "t 1"}, "ticket_id"),
        ({"received_at": datetime(2026, 11, 30, 9, 0)}, "received_at"),  # noqa: DTZ001
        ({"platform": "a\x00b"}, "platform"),
        ({"platform": ""}, "platform"),
    ])
    def test_what_the_intake_adds_is_still_checked(self, added: dict[str, Any],
                                                   field: str) -> None:
        given: dict[str, Any] = {"ticket_id": "t-1", "received_at": NOW,
                                 "platform": "acme", **added}
        with pytest.raises(ValidationError) as refused:
            tickets.received(self.CONTENT, **given)
        assert [error["loc"] for error in refused.value.errors()] == [(field,)]


class TestTheServedBoundOfANumber:
    """The OpenAPI document FastAPI serves holds a schema's numbers as floats: a maximum
    of 2^63-1 was served as 2^63, by which the integer 2^63 is valid, yet refused."""

    def test_the_served_bound_refuses_what_the_validator_refuses(self) -> None:
        document = router_app.create_app(Settings()).openapi()
        schema = document["components"]["schemas"]["TicketSubmission"]
        [number] = [choice for choice in
                    schema["properties"]["attributes"]["additionalProperties"]["anyOf"]
                    if choice["type"] == "number"]
        assert "maximum" not in number
        bound = number["exclusiveMaximum"]
        for refused in (2**63, 2.0**63):
            assert not refused < bound
            with pytest.raises(ValidationError):
                tickets.Ticket.model_validate(ticket(attributes={"n": refused}))
        for taken in (2**63 - 1, math.nextafter(2.0**63, 0)):
            assert taken < bound
            tickets.Ticket.model_validate(ticket(attributes={"n": taken}))


class TestReplayDestinations:
    @pytest.mark.parametrize("source", [
        topics.CONFIG_CHANGES, topics.CUSTOMER_EVENTS, topics.DEAD_LETTERS,
        topics.DEAD_LETTERS_REPLAYED, "dept.public_sector.high", "orders.other-application",
        "__consumer_offsets", None])
    def test_a_replay_writes_only_to_a_stages_input(self, source: str | None) -> None:
        """What a stage reads is what a stage dead-letters: nothing else a dead letter
        names (any writer of the dead-letter topic can name one) is written to."""
        existing = {*topics.PIPELINE, topics.DEAD_LETTERS_REPLAYED, "dept.public_sector.high",
                    "orders.other-application", "__consumer_offsets"}
        assert not dead_letter_records.replayable(source, existing)
        for stage_input in (topics.INCOMING, topics.SEGMENTED, topics.EVENTS):
            assert dead_letter_records.replayable(stage_input, existing)
            assert not dead_letter_records.replayable(stage_input, existing - {stage_input})

    def test_only_a_stage_input_not_described_is_worth_describing_again(self) -> None:
        """A replay waits for a missing topic only where its showing up would make the
        dead letter replayable: a stage's input, not another topic, not one described."""
        existing = {topics.INCOMING, topics.CONFIG_CHANGES}
        for stage_input in (topics.SEGMENTED, topics.EVENTS):
            assert dead_letter_records.worth_describing_again(stage_input, existing)
            assert dead_letter_records.replayable(stage_input, {*existing, stage_input})
        for source in (topics.INCOMING, topics.CUSTOMER_EVENTS, "orders.other-application",
                       None):
            assert not dead_letter_records.worth_describing_again(source, existing)

    def test_an_unreadable_dead_letter_is_described_as_any_other(self) -> None:
        """One error class for a record no client can read, whoever found it (a stage
        dead-lettering it, the listing meeting one on the dead-letter topic), and the
        same keys as a readable dead letter's description."""
        assert faults.Unreadable.__name__ == dead_letter_records.UNREADABLE
        readable = dead_letter_records.describe(ConsumerRecord(
            "tickets.dlq", 0, 7, 0, 0, b"k", b"v", None, 1, 1, []), include_value=True)
        for include_value in (False, True):
            unreadable = dead_letter_records.describe_unreadable(
                0, 7, "cannot read", include_value=include_value)
            assert unreadable.keys() == {key for key in readable if include_value
                                         or not key.startswith("value")}
