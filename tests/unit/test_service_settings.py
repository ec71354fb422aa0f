"""Settings every service reads alike: ports within TCP's range, a log level in any case
(the Helm chart passes `logLevel` through as given)."""

from __future__ import annotations

import pydantic
import pytest

from services.core import pipeline, settings
from services.core.settings import Settings


@pytest.mark.parametrize("name", ["router_port", "segmenter_port", "metrics_port"])
@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_outside_tcps_range_is_refused_by_name(name: str, port: int) -> None:
    with pytest.raises(pydantic.ValidationError, match=name):
        Settings(**{name: port})


@pytest.mark.parametrize("given", ["info", "Info", "INFO"])
def test_a_log_level_is_taken_in_any_case(given: str) -> None:
    assert Settings(log_level=given).log_level == "INFO"


def test_a_log_level_that_is_none_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="log_level"):
        Settings(log_level="verbose")


class TestAStatementsTimeoutWithinAStagesTransaction:
    """README, DATABASE_STATEMENT_TIMEOUT_SECONDS: with the time a close may take, inside
    a stage's transaction limit, so that a store that stops answering meets a stage as an
    outage, not as a transaction that overran (which replaces its producer)."""

    def test_the_stages_limit_is_the_one_the_setting_is_held_to(self) -> None:
        loop_defaults = pipeline.StageLoop.__init__.__kwdefaults__ or {}
        assert loop_defaults["transaction_timeout_seconds"] == settings.STAGE_TRANSACTION_SECONDS

    def test_a_timeout_that_leaves_room_for_the_close_is_taken(self) -> None:
        most = settings.STAGE_TRANSACTION_SECONDS - settings.STORE_CLOSE_SECONDS
        assert Settings(database_statement_timeout_seconds=most - 0.5
                        ).database_statement_timeout_seconds == most - 0.5

    @pytest.mark.parametrize("over", [0.0, 2.0, 20.0])
    def test_one_that_leaves_none_is_refused_by_name(self, over: float) -> None:
        most = settings.STAGE_TRANSACTION_SECONDS - settings.STORE_CLOSE_SECONDS
        with pytest.raises(pydantic.ValidationError,
                           match=f"database_statement_timeout_seconds\n.*less than {most:g}"):
            Settings(database_statement_timeout_seconds=most + over)
