"""What is wrong with text a codec refused, told by where and why, never by the text:
Python's own messages quote the character or the bytes (`'utf-8' codec can't encode
character '\\ud800' in position 3`, the IDNA codec's `Invalid character '...'`), which
may be a piece of a name. One wording for every error text, log and dead-letter reason
that tells one. Pure."""

from __future__ import annotations

# The code points of UTF-16's surrogate halves: valid in no text on its own.
_SURROGATES = range(0xD800, 0xE000)


def problem(error: UnicodeError) -> str:
    """`error` as a reason says it: a lone surrogate or a character the encoding cannot
    hold at its position, a byte that is not valid in the encoding read; a codec's other
    refusal (the IDNA codec's, a host's name) by its class alone."""
    if isinstance(error, UnicodeEncodeError):
        refused = error.object[error.start:error.end]
        where = (f"position {error.start}" if len(refused) <= 1
                 else f"positions {error.start} to {error.end - 1}")
        if all(ord(character) in _SURROGATES for character in refused):
            return f"{'a lone surrogate' if len(refused) <= 1 else 'lone surrogates'} at {where}"
        return f"a character {_named(error.encoding)} cannot encode at {where}"
    if isinstance(error, UnicodeDecodeError):
        return f"byte {error.start} is not valid {_named(error.encoding)}"
    return f"text its codec refused ({type(error).__name__}, not shown: it may quote the text)"


def _named(encoding: str) -> str:
    """An encoding as people write it (`utf-8`: UTF-8)."""
    return encoding.upper() if encoding.lower().startswith(("utf", "ascii")) else encoding
