"""A kind of text a field takes (a department's name, a rate, an id): the regex that
checks it, which the OpenAPI schema shows as the field's `pattern`, and what it accepts, in
words. pydantic refuses a text its pattern does not match by quoting the regex; an error
of ours says the words instead (`message`), in 422 answers, settings errors, the CLIs and
dead-letter reasons alike. Each form is made where its idea lives (`Form(...)`), once, and
is that idea's one name: a field checks `pattern=FORM.pattern`, code `FORM.fullmatch(text)`;
tests/unit/test_text_forms.py finds every pattern a model or route checks and fails on one
without words. Pure."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# pydantic's error type for a text its pattern does not match.
MISMATCH = "string_pattern_mismatch"
# pydantic's, for a text that is no Unicode (a lone surrogate, which JSON's \ud800
# escapes can produce), and what we say of it instead of "unable to parse raw data".
NOT_UNICODE_TYPE: Final = "string_unicode"
NOT_UNICODE = ("not valid Unicode text (it holds a lone surrogate such as \\ud800);"
               " send UTF-8 text")


def is_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode: one without a lone surrogate."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_words_by_pattern: dict[str, str] = {}


@dataclass(frozen=True)
class Form:
    """`pattern`, and what it accepts, said after "should be" (`a rate such as ...`)."""

    pattern: str
    words: str

    def __post_init__(self) -> None:
        known = _words_by_pattern.setdefault(self.pattern, self.words)
        if known != self.words:
            raise ValueError(f"the pattern {self.pattern!r} is already said as {known!r}")

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def fullmatch(self, text: str) -> re.Match[str] | None:
        """`text` matched as the field's check matches it (the pattern is anchored)."""
        return self.regex.fullmatch(text)


def words_of(pattern: str) -> str | None:
    """What `pattern` accepts, in words; None if no form says it."""
    return _words_by_pattern.get(pattern)


def message(detail: Mapping[str, Any]) -> str:
    """A pydantic error's message, with a pattern's mismatch said in the form's words
    (never the text refused: it may be personal data)."""
    if detail["type"] == NOT_UNICODE_TYPE:
        return NOT_UNICODE
    if detail["type"] == MISMATCH:
        words = words_of(str((detail.get("ctx") or {}).get("pattern", "")))
        if words is not None:
            return f"should be {words}"
    return str(detail["msg"])
