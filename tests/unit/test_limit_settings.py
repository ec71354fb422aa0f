"""A limit the environment sets for every credential (INTAKE_RATE_LIMIT,
INTAKE_BYTE_RATE_LIMIT) and a credential's own (`rate_limit`, `byte_rate_limit`): one idea
each, so a text refused is refused in the same words by both."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core import credentials_api, settings, text_forms

# The setting, and the credential's field, of each limit.
LIMITS = [("INTAKE_RATE_LIMIT", "rate_limit"), ("INTAKE_BYTE_RATE_LIMIT", "byte_rate_limit")]


def setting_problem(monkeypatch: pytest.MonkeyPatch, variable: str, text: str) -> str | None:
    """What starting with `variable` set to `text` says of it (None: it starts)."""
    monkeypatch.setenv(variable, text)
    try:
        settings.from_environment()
    except settings.InvalidSettings as refusal:
        [problem] = refusal.problems
        assert problem.startswith(f"{variable}: ")
        return problem.removeprefix(f"{variable}: ")
    return None


def field_problem(field: str, text: str) -> str | None:
    """What a 422 (or the CLI) says of a credential given `text` as `field` (None: taken)."""
    try:
        credentials_api.CredentialTerms.model_validate({field: text})
    except ValidationError as refused:
        [error] = refused.errors()
        return text_forms.message(error).removeprefix("should be ")
    return None


@pytest.mark.parametrize(("variable", "field"), LIMITS)
def test_a_limit_refused_is_told_in_the_same_words_by_setting_and_credential(
        monkeypatch: pytest.MonkeyPatch, variable: str, field: str) -> None:
    said = setting_problem(monkeypatch, variable, "fast")
    assert said is not None
    assert said == field_problem(field, "fast")


# Texts of each limit, taken or not: in the words' case and in others, spaced and not,
# more than one rate, none a window.
SAMPLES = {
    "INTAKE_RATE_LIMIT": [
        "200/second", "6000/minute", "10 per second", "100/5 minutes", "1 per day",
        "100/SECOND", "100/Second", "100 PER second", "0/second", "10/second;1/minute",
        " 100/second", "100/second ", "100 / second", "100 per  second", "fast"],
    "INTAKE_BYTE_RATE_LIMIT": [
        "4MiB/second", "240 MiB per minute", "1048576/second", "16 GiB / day", "1GiB/hour",
        "2048KiB/2 seconds", "2048kib/2 seconds", "4mib/second", "4MIB/second",
        "4MiB/SECOND", "4 MiB PER second", " 4MiB/second", "4MiB/second ", "4MiB  /second",
        "4MiBper second", "4MiB persecond", "4 megabytes a second"],
}


@pytest.mark.parametrize(("variable", "field"), LIMITS)
def test_a_limit_the_setting_takes_a_credential_takes_and_no_other(
        monkeypatch: pytest.MonkeyPatch, variable: str, field: str) -> None:
    """One grammar: whatever INTAKE_*RATE_LIMIT takes, a credential's own limit takes, in
    any case and spacing, and what one refuses the other does, in the same words."""
    differ = {text: (setting_problem(monkeypatch, variable, text), field_problem(field, text))
              for text in SAMPLES[variable]}
    assert {text: said for text, said in differ.items() if said[0] != said[1]} == {}
    # Both take some and refuse some: the samples tell the grammar apart.
    assert {said[0] is None for said in differ.values()} == {True, False}


# The rule of the words each refused sample breaks: the piece of the words that says it.
BREAKS = {
    "INTAKE_RATE_LIMIT": {
        "100/SECOND": "in lower case", "100/Second": "in lower case",
        "100 PER second": "in lower case", "0/second": "a number of requests from 1",
        "10/second;1/minute": "one rate", " 100/second": "none around it",
        "100/second ": "none around it", "100 per  second": "at most one space",
        "fast": "such as"},
    "INTAKE_BYTE_RATE_LIMIT": {
        "2048kib/2 seconds": "KiB, MiB, GiB as written", "4mib/second": "MiB, GiB as written",
        "4MIB/second": "MiB, GiB as written", "4MiB/SECOND": "the window in lower case",
        "4 MiB PER second": "the window in lower case", " 4MiB/second": "none around it",
        "4MiB/second ": "none around it", "4MiB  /second": "at most one space",
        "4MiBper second": "'per' takes one each side",
        "4MiB persecond": "'per' takes one each side",
        "4 megabytes a second": "units B, KiB, MiB, GiB"},
}


@pytest.mark.parametrize("variable", [variable for variable, _ in LIMITS])
def test_the_words_say_the_rule_a_refused_limit_breaks(
        monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """A value taken before this grammar (another case, spaces, two rates) stops a service
    at start: what it says must tell how to write it, so each refused sample's rule is in
    the words, not only shown by examples."""
    refused = {text: setting_problem(monkeypatch, variable, text) for text in SAMPLES[variable]}
    refused = {text: said for text, said in refused.items() if said is not None}
    assert refused.keys() == BREAKS[variable].keys()
    assert {text: rule for text, rule in BREAKS[variable].items()
            if rule not in str(refused[text])} == {}
