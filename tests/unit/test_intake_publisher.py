"""The intake's group commit takes its producers and gathering from the settings
(`INTAKE_PRODUCERS`, `INTAKE_GATHER_MS`), each producer with an id of its own that a
restarted instance reuses (so it fences its killed predecessor)."""

from __future__ import annotations

import pytest

from services.core.settings import Settings
from services.router import bootstrap


async def test_the_intake_has_its_settings_producers_and_gathering() -> None:
    publisher = bootstrap.intake_publisher(
        Settings(instance_id="router-7", intake_producers=4, intake_gather_ms=12))
    assert publisher.transactional_ids == [
        "intake-router-7-0", "intake-router-7-1", "intake-router-7-2", "intake-router-7-3"]
    assert publisher.gather_seconds == pytest.approx(0.012)


async def test_by_default_three_producers_gather_for_five_milliseconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("INSTANCE_ID", "INTAKE_PRODUCERS", "INTAKE_GATHER_MS"):
        monkeypatch.delenv(variable, raising=False)
    publisher = bootstrap.intake_publisher(Settings())
    assert publisher.transactional_ids == ["intake-0-0", "intake-0-1", "intake-0-2"]
    assert publisher.gather_seconds == pytest.approx(0.005)


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
async def test_it_is_transactional_whatever_delivery_says(delivery: str) -> None:
    """The stages' DELIVERY is theirs: the intake's publisher, which also writes the
    router's transfers and escalations (`Connected.router`), commits in transactions
    either way, so the department lanes are read `read_committed` in both modes."""
    publisher = bootstrap.intake_publisher(Settings(delivery=delivery, instance_id="r"))
    assert publisher.transactional_ids == ["intake-r-0", "intake-r-1", "intake-r-2"]
