"""Two intakes with one INSTANCE_ID fence each other's producers on every transaction:
each time is counted, and the error that says why is logged at once, then at most once a
minute with how many times it happened since (services/core/transactional_publisher.py)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from services.core.transactional_publisher import _Fencing


def _counted() -> float:
    return REGISTRY.get_sample_value("routing_intake_producers_fenced_total") or 0.0


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if "INSTANCE_ID" in record.message]


def test_every_fencing_is_counted_and_the_error_logged_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    fencing = _Fencing("routing-intake-0-1")
    before = _counted()
    with caplog.at_level(logging.ERROR):
        for second in (100.0, 100.5, 130.0, 159.9):
            fencing.fenced(second)
        assert _counted() == before + 4
        assert [getattr(record, "times_fenced", None) for record in _errors(caplog)] == [1]

        fencing.fenced(160.0)  # a minute after the first message: the three since, and this
        fencing.fenced(161.0)
    assert _counted() == before + 6
    errors = _errors(caplog)
    assert [getattr(record, "times_fenced", None) for record in errors] == [1, 4]
    assert {getattr(record, "transactional_id", None) for record in errors} == {
        "routing-intake-0-1"}
