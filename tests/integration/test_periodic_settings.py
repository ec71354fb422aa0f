"""README's Configuration: LOAD_SAMPLE_SECONDS, ESCALATION_CHECK_SECONDS and
WEBHOOK_POLL_SECONDS are the intervals the running router's jobs wait out (the load
sample, the escalation check, the webhook delivery poll). The router is started as it
runs, on a real broker and store; a spy on the periodic loop (`background.every`, which
every periodic job runs, leased or not) records the interval each job asks for, then
runs the real loop. That the loop waits what it is asked: tests/unit/test_background.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from services.core import background
from services.core.settings import Settings
from services.router import app as router_app
from tests.conftest import TEST_ROUTING_TABLE

# Each job's task and the setting of its interval, each set apart from every default.
JOBS = {"load": ("load_sample_seconds", 7.25),
        "escalation": ("escalation_check_seconds", 8.5),
        "webhook-delivery": ("webhook_poll_seconds", 9.75)}


async def test_the_router_jobs_wait_the_intervals_set(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, float] = {}
    all_asked = asyncio.Event()
    real_every = background.every

    async def spied(seconds: float, action: Callable[[], Awaitable[object]],
                    stop: asyncio.Event, **options: bool) -> None:
        current = asyncio.current_task()
        assert current is not None
        asked.setdefault(current.get_name(), seconds)
        if JOBS.keys() <= asked.keys():
            all_asked.set()
        await real_every(seconds, action, stop, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(background, "every", spied)
    configured = settings.model_copy(update={
        "routing_table_file": TEST_ROUTING_TABLE,
        **{setting: seconds for setting, seconds in JOBS.values()}})
    app = router_app.create_app(configured)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(all_asked.wait(), 60)
    assert {job: asked[job] for job in JOBS} == {
        job: seconds for job, (_setting, seconds) in JOBS.items()}
