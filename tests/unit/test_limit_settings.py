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
