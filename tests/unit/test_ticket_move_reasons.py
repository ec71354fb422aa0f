"""A person's move of a ticket (a transfer, a priority change) says why: a reason of only
spaces says nothing, and is refused naming the field, as an empty one is; the schema
documents the same rule as the validator applies."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, ValidationError

from services.core import tickets
from services.router.tickets_api import PriorityChange, Transfer

MOVES: list[tuple[type[BaseModel], dict[str, object]]] = [
    (Transfer, {"to_department": "customer_care"}), (PriorityChange, {"priority": 1})]
BLANK = ["", " ", "\t\n", "\u3000\u00a0", "\ufeff"]
STATED = ["x", " why ", "é", "moved: customer asked"]


@pytest.mark.parametrize(("model", "body"), MOVES)
@pytest.mark.parametrize("reason", BLANK)
def test_a_blank_reason_is_refused_naming_the_field(model: type[BaseModel],
                                                    body: dict[str, object],
                                                    reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**body, "reason": reason})
    [error] = refused.value.errors()
    assert error["loc"] == ("reason",)
    if reason:
        assert "must say something: it holds only spaces" in error["msg"]
    else:
        assert error["type"] == "string_too_short"


@pytest.mark.parametrize(("model", "body"), MOVES)
@pytest.mark.parametrize("reason", STATED)
def test_a_stated_reason_is_kept_as_written(model: type[BaseModel],
                                            body: dict[str, object], reason: str) -> None:
    assert model.model_validate({**body, "reason": reason}).reason == reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", [Transfer, PriorityChange])
def test_the_schema_says_what_the_validator_applies(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()["properties"]["reason"]
    assert schema["minLength"] == 1 and schema["maxLength"] == tickets.MAX_REASON
    pattern = re.compile(schema["pattern"])
    for reason in [*BLANK[1:], "a\u0000b"]:
        assert not pattern.search(reason), reason
    for reason in STATED:
        assert pattern.search(reason), reason
