"""The dead-letter replay request's schema (OpenAPI) says what the server accepts:
ids or a filter, never both, never neither."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pydantic
import pytest

from services.router import dead_letter_records, dead_letters_api

SCHEMA = jsonschema_rs.validator_for(dead_letters_api.ReplayRequest.model_json_schema())


def accepted(body: dict[str, Any]) -> bool:
    """What the replay route lets through to Kafka: the model, then the selection."""
    try:
        request = dead_letters_api.ReplayRequest.model_validate(body)
        dead_letter_records.Selection(ids=tuple(request.ids), source_topic=request.source_topic,
                                      error_class=request.error_class, limit=request.limit)
    except (pydantic.ValidationError, dead_letter_records.InvalidSelection):
        return False
    return True


class TestReplaySchema:
    @pytest.mark.parametrize("body", [
        {"ids": ["0:1"]},
        {"ids": ["0:1", "2:30"], "limit": 5},
        {"source_topic": "tickets.incoming"},
        {"error_class": "ValidationError"},
        {"source_topic": "tickets.incoming", "error_class": "ValidationError", "limit": 10},
        {"ids": [], "source_topic": "tickets.incoming"},
        {"ids": ["0:1"], "source_topic": None, "error_class": None},
    ])
    def test_a_selection_both_accept(self, body: dict[str, Any]) -> None:
        assert (SCHEMA.is_valid(body), accepted(body)) == (True, True)

    @pytest.mark.parametrize("body", [
        {},
        {"ids": []},
        {"source_topic": None},
        {"ids": ["0:1"], "source_topic": "tickets.incoming"},
        {"ids": ["0:1"], "error_class": "ValidationError"},
        {"ids": ["\u0661:\u0662"]},  # digits, but not ASCII ones
        {"ids": ["0:1"], "unknown": 1},
    ])
    def test_a_refused_selection_is_invalid_in_the_schema(self, body: dict[str, Any]) -> None:
        assert (SCHEMA.is_valid(body), accepted(body)) == (False, False)
