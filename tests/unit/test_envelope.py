import hashlib
import os
import random
import re
import uuid

import pytest

from services.core import envelope, topics


def sample() -> envelope.Event:
    return envelope.Event(type="ticket.received", source="/test", ticket_id="t-1",
                          correlation_id="c-1", data={"ticket_id": "t-1", "n": 1})


class TestBinaryMode:
    def test_round_trip(self) -> None:
        event = sample()
        assert envelope.from_record(envelope.to_headers(event), envelope.to_value(event)) == event

    def test_required_cloudevents_headers_are_present(self) -> None:
        names = dict(envelope.to_headers(sample()))
        for name in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time",
                     "ce_ticketid", "ce_correlationid", "content-type"):
            assert name in names
        assert names["ce_specversion"] == b"1.0"


class TestUnreadableRecords:
    def test_not_json(self) -> None:
        with pytest.raises(envelope.EnvelopeError, match="not JSON"):
            envelope.from_record(envelope.to_headers(sample()), b"\xff{nope")

    @pytest.mark.parametrize("value", [
        b"Jane Doe", b"jane.doe@example.org", b'{"name": Jane Doe}', b'{"Jane Doe" 1}',
        b'{"name": "Jane Doe"} Jane Doe', b'{"name": "Jane\\q Doe"}', b'{"name": "Jane',
        b'{"name": "Jane Doe",}', b'["Jane Doe" "x"]', b'{"name": tJane}',
        b'{"name": "Jane\x00Doe"}', b'{"name": "Jane\\ud800Doe"}', b"\xffJane Doe",
        b'{"name": 01Jane}', b"[" * 1100 + b'"Jane Doe"',
    ])
    def test_a_value_not_json_is_told_by_where_it_breaks_not_by_its_text(
            self, value: bytes) -> None:
        """The error goes to logs and dead-letter headers: orjson's message is one of its
        own phrases and a position (checked for these, as orjson 3.13 writes it), never
        the value's bytes."""
        with pytest.raises(envelope.EnvelopeError) as raised:
            envelope.from_record(envelope.to_headers(sample()), value)
        error = str(raised.value)
        assert error.startswith("value is not JSON: ")
        assert re.search(r": line \d+ column \d+ \(char \d+\)$", error)
        assert "Jane" not in error and "Doe" not in error

    def test_missing_headers(self) -> None:
        with pytest.raises(envelope.EnvelopeError, match="missing CloudEvents headers"):
            envelope.from_record([], b"{}")

    def test_unknown_schema_version(self) -> None:
        headers = [(k, b"99" if k == "ce_schemaversion" else v)
                   for k, v in envelope.to_headers(sample())]
        with pytest.raises(envelope.EnvelopeError, match="unknown schema version"):
            envelope.from_record(headers, envelope.to_value(sample()))

    @pytest.mark.parametrize("header,sent,error", [
        ("ce_specversion", b"0.3",
         "unsupported ce_specversion '0.3': only '1.0' is accepted"),
        ("ce_specversion", None, "unsupported ce_specversion (missing): only '1.0' is accepted"),
        ("ce_specversion", b"Jane Doe <jane@example.org>",
         "unsupported ce_specversion (not a version number: 27 characters, not shown):"
         " only '1.0' is accepted"),
        ("ce_schemaversion", b"99",
         "unknown schema version '99' (ce_schemaversion): only '1' is accepted"),
        ("ce_schemaversion", b"1.0.0.0.0",
         "unknown schema version (not a version number: 9 characters, not shown)"
         " (ce_schemaversion): only '1' is accepted"),
        ("ce_schemaversion", "Jäne".encode(),
         "unknown schema version (not a version number: 4 characters, not shown)"
         " (ce_schemaversion): only '1' is accepted"),
    ])
    def test_a_version_not_accepted_says_what_is_quoting_only_a_version_number(
            self, header: str, sent: bytes | None, error: str) -> None:
        """The error goes to logs and dead-letter headers: what the caller sent is quoted
        only when it is a version number, else only its length is told."""
        headers = [(k, v) for k, v in envelope.to_headers(sample()) if k != header]
        if sent is not None:
            headers.append((header, sent))
        with pytest.raises(envelope.EnvelopeError) as raised:
            envelope.from_record(headers, envelope.to_value(sample()))
        assert str(raised.value) == error

    @pytest.mark.parametrize("name,sent,error", [
        ("ce_type", None, "header 'ce_type' has no value"),
        ("ce_source", b"\xff\xfe", "header 'ce_source' is not UTF-8 text"),
        ("dlq_replayed_from", None, "header 'dlq_replayed_from' has no value"),
        # Short tokens of the characters header names are made of, but not ours: a
        # person's name, as a client may choose one, is never quoted.
        ("jane.doe", None, "header #11 (an unknown name: 8 characters, not shown) has no value"),
        ("john_smith-1980", b"\xff",
         "header #11 (an unknown name: 15 characters, not shown) is not UTF-8 text"),
        ("traceparent", None,
         "header #11 (an unknown name: 11 characters, not shown) has no value"),
        ("Jane Doe <jane@example.org>", None,
         "header #11 (an unknown name: 27 characters, not shown) has no value"),
        ("Jäne", b"\xff",
         "header #11 (an unknown name: 4 characters, not shown) is not UTF-8 text"),
        ("CE_TYPE", None, "header #11 (an unknown name: 7 characters, not shown) has no value"),
        (b"ce_type", None, "header #11 (an unknown name: not text, not shown) has no value"),
    ])
    def test_a_header_not_read_is_named_only_when_its_name_is_one_of_ours(
            self, name: str, sent: bytes | None, error: str) -> None:
        """The error goes to logs and dead-letter headers: a header's name is quoted only
        when it is one the project itself writes (envelope.HEADER_NAMES); any other is
        the sender's choice, may be a person's name, and is told by its position among
        the headers and its length alone."""
        headers: list[tuple[object, object]] = [
            (k, v) for k, v in envelope.to_headers(sample()) if k != name]
        headers.append((name, sent))
        with pytest.raises(envelope.EnvelopeError) as raised:
            envelope.from_record(headers, envelope.to_value(sample()))  # type: ignore[arg-type]
        assert str(raised.value) == error

    def test_an_unknown_header_is_told_by_its_position_among_the_headers(self) -> None:
        headers: list[tuple[object, object]] = [("jane.doe", None),
                                                *envelope.to_headers(sample())]
        with pytest.raises(envelope.EnvelopeError) as raised:
            envelope.from_record(headers, envelope.to_value(sample()))  # type: ignore[arg-type]
        assert str(raised.value) == (
            "header #1 (an unknown name: 8 characters, not shown) has no value")

    def test_the_dead_letter_headers_are_ours(self) -> None:
        """A replayed dead letter carries them: each (every `topics.DLQ_*`) is named in
        its errors."""
        dead_letter_headers = {value for name, value in vars(topics).items()
                               if name.startswith("DLQ_")}
        assert topics.DLQ_REPLAYED_FROM in dead_letter_headers
        assert dead_letter_headers <= envelope.HEADER_NAMES

    def test_each_header_name_the_envelope_writes_is_named_in_its_errors(self) -> None:
        for name, _ in envelope.to_headers(sample()):
            headers = [(k, None if k == name else v) for k, v in envelope.to_headers(sample())]
            with pytest.raises(envelope.EnvelopeError) as raised:
                envelope.from_record(headers, envelope.to_value(sample()))  # type: ignore[arg-type]
            assert str(raised.value) == f"header {name!r} has no value"

    def test_json_that_is_not_an_object(self) -> None:
        with pytest.raises(envelope.EnvelopeError, match="not a JSON object"):
            envelope.from_record(envelope.to_headers(sample()), b"[1, 2]")


