"""The 503 a router endpoint answers when Kafka did not acknowledge says what to do on
that endpoint: only the ticket intake takes an Idempotency-Key."""

from __future__ import annotations

import json

import pytest

from services.core.settings import Settings
from services.router import intake


def detail(endpoint: str) -> str:
    answer = intake.unavailable(Settings(), endpoint)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == str(Settings().retry_after_seconds)
    body = json.loads(bytes(answer.body))
    assert body["error"] == "unavailable"
    return str(body["detail"])


def test_the_intake_asks_for_a_retry_with_the_same_idempotency_key() -> None:
    assert "retry later with the same Idempotency-Key" in detail("tickets")


@pytest.mark.parametrize("endpoint", ["events", "transfer", "priority"])
def test_the_other_endpoints_say_nothing_was_recorded(endpoint: str) -> None:
    said = detail(endpoint)
    assert "nothing was recorded; retry later" in said
    assert "Idempotency-Key" not in said
