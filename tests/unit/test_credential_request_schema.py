"""The credential request's schema (OpenAPI) says what the server accepts: admins have
no subject, platforms and departments need one; and a refusal names the field."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pydantic
import pytest

from services.core import body_bytes, credentials_api, settings
from services.core.settings import Settings
from services.router import app as router_app

SCHEMA = jsonschema_rs.validator_for(credentials_api.CredentialRequest.model_json_schema())


def accepted(body: dict[str, Any]) -> bool:
    try:
        credentials_api.CredentialRequest.model_validate(body)
    except pydantic.ValidationError:
        return False
    return True


class TestSubjectFitsRole:
    @pytest.mark.parametrize("body", [
        {"role": "admin"},
        {"role": "admin", "subject": None, "label": "operators"},
        {"role": "platform", "subject": "zendesk"},
        {"role": "platform", "subject": "zendesk", "rate_limit": "200/second"},
        {"role": "platform", "subject": "zendesk", "byte_rate_limit": "16MiB/second"},
        {"role": "platform", "subject": "zendesk", "byte_rate_limit": "240 MiB per minute"},
        {"role": "platform", "subject": "zendesk", "byte_rate_limit": "1048576/second"},
        {"role": "department", "subject": "public_sector"},
    ])
    def test_a_fitting_subject_both_accept(self, body: dict[str, Any]) -> None:
        assert (SCHEMA.is_valid(body), accepted(body)) == (True, True)

    @pytest.mark.parametrize("body", [
        {"role": "admin", "subject": "someone"},
        {"role": "platform"},
        {"role": "platform", "subject": None},
        {"role": "department"},
        {"role": "department", "subject": ""},
        {"role": "owner", "subject": "someone"},
        {"subject": "someone"},
        # No database column holds a NUL (PostgreSQL refuses it: a 500 before).
        {"role": "admin", "label": "ops\u0000"},
        # A budget of body bytes as neither the schema nor INTAKE_BYTE_RATE_LIMIT reads
        # it, or too long for its column.
        {"role": "platform", "subject": "zendesk", "byte_rate_limit": "16 megabytes/second"},
        {"role": "platform", "subject": "zendesk", "byte_rate_limit": "16MiBper second"},
        {"role": "platform", "subject": "zendesk",
         "byte_rate_limit": "1048576000 MiB per 100000 seconds"},
    ])
    def test_a_refused_request_is_invalid_in_the_schema(self, body: dict[str, Any]) -> None:
        assert (SCHEMA.is_valid(body), accepted(body)) == (False, False)

    @pytest.mark.parametrize(("body", "problem"), [
        ({"role": "admin", "subject": "someone"}, "admin credentials have no subject"),
        ({"role": "platform"}, "platform credentials need the platform's name as subject"),
    ])
    def test_the_refusal_names_the_subject(self, body: dict[str, Any], problem: str) -> None:
        with pytest.raises(pydantic.ValidationError) as refused:
            credentials_api.CredentialRequest.model_validate(body)
        [error] = refused.value.errors()
        assert error["loc"] == ("subject",)
        assert problem in error["msg"]

    def test_a_bad_role_is_refused_on_the_role_alone(self) -> None:
        with pytest.raises(pydantic.ValidationError) as refused:
            credentials_api.CredentialRequest.model_validate({"role": "owner",
                                                              "subject": "x"})
        assert [error["loc"] for error in refused.value.errors()] == [("role",)]


class TestAKeysOwnBudgetOfBodyBytes:
    def test_below_the_largest_body_it_is_refused_naming_the_field(self) -> None:
        """A schema pattern cannot say "at least 1 MiB a window": the check says it, as
        INTAKE_BYTE_RATE_LIMIT's does."""
        with pytest.raises(pydantic.ValidationError) as refused:
            credentials_api.CredentialRequest.model_validate(
                {"role": "platform", "subject": "zendesk", "byte_rate_limit": "1KiB/second"})
        [error] = refused.value.errors()
        assert error["loc"] == ("byte_rate_limit",)
        assert "at least 1MiB a window" in error["msg"]
        assert "such as 4MiB/second" in error["msg"]


CHANGE_SCHEMA = jsonschema_rs.validator_for(
    credentials_api.CredentialChange.model_json_schema())


