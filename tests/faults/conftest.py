"""Fixtures of the fault scenarios: a seeded store per scenario, and the table of results
every scenario adds its row to, printed once at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import pytest

from devtools import demo
from tests.faults import harness


@dataclass(frozen=True)
class Row:
    scenario: str
    sent: int
    acknowledged: int
    delivered: int
    lost: int
    duplicated: int
    unacknowledged_delivered: int
    recovery: str
    seconds: float

    @classmethod
    def of(cls, scenario: str, outcome: harness.Outcome, *, recovery: str,
           seconds: float) -> Row:
        return cls(scenario, outcome.sent, len(outcome.acknowledged), len(outcome.delivered),
                   len(outcome.lost), len(outcome.duplicated), len(outcome.unacknowledged),
                   recovery, seconds)


HEADINGS = ("scenario", "sent", "202", "delivered", "lost", "dup", "no-202 delivered",
            "recovery", "took")


class Results:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print("\n" + "\n".join(self.render([row])))

    @staticmethod
    def render(rows: list[Row]) -> list[str]:
        cells = [HEADINGS] + [
            (*(str(value) for value in astuple(row)[:-1]), f"{row.seconds:.0f}s")
            for row in rows]
        widths = [max(len(line[column]) for line in cells) for column in range(len(HEADINGS))]
        return [" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
                for line in cells]


@pytest.fixture(scope="session")
def results(request: pytest.FixtureRequest) -> Iterator[Results]:
    table = Results()
    yield table
    if not table.rows:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_sep("=", "fault scenarios")
        for line in table.render(table.rows):
            reporter.write_line(line)


@pytest.fixture
async def seeded_sqlite(tmp_path: Path) -> str:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await demo.seed_if_empty(database_url, count=100)
    return database_url
