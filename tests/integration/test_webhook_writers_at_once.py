"""Two admins change one platform's endpoint at once, on two services (an engine each):
the second waits for the first and sees what it left, on SQLite as on PostgreSQL (a read
FOR UPDATE locks nothing on SQLite: `db.get_held`); the admin actions kept say what
happened to the endpoint."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest

from services.core import admin_actions, db
from services.core.admin_actions import Action
from services.webhooks import catalog, endpoint_store
from services.webhooks.endpoint_store import Endpoints

PLATFORM = "helpdesk"
FIRST_URL, MOVED_URL = "https://one.example.com/hooks", "https://two.example.com/hooks"
Act = Callable[[Endpoints], Awaitable[object]]


def endpoints_of(engine: Any) -> Endpoints:
    return Endpoints(db.sessions(engine), secret_overlap=timedelta(hours=1))


async def held_at_once(database_url: str, monkeypatch: pytest.MonkeyPatch,
                       module: ModuleType, name: str, act: Act
                       ) -> tuple[object, object, list[admin_actions.AdminAction]]:
    """What `act` returns twice: once on another engine, held after it read the endpoint
    (in `module.name`, which it calls then) until the second has run or has had a second
    to run (it may be waiting for the first: either way is right); and the actions kept
    on the endpoint, oldest first."""
    engine = db.engine(database_url)
    go_on = threading.Event()
    try:
        await endpoints_of(engine).register(PLATFORM, FIRST_URL)
        read = threading.Event()
        unheld = getattr(module, name)

        def held(*args: Any, **kwargs: Any) -> Any:
            read.set()
            go_on.wait()
            return unheld(*args, **kwargs)

        monkeypatch.setattr(module, name, held)

        async def first() -> object:
            engine = db.engine(database_url)  # another service's, on another loop
            try:
                return await act(endpoints_of(engine))
            finally:
                await engine.dispose()

        firsts = asyncio.ensure_future(asyncio.to_thread(asyncio.run, first()))
        await asyncio.to_thread(read.wait)
        monkeypatch.setattr(module, name, unheld)
        second = asyncio.ensure_future(act(endpoints_of(engine)))
        await asyncio.wait([second], timeout=1)  # done, or waiting for the first
        go_on.set()
        done = await asyncio.gather(firsts, second)
        kept = await admin_actions.AdminActions(db.sessions(engine)).listed()
        return done[0], done[1], [action for action in reversed(kept)
                                  if action.target == PLATFORM]
    finally:
        go_on.set()
        await engine.dispose()


async def test_two_rotations_at_once_one_rotates_the_other_is_told_the_old_still_signs(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    one, other, kept = await held_at_once(
        database_url, monkeypatch, endpoint_store, "new_secret",
        lambda endpoints: endpoints.rotate_secret(PLATFORM))

    rotated = [secret for secret in (one, other) if isinstance(secret, str)]
    refused = [still for still in (one, other)
               if isinstance(still, endpoint_store.StillSigning)]
    assert len(rotated) == 1 and len(refused) == 1, (one, other)
    engine = db.engine(database_url)
    try:
        target = await endpoints_of(engine).target(PLATFORM)
    finally:
        await engine.dispose()
    assert target is not None and target.secrets[0] == rotated[0]  # the one shown signs
    assert [action.action for action in kept] == [Action.ENDPOINT_REGISTERED,
                                                  Action.SECRET_ROTATED]


async def test_two_moves_to_one_url_at_once_the_second_finds_it_moved(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    one, other, kept = await held_at_once(
        database_url, monkeypatch, catalog, "hold_in_force",
        lambda endpoints: endpoints.update(PLATFORM, url=MOVED_URL))

    assert all(isinstance(endpoint, endpoint_store.Endpoint) and endpoint.url == MOVED_URL
               for endpoint in (one, other))
    # One change made, and recorded once: the second had nothing left to change.
    assert [action.action for action in kept] == [Action.ENDPOINT_REGISTERED,
                                                  Action.ENDPOINT_CHANGED]