def change_refused(body: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Where and why a change is refused ([] if it is accepted)."""
    try:
        credentials_api.CredentialChange.model_validate(body)
    except pydantic.ValidationError as refused:
        return [(error["loc"], error["msg"]) for error in refused.errors()]
    return []


class TestACredentialChange:
    """README, "Credentials": a change is checked as an issue is (one definition of each
    field), its role and subject are fixed."""

    @pytest.mark.parametrize("body", [
        {},
        {"label": "zendesk production, 2027"},
        {"rate_limit": "500/second"},
        {"rate_limit": None, "byte_rate_limit": None},
        {"byte_rate_limit": "16MiB/second", "label": ""},
    ])
    def test_what_both_accept(self, body: dict[str, Any]) -> None:
        assert (CHANGE_SCHEMA.is_valid(body), change_refused(body)) == (True, [])

    @pytest.mark.parametrize(("body", "field"), [
        ({"label": None}, "label"),
        ({"label": "ops\u0000"}, "label"),
        ({"label": "x" * 201}, "label"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"byte_rate_limit": "16 megabytes/second"}, "byte_rate_limit"),
        ({"byte_rate_limit": "1048576000 MiB per 100000 seconds"}, "byte_rate_limit"),
        ({"token": "rt_x"}, "token"),
    ])
    def test_what_both_refuse_naming_the_field(self, body: dict[str, Any], field: str
                                              ) -> None:
        assert not CHANGE_SCHEMA.is_valid(body)
        assert [where for where, _problem in change_refused(body)] == [(field,)]

    def test_a_limit_is_checked_as_when_issued(self) -> None:
        """What the pattern cannot say (at least 1 MiB a window), said in the same words."""
        [(where, problem)] = change_refused({"byte_rate_limit": "1KiB/second"})
        with pytest.raises(pydantic.ValidationError) as issued:
            credentials_api.CredentialRequest.model_validate(
                {"role": "platform", "subject": "zendesk", "byte_rate_limit": "1KiB/second"})
        assert (where, problem) == (("byte_rate_limit",), issued.value.errors()[0]["msg"])

    @pytest.mark.parametrize(("field", "value"), [
        ("role", "admin"), ("role", None), ("subject", "other-desk"), ("subject", None)])
    def test_its_role_and_subject_are_fixed(self, field: str, value: str | None) -> None:
        [(where, problem)] = change_refused({field: value, "label": "moved"})
        assert where == (field,)
        assert problem.endswith(f"a credential's {field} cannot change: issue a new"
                                f" credential with the {field} wanted, move its holder to"
                                " it, and revoke this one")
        # The schema offers neither (no generated client sends them).
        assert field not in credentials_api.CredentialChange.model_json_schema()["properties"]

    def test_only_the_fields_sent_change(self) -> None:
        change = credentials_api.CredentialChange.model_validate(
            {"rate_limit": None, "byte_rate_limit": "16MiB/second"})
        assert change.changes == {"rate_limit": None, "byte_rate_limit": "16MiB/second"}


@pytest.mark.parametrize(("field", "setting"), [("rate_limit", "INTAKE_RATE_LIMIT"),
                                                ("byte_rate_limit", "INTAKE_BYTE_RATE_LIMIT")])
def test_each_request_says_what_leaving_a_limit_out_does(field: str, setting: str) -> None:
    """The router's OpenAPI: a limit is described once (CredentialTerms'), then POST's
    request says the default it gets, PATCH's that it stays (null: the default again)."""
    schemas = router_app.create_app(Settings()).openapi()["components"]["schemas"]
    described = credentials_api.CredentialTerms.model_fields[field].description
    assert described and "default" not in described
    assert {name: schemas[name]["properties"][field]["description"]
            for name in ("CredentialRequest", "CredentialChange")} == {
        "CredentialRequest": f"{described} (default: the service's {setting})",
        "CredentialChange": f"{described} (left out: unchanged; null for the service's"
                            f" {setting})"}


@pytest.mark.parametrize(("field", "words"), [
    ("rate_limit", [settings.RATE.words]),
    ("byte_rate_limit", [body_bytes.ACCEPTED, body_bytes.LEAST])])
def test_each_limit_is_described_in_its_forms_words(field: str, words: list[str]) -> None:
    """A limit's description (the OpenAPI schema's, `routing credentials issue/change
    --help`'s) says what its form takes in the words the form's refusals say, not a copy
    of them that could fall behind."""
    described = credentials_api.CredentialTerms.model_fields[field].description or ""
    for said in words:
        assert said in described
