import base64
from dataclasses import dataclass, field

import orjson
import pytest
import typer.core
import typer.main
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord
from typer.testing import CliRunner

from services import cli
from services.core import broker_start, dead_letter_reading, envelope, faults, topics
from services.router import dead_letter_records


@dataclass
class Record:
    partition: int = 1
    offset: int = 42
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"cust-1"
    value: bytes | None = b'{"subject": "private"}'
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [
        ("ce_type", b"ticket.received"), ("ce_ticketid", b"t-1"),
        ("dlq_source_topic", b"tickets.incoming"), ("dlq_source_partition", b"2"),
        ("dlq_source_offset", b"7"), ("dlq_error", b"value is not JSON"),
        ("dlq_error_class", b"EnvelopeError"), ("dlq_stage", b"segmenter")])


class TestIds:
    def test_an_id_is_partition_and_offset(self) -> None:
        assert dead_letter_reading.dead_letter_id(1, 42) == "1:42"
        assert dead_letter_reading.parse_id("1:42") == (1, 42)

    @pytest.mark.parametrize("text", ["", "1", "a:1", "-1:2", "1:2\n", "1:2:3"])
    def test_anything_else_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError) as refused:
            dead_letter_reading.parse_id(text)
        assert str(refused.value) == f"should be {dead_letter_reading.ID.words}"

    def test_an_id_not_one_is_refused_in_its_forms_words(self) -> None:
        with pytest.raises(dead_letter_records.InvalidSelection) as refused:
            dead_letter_records.Selection(ids=("0:1", "0-2"))
        assert (refused.value.field, refused.value.problem) == (
            "ids.1", f"should be {dead_letter_reading.ID.words}")

    def test_the_cli_says_an_id_in_its_forms_words(self) -> None:
        group = typer.main.get_group(cli.app).commands["dead-letters"]
        assert isinstance(group, typer.core.TyperGroup)
        helps = {name: param.help for name in ("list", "replay")
                 for param in group.commands[name].params if param.name in ("since", "ids")}
        assert all(dead_letter_reading.ID.words in str(said) for said in helps.values())
        assert set(helps) == {"list", "replay"}

    def test_the_cli_names_since_when_it_is_not_an_id(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A usage error naming `--since`, before Kafka is reached (it said "should be a
        dead letter's id" without naming the option, once the broker answered)."""
        reached: list[str] = []

        async def reached_broker(_settings: object) -> None:
            reached.append("reached")

        monkeypatch.setattr(broker_start, "reached", reached_broker)
        result = CliRunner().invoke(cli.app, ["dead-letters", "list", "--since", "0-42"],
                                    env={"COLUMNS": "200"})
        assert (result.exit_code, reached) == (2, [])
        assert "--since" in result.output and "'0-42'" in result.output
        assert f"should be {dead_letter_reading.ID.words}" in result.output

    @pytest.mark.parametrize(("arguments", "said"), [
        ([], "give either IDS or a filter (--source-topic, --error-class), not both"),
        (["0:1", "--error-class", "E"], "give either IDS or a filter (--source-topic,"
                                        " --error-class), not both"),
        (["0:1", "0-2"], f"IDS (number 2): '0-2': should be {dead_letter_reading.ID.words}"),
    ])
    def test_the_cli_names_its_own_options_when_replay_selects_unclearly(
            self, monkeypatch: pytest.MonkeyPatch, arguments: list[str], said: str) -> None:
        """A usage error in the command's words (IDS, --source-topic, --error-class; an id
        by its place from 1), before Kafka is reached: it said the HTTP API's fields
        (`source_topic`, `ids.1` for the second id)."""
        reached: list[str] = []

        async def reached_broker(_settings: object) -> None:
            reached.append("reached")

        monkeypatch.setattr(broker_start, "reached", reached_broker)
        result = CliRunner().invoke(cli.app, ["dead-letters", "replay", *arguments],
                                    env={"COLUMNS": "200"})
        assert (result.exit_code, reached) == (2, [])
        assert said in result.output, result.output
        assert not any(field in result.output for field in ("source_topic", "error_class",
                                                             "ids.")), result.output


class TestDescribe:
    def test_source_reason_and_event_come_from_the_headers(self) -> None:
        described = dead_letter_records.describe(Record())
        assert described == {
            "id": "1:42", "partition": 1, "offset": 42,
            "timestamp": "2023-11-14T22:13:20+00:00",
            "source_topic": "tickets.incoming", "source_partition": 2, "source_offset": 7,
            "error": "value is not JSON", "error_class": "EnvelopeError", "stage": "segmenter",
            "event_type": "ticket.received", "ticket_id": "t-1", "replayed_from": None,
            "key": "cust-1", "key_encoding": "utf-8",
        }

    def test_the_value_is_left_out_unless_asked(self) -> None:
        assert "value" not in dead_letter_records.describe(Record())
        described = dead_letter_records.describe(Record(), include_value=True)
        assert (described["value"], described["value_encoding"]) == (
            '{"subject": "private"}', "utf-8")

    def test_bytes_that_are_not_utf8_come_in_base64(self) -> None:
        described = dead_letter_records.describe(Record(key=None, value=b"\xff\x00"),
                                          include_value=True)
        assert described["value_encoding"] == "base64"
        assert base64.b64decode(described["value"]) == b"\xff\x00"
        assert (described["key"], described["key_encoding"]) == (None, None)

    def test_a_record_without_dead_letter_headers_is_still_described(self) -> None:
        described = dead_letter_records.describe(Record(headers=[("dlq_source_offset", b"x")]))
        assert described["source_topic"] is None
        assert described["source_offset"] is None


class TestMatches:
    @pytest.mark.parametrize(("source_topic", "error_class", "expected"), [
        (None, None, True), ("tickets.incoming", None, True),
        ("tickets.incoming", "EnvelopeError", True), ("tickets.segmented", None, False),
        (None, "ValidationError", False)])
    def test_every_given_filter_must_hold(self, source_topic: str | None,
                                          error_class: str | None, expected: bool) -> None:
        assert dead_letter_records.matches(Record(), source_topic=source_topic,
                                    error_class=error_class) is expected


class TestReplayHeaders:
    def test_dead_letter_headers_are_replaced_by_where_the_replay_came_from(self) -> None:
        headers = [("ce_type", b"t"), ("dlq_replayed_from", b"0:1"), ("x", b"y"),
                   *Record().headers[2:]]
        assert dead_letter_records.replay_headers(headers, "1:42") == [
            ("ce_type", b"t"), ("x", b"y"), ("dlq_replayed_from", b"1:42")]


class TestResumePoints:
    def test_without_a_cursor_every_partition_is_read_from_the_start(self) -> None:
        assert dead_letter_records.resume_points({2, 0, 1}, None) == {0: 0, 1: 0, 2: 0}

    def test_with_a_cursor_only_what_follows_it_is_read(self) -> None:
        assert dead_letter_records.resume_points({0, 1, 2}, (1, 5)) == {1: 6, 2: 0}


class TestSelection:
    @pytest.mark.parametrize(("options", "field"), [
        ({}, "ids"),
        ({"ids": ("0:1",), "error_class": "E"}, "ids"),
        ({"ids": ("0:1", "one")}, "ids.1"),
        ({"source_topic": "t", "limit": 0}, "limit"),
        ({"source_topic": "t", "limit": dead_letter_records.MAX_LIMIT + 1}, "limit"),
    ])
    def test_an_unclear_selection_names_the_field(self, options: dict[str, object],
                                                  field: str) -> None:
        with pytest.raises(dead_letter_records.InvalidSelection) as raised:
            dead_letter_records.Selection(**options)  # type: ignore[arg-type]
        assert raised.value.field == field

    def test_the_api_names_its_fields(self) -> None:
        with pytest.raises(dead_letter_records.InvalidSelection) as raised:
            dead_letter_records.Selection()
        assert (raised.value.field, raised.value.problem) == (
            "ids", "give either ids or a filter (source_topic, error_class), not both and"
                   " not neither")

    def test_ids_or_filters_select(self) -> None:
        assert dead_letter_records.Selection(ids=("0:1", "2:3")).ids == ("0:1", "2:3")
        assert dead_letter_records.Selection(error_class="E").error_class == "E"


def test_a_replay_result_counts_each_outcome() -> None:
    result = dead_letter_records.ReplayResult(replayed=["0:1", "0:2"], not_found=["9:9"])
    assert result.counts() == {"replayed": 2, "skipped_already_replayed": 0,
                               "not_found": 1, "unreplayable": 0}


class TestDeadLetterOfARecord:
    """What a stage writes to `tickets.dlq` for a record it cannot process."""

    def source(self, value: bytes) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord(
            topic="tickets.incoming", partition=2, offset=7, timestamp=0, timestamp_type=0,
            key=b"cust-1", value=value, checksum=None, serialized_key_size=6,
            serialized_value_size=len(value),
            headers=[("ce_type", b"ticket.received"), ("ce_ticketid", b"t-1")])

    def test_the_record_goes_whole_with_where_it_came_from_and_why(self) -> None:
        letter = faults.dead_letter(self.source(b"{not json"), ValueError("broken"),
                                    stage="segmenter")
        headers = dict(letter.headers)
        assert (letter.topic, letter.key, letter.value) == (
            topics.DEAD_LETTERS, b"cust-1", b"{not json")
        assert headers["ce_ticketid"] == b"t-1"
        assert (headers[topics.DLQ_SOURCE_TOPIC], headers[topics.DLQ_SOURCE_PARTITION],
                headers[topics.DLQ_SOURCE_OFFSET], headers[topics.DLQ_STAGE]) == (
            b"tickets.incoming", b"2", b"7", b"segmenter")
        assert topics.DLQ_VALUE_DROPPED not in headers

    def test_a_record_too_large_to_copy_goes_without_its_value_marked_so(self) -> None:
        letter = faults.dead_letter(self.source(b"x" * envelope.MAX_RECORD_BYTES),
                                    ValueError("broken"), stage="segmenter")
        headers = dict(letter.headers)
        assert (letter.key, letter.value) == (b"cust-1", b"")
        assert topics.DLQ_VALUE_DROPPED in headers
        # Of its own headers, only those that identify it (the held tickets' reader
        # holds the ticket by its id): where it came from and why besides.
        assert (headers["ce_ticketid"], headers["ce_type"]) == (b"t-1", b"ticket.received")
        assert (headers[topics.DLQ_SOURCE_TOPIC], headers[topics.DLQ_SOURCE_OFFSET]) == (
            b"tickets.incoming", b"7")
        assert letter.size <= envelope.MAX_RECORD_BYTES

    def test_a_ticket_too_large_keeps_the_platform_its_value_names(self) -> None:
        """A name, never personal data: the held tickets' reader tells that platform
        its ticket is held (dead_letter_reading.platform)."""
        ticket = orjson.dumps({"platform": "helpdesk", "customer_id": "cust-1",
                               "body": "x" * envelope.MAX_RECORD_BYTES})
        letter = faults.dead_letter(self.source(ticket), ValueError("broken"),
                                    stage="segmenter")
        assert letter.value == b""
        assert dict(letter.headers)[topics.DLQ_PLATFORM] == b"helpdesk"
        assert b"cust-1" not in b"".join(value for _name, value in letter.headers)

    @pytest.mark.parametrize("platform", ["Helpdesk", "p" * 64, "help\u0000desk", 7, None])
    def test_one_whose_platform_is_no_credentials_subject_keeps_none(
            self, platform: object) -> None:
        """Only a credential's subject: a name, bounded as the other headers are."""
        ticket = orjson.dumps({"platform": platform, "body": "x" * envelope.MAX_RECORD_BYTES})
        letter = faults.dead_letter(self.source(ticket), ValueError("broken"))
        assert topics.DLQ_PLATFORM not in dict(letter.headers)

    def test_a_record_kept_whole_adds_no_platform(self) -> None:
        letter = faults.dead_letter(self.source(b'{"platform": "helpdesk"}'),
                                    ValueError("broken"))
        assert topics.DLQ_PLATFORM not in dict(letter.headers)

    def test_a_record_too_large_keeps_no_other_header_nor_one_past_its_bound(self) -> None:
        """Only the identifying headers, each the last of its name as a reader takes it,
        and only within the envelope's bound on it: a header of the sender's choosing,
        or an id past its bound, could be the size that made the record too large."""
        source = self.source(b"x" * envelope.MAX_RECORD_BYTES)
        source.headers = [("ce_ticketid", b"t-first"), ("ce_ticketid", b"t-last"),
                          ("ce_correlationid", b"c" * (envelope.MAX_CORRELATION_ID + 1)),
                          ("ce_id", b""), ("ce_subject", b"s-1"), ("x-mine", b"m")]
        letter = faults.dead_letter(source, ValueError("broken"), stage="segmenter")
        own = [(name, value) for name, value in letter.headers
               if not name.startswith(topics.DEAD_LETTER_HEADER_PREFIX)]
        assert own == [("ce_ticketid", b"t-last")]

    @pytest.mark.parametrize("length", [0, 1, 63, 64, 8191, 8192, 1_048_575, 1_048_576])
    def test_a_record_is_sized_as_aiokafka_counts_it(self, length: int) -> None:
        """At each varint's edges (a length of 63 takes one byte, 64 two...)."""
        record = envelope.Record("t", b"k" * (length % 100), b"v" * length,
                                 [("ce_id", b"i" * (length % 300)), ("é" * 40, b""),
                                  *[("h", b"x")] * (length % 130)])
        assert record.size == DefaultRecordBatchBuilder.size_of(
            record.key, record.value, list(record.headers))

    def test_a_record_of_many_headers_is_sized_as_the_producer_writes_it(self) -> None:
        """30,000 empty headers are two bytes each on the wire (their lengths): with a
        990,000-byte value the letter would be past the producer's request size, which
        refuses it on every attempt, so it goes without its value."""
        source = self.source(b"x" * 990_000)
        source.headers = [("", b"")] * 30_000
        letter = faults.dead_letter(source, ValueError("broken"), stage="segmenter")
        assert letter.value == b""
        assert topics.DLQ_VALUE_DROPPED in dict(letter.headers)
        assert DefaultRecordBatchBuilder.estimate_size_in_bytes(
            letter.key, letter.value, list(letter.headers)) <= 1_048_576  # aiokafka's
