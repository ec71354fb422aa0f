"""What every JSON request body of ours is: a field it does not know is refused by name,
and a body of very many fields, or a map of very many entries, is refused whole, before
any is read (pydantic reads every one, and gives one error each: 60,000 unknown fields
in a 1 MiB body cost the event loop 448 ms, and an answer of megabytes). No field takes a
lone surrogate (JSON's `"\\ud800"`, or a command's argument that is not UTF-8), which no
stage could serialise nor a database store: each refuses it by name, in
text_forms.NOT_UNICODE's words, by its own checks (pydantic's on a text of a length or a
pattern, tickets.Text's) or, a text those would take or refuse in other words (a URL's, a
language tag's), as a `UnicodeText` (tests/unit/test_lone_surrogates.py walks them all)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticKnownError

from services.core import text_forms

# Far more than any body of ours has (the most, a customer of an import, has 11).
MAX_FIELDS = 100


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _not_too_many_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > MAX_FIELDS:
            raise ValueError(f"{_too_many(len(data), MAX_FIELDS, 'fields')}; the fields"
                             f" known: {', '.join(cls.model_fields)}")
        return data


def _unicode(value: object) -> object:
    if isinstance(value, str) and not text_forms.is_unicode(value):
        raise PydanticKnownError(text_forms.NOT_UNICODE_TYPE)
    return value


# A text that no check of its own refuses a lone surrogate in: refused before them, in
# NOT_UNICODE's words (a check on every field of a body would cost each ticket 6 us).
UnicodeText = Annotated[str, BeforeValidator(_unicode)]


def at_most_entries(most: int) -> BeforeValidator:
    """A map (a ticket's or a customer's attributes) of at most `most` entries, counted
    before any entry is read."""
    def counted(value: object) -> object:
        if isinstance(value, dict) and len(value) > most:
            raise ValueError(_too_many(len(value), most, "entries"))
        return value
    return BeforeValidator(counted)


def _too_many(count: int, most: int, what: str) -> str:
    return f"at most {most} {what}, not {count}"


def message_of(problem: Mapping[str, Any]) -> str:
    """A pydantic problem's message as we show it: our own checks' messages (a
    ValueError's) say what was wrong and what is accepted, and pydantic's "Value error, "
    before them says nothing; a text its pattern refuses is told what it should be, in
    words (text_forms), not by the regex."""
    return text_forms.message(problem).removeprefix("Value error, ")