class TestDerivedIds:
    """An id derived from an event's must be the one every earlier version derived: a
    routing replayed after an upgrade republishes its records under their first ids, so
    that readers keeping ids (webhook callbacks) take them once."""

    def test_the_id_first_published_for_an_event(self) -> None:
        # As uuid.uuid5 gave it in the namespace, when the ids were first derived.
        assert envelope.derived_id("0b6f3a52-7a39-4a9e-8f61-2f3c4d5e6a7b", "queued/general") \
            == "6a3c0f54-5b32-5731-b89f-1f28b1cf2880"

    @pytest.mark.parametrize("event_id,what", [
        ("e-1", "routed/general"), ("", ""), ("é-ü", "queued/café"), ("x" * 300, "a/b/c"),
        ("0b6f3a52-7a39-4a9e-8f61-2f3c4d5e6a7b", "ticket.first_response")])
    def test_a_name_based_uuid_in_the_namespace(self, event_id: str, what: str) -> None:
        derived = envelope.derived_id(event_id, what)
        assert derived == str(uuid.uuid5(envelope._DERIVED, f"{event_id}/{what}"))
        assert uuid.UUID(derived).version == 5

    def test_the_ids_the_uuid_module_makes_for_many_inputs(self) -> None:
        """`derived_id` writes the UUID's text itself: against the `uuid.UUID` it was
        built from before (the reference here), on inputs covering every variant digit."""
        def reference(event_id: str, what: str) -> str:
            digest = hashlib.sha1(envelope._DERIVED_BYTES
                                  + f"{event_id}/{what}".encode()).digest()
            return str(uuid.UUID(bytes=digest[:16], version=5))

        draw = random.Random(11)
        alphabet = "abcxyz019-/._ éü€\U0001f600"
        variants = set()
        for _ in range(20_000):
            event_id = "".join(draw.choices(alphabet, k=draw.randrange(0, 80)))
            what = draw.choice(["queued/", "routed/", "ticket.", ""]) + "".join(
                draw.choices(alphabet, k=draw.randrange(0, 20)))
            derived = envelope.derived_id(event_id, what)
            assert derived == reference(event_id, what), (event_id, what)
            variants.add(derived[19])
        assert variants == set("89ab")

    def test_each_what_its_own_id(self) -> None:
        ids = {envelope.derived_id("e-1", what) for what in ("queued/a", "routed/a", "queued/b")}
        assert len(ids) == 3


