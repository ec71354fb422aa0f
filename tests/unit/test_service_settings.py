"""Settings every service reads alike: ports within TCP's range, a log level in any case
(the Helm chart passes `logLevel` through as given)."""

from __future__ import annotations

import pydantic
import pytest

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
