import pytest

from services.core import envelope


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

    def test_missing_headers(self) -> None:
        with pytest.raises(envelope.EnvelopeError, match="missing CloudEvents headers"):
            envelope.from_record([], b"{}")

    def test_unknown_schema_version(self) -> None:
        headers = [(k, b"99" if k == "ce_schemaversion" else v)
                   for k, v in envelope.to_headers(sample())]
        with pytest.raises(envelope.EnvelopeError, match="unknown schema version"):
            envelope.from_record(headers, envelope.to_value(sample()))

    def test_json_that_is_not_an_object(self) -> None:
        with pytest.raises(envelope.EnvelopeError, match="not a JSON object"):
            envelope.from_record(envelope.to_headers(sample()), b"[1, 2]")
