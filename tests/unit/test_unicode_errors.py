"""Text a codec refused is told by where and why, never by the character or bytes that
Python's own messages quote (`'utf-8' codec can't encode character '\\ud800' in position
3`): in an event that cannot become a record, a log, a configuration file that cannot be
read, a callback's host that cannot be looked up (services/core/unicode_errors.py)."""

from __future__ import annotations

from pathlib import Path

import httpcore
import pytest

from services.core import config_files, envelope, logs, unicode_errors
from services.webhooks import lookups


def refusal(encode: object) -> UnicodeError:
    try:
        encode()  # type: ignore[operator]
    except UnicodeError as error:
        return error
    raise AssertionError("the codec took it")


@pytest.mark.parametrize(("error", "said"), [
    (refusal(lambda: "Jane\ud800".encode()), "a lone surrogate at position 4"),
    (refusal(lambda: "Jane\ud800\udc00 Doe".encode()), "lone surrogates at positions 4 to 5"),
    (refusal(lambda: "Jané".encode("ascii")), "a character ASCII cannot encode at position 3"),
    (refusal(lambda: "Jané".encode("latin-1").decode()), "byte 3 is not valid UTF-8"),
    (refusal(lambda: "é\ud800.example".encode("idna")),
     "text its codec refused (UnicodeError, not shown: it may quote the text)"),
], ids=["surrogate", "surrogates", "ascii", "decode", "idna"])
def test_a_codecs_refusal_is_told_by_where_and_why(error: UnicodeError, said: str) -> None:
    assert unicode_errors.problem(error) == said
    assert logs.said(error) == said


def test_an_event_whose_key_is_not_text_is_unserialisable_without_its_character() -> None:
    event = envelope.Event(type="t", source="/test", ticket_id="t-1", correlation_id="c",
                           data={})
    with pytest.raises(envelope.Unserialisable) as refused:
        envelope.encode("topic", "Jane\ud800", event)
    assert str(refused.value) == ("the event's key or attributes are not text: a lone"
                                  " surrogate at position 4")


def test_a_configuration_file_that_is_not_utf8_is_told_by_its_byte(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes("name: Jané".encode("latin-1"))
    with pytest.raises(config_files.ConfigError) as refused:
        config_files.read_text(path)
    assert refused.value.problem == ("cannot read the file: it is not UTF-8 text (byte 9 is"
                                     " not valid UTF-8)")


async def test_a_host_the_idna_codec_refuses_is_not_quoted() -> None:
    """The IDNA codec's message quotes the character it refused (`Invalid character
    '\\ud800'`): refused before any lookup, so no socket is opened."""
    own = lookups.OwnLookups("desk", threads=1)
    try:
        with pytest.raises(httpcore.ConnectError) as refused:
            await own.connect_tcp("jane\ud800doe.example", 443, timeout=1)
    finally:
        own.close()
    assert str(refused.value) == (
        "UnicodeError: the host's name cannot be looked up: text its codec refused"
        " (UnicodeError, not shown: it may quote the text)")
