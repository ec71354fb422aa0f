"""The stats window's documented pattern (OpenAPI) says exactly what the server accepts."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI

from services.core import durations
from services.metrics import api

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def accepted(text: str) -> bool:
    try:
        durations.parse_window(text)
    except ValueError:
        return False
    return True


def documented(text: str) -> bool:
    return re.fullmatch(durations.WINDOW_PATTERN, text) is not None


class TestWindowPattern:
    @pytest.mark.parametrize("unit", list(UNITS))
    def test_pattern_and_parser_agree_on_every_number_near_the_bounds(self, unit: str) -> None:
        bound = min(999_999, 366 * 86400 // UNITS[unit])
        numbers = [*range(0, 1200), *range(max(0, bound - 1200), bound + 1200),
                   99_999, 100_000, 999_999, 1_000_000]
        texts = [f"{number}{unit}" for number in numbers] + [f"0{n}{unit}" for n in (1, 12)]
        assert [t for t in texts if documented(t) != accepted(t)] == []

    @pytest.mark.parametrize("text", ["367d", "8785h", "527041m", "1000000s", "01h", "1h\n",
                                      "1w", ""])
    def test_what_the_pattern_refuses_the_server_refuses(self, text: str) -> None:
        assert not documented(text)
        assert not accepted(text)

    def test_the_bound_is_in_the_openapi_schema(self) -> None:
        app = FastAPI()
        app.include_router(api.api)
        operation = app.openapi()["paths"]["/v1/segments/stats"]["get"]
        window = next(p for p in operation["parameters"] if p["name"] == "window")
        assert window["schema"]["pattern"] == durations.WINDOW_PATTERN
        assert not re.fullmatch(window["schema"]["pattern"], "400d")