class TestNewId:
    """A new event's id is the random UUID (version 4) `uuid.uuid4` makes of the same
    random bytes, written out without it (the reference here)."""

    def test_the_uuid_the_uuid_module_makes_of_the_same_bytes(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        draw = random.Random(7)
        variants = set()
        for _ in range(20_000):
            given = draw.randbytes(16)
            monkeypatch.setattr(os, "urandom", lambda n, given=given: given[:n])
            made = envelope.new_id()
            assert made == str(uuid.UUID(bytes=given, version=4)), given.hex()
            variants.add(made[19])
        assert variants == set("89ab")

    def test_a_version_4_uuid_each_time_another(self) -> None:
        made = [envelope.new_id() for _ in range(1000)]
        assert len(set(made)) == len(made)
        assert all(uuid.UUID(each).version == 4 and str(uuid.UUID(each)) == each
                   for each in made)


class TestRecordSize:
    """A record's size counted as the straightforward computation (the reference here)
    counts it: each length written as Kafka's zigzag varint before its bytes, a header's
    name in UTF-8. (Against aiokafka's own count: tests/unit/test_dead_letters.py.)"""

    @staticmethod
    def reference(record: envelope.Record) -> int:
        def varint(value: int) -> bytes:
            zigzag, written = value << 1, bytearray()
            while zigzag >= 0x80:
                written.append(zigzag & 0x7F | 0x80)
                zigzag >>= 7
            return bytes([*written, zigzag])

        fields = [record.key, record.value,
                  *[part for name, raw in record.headers for part in (name.encode(), raw)]]
        return len(varint(len(record.headers))) + sum(
            len(varint(len(part))) + len(part) for part in fields)

    def test_the_size_the_straightforward_computation_gives(self) -> None:
        draw = random.Random(11)
        edges = [0, 1, 63, 64, 65, 8191, 8192, 100_000]
        names = ["ce_id", "content-type", "", "é" * 31, "é" * 32, "x" * 63, "x" * 64,
                 "€" * 22, "\U0001f600" * 16, "a" * 8192]
        for _ in range(2_000):
            record = envelope.Record(
                "t", b"k" * draw.choice([*edges, draw.randrange(300)]),
                b"v" * draw.choice([*edges, draw.randrange(5_000)]),
                [(draw.choice([*names, "h" * draw.randrange(100)]),
                  b"r" * draw.choice([*edges[:-1], draw.randrange(300)]))
                 for _ in range(draw.choice([0, 1, 10, 63, 64, draw.randrange(150)]))])
            assert record.size == self.reference(record)

    def test_a_record_the_envelope_writes(self) -> None:
        record = envelope.encode("tickets.routed", "c-1", sample())
        assert record.size == self.reference(record)
