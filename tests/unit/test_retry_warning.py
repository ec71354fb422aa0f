"""The WARNING a stage logs each time a batch fails and is retried (pipeline.py), as
README's "Failures" and the alert RoutingStageWaitingForOutage quote it: the fault and
the error's class always; the code it failed in (`where`) for a record's fault or a bug,
not for an outage, which is the broker or the store down, not a place in the code; the
store's code of a statement it refused (`store_code`), never the data."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.exc import IntegrityError, OperationalError

from services.core import envelope, faults, kafka, pipeline

NAME = "Ada Lovelace"  # a person's name in the data a statement failed on


async def _nothing(_event: envelope.Event) -> Sequence[kafka.Publishable]:
    return []


def stage_loop() -> pipeline.StageLoop:
    # Never started: the WARNING is logged before anything reaches the broker.
    return pipeline.StageLoop(name="unit-retry-warning",
                              consumer=cast(AIOKafkaConsumer, object()), transform=_nothing,
                              producer=cast(AIOKafkaProducer, object()))


def raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:
        return caught


def warning_for(error: Exception, caplog: pytest.LogCaptureFixture) -> Any:
    with caplog.at_level(logging.WARNING, logger=pipeline.__name__):
        stage_loop()._failed(raised(error), {})
    [record] = [r for r in caplog.records if "failed on a batch" in r.getMessage()]
    assert record.getMessage() == "stage unit-retry-warning failed on a batch; retrying it"
    return record


class TestRetryWarning:
    def test_an_outage_is_told_by_its_fault_and_class_without_code_locations(
            self, caplog: pytest.LogCaptureFixture) -> None:
        store_down = OperationalError("SELECT 1", {}, ConnectionRefusedError("store down"))
        record = warning_for(store_down, caplog)
        assert record.fault == faults.Fault.OUTAGE.value
        assert record.error_class == "OperationalError"
        assert not hasattr(record, "where")

    def test_a_records_fault_keeps_the_code_it_failed_in(
            self, caplog: pytest.LogCaptureFixture) -> None:
        record = warning_for(KeyError("a value the code did not expect"), caplog)
        assert record.fault == faults.Fault.RECORD.value
        assert record.error_class == "KeyError"
        assert "in raised" in record.where  # the frame that raised it

    def test_a_statement_the_store_refused_is_told_by_the_stores_code(
            self, caplog: pytest.LogCaptureFixture) -> None:
        column = NAME.replace(" ", "_")
        with pytest.raises(sqlite3.OperationalError) as no_such_column:
            sqlite3.connect(":memory:").execute(f"SELECT {column} FROM sqlite_master")
        record = warning_for(OperationalError("SELECT ...", {}, no_such_column.value), caplog)
        assert record.store_code == "SQLITE_ERROR"
        assert column not in repr(vars(record))

    def test_postgresqls_refusal_is_told_by_its_sqlstate(
            self, caplog: pytest.LogCaptureFixture) -> None:
        not_null = asyncpg.exceptions.NotNullViolationError(
            f'null value in column "name" violates not-null constraint: ({NAME})')
        record = warning_for(IntegrityError("INSERT ...", {"name": NAME}, not_null), caplog)
        assert record.store_code == "SQLSTATE 23502"
        assert NAME not in repr(vars(record))

    def test_an_error_without_a_stores_code_has_none(
            self, caplog: pytest.LogCaptureFixture) -> None:
        assert not hasattr(warning_for(KeyError("k"), caplog), "store_code")
