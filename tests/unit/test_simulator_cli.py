"""`routing simulate` takes its window's moments as the API does (services/core/moments)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from services.simulator import cli


class TestWindowMoments:
    def test_an_rfc_3339_moment_with_its_offset_is_taken(self) -> None:
        assert cli.moment("2026-11-02T00:00:00+01:00", "--start") == datetime(
            2026, 11, 1, 23, tzinfo=UTC)

    @pytest.mark.parametrize(("given", "problem"), [
        ("2026-11-02T00:00:00", "not an RFC 3339 timestamp with offset"),
        ("2026-11-02 00:00+00:00", "not an RFC 3339 timestamp with offset"),
        ("2026-11-02", "not an RFC 3339 timestamp with offset"),
        ("0001-01-01T00:00:00+01:00", "outside the years 1 to 9999"),
    ])
    def test_anything_else_is_refused_saying_what_is_accepted(
            self, given: str, problem: str) -> None:
        with pytest.raises(typer.BadParameter, match=problem) as refused:
            cli.moment(given, "--end")
        assert refused.value.param_hint == "--end"
