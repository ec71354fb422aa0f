"""What a credential carries beside its role and subject (`CredentialTerms`): the fields
the API takes are those the store changes, and a limit's text fits its column."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from services.core import body_bytes, credentials, credentials_api, settings


def test_the_terms_taken_are_the_terms_the_store_changes() -> None:
    # A field of one and not the other would be dropped, unsaid, by `.changes`.
    assert set(credentials_api.CredentialTerms.model_fields) == set(credentials.CHANGEABLE)


def test_a_byte_rate_limit_of_33_characters_is_refused_naming_it() -> None:
    given = "1048576 MiB per 999999999 minutes"
    assert len(given) == credentials.MAX_RATE + 1
    assert re.fullmatch(body_bytes.BYTE_RATE.pattern, given)  # refused by length alone
    with pytest.raises(ValidationError) as refused:
        credentials_api.CredentialTerms(byte_rate_limit=given)
    [problem] = refused.value.errors()
    assert problem["loc"] == ("byte_rate_limit",) and problem["type"] == "string_too_long"


def test_the_longest_rate_limit_its_pattern_takes_fits_its_column() -> None:
    # Each part at its longest: 9 digits, " per ", 9 digits and a space, "minutes".
    longest = "999999999 per 999999999 minutes"
    assert re.fullmatch(settings.RATE.pattern, longest)
    for longer in ("9" + longest, longest.replace("per ", "per 9"), longest + "s"):
        assert not re.fullmatch(settings.RATE.pattern, longer), longer
    assert len(longest) <= credentials.MAX_RATE
