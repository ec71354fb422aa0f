"""A retry that arrives while the first request with its Idempotency-Key is still being
accepted is told so over HTTP: 409, `in_progress`, with `Retry-After`; once the first is
accepted, the same key answers its ticket. The router's intake API on a real credential
and key store (SQLite), its publisher held in the middle of the first publish; and the
key store releasing a key whose request was answered 503."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from services.core import db, http, kafka, migrate, service_context
from services.core.settings import Settings
from services.router import bootstrap, intake, intake_policy
from services.router.held_store import HeldTickets
from services.router.intake_keys import IntakeKeys
from services.router.store import RoutedTickets
from tests import credentials

TICKET = {"customer_id": "c-1", "subject": "Invoice question", "body": "Where is it?",
          "channel": "email"}


class HeldPublisher:
    """Acknowledges nothing until released."""

    def __init__(self) -> None:
        self.entered, self.released = asyncio.Event(), asyncio.Event()
        self.published: list[Sequence[kafka.Publishable]] = []

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        self.entered.set()
        await self.released.wait()
        self.published.append(outputs)


async def test_a_retry_while_the_first_is_in_flight_gets_409_with_retry_after(
        sqlite_url: str) -> None:
    app = FastAPI()
    app.include_router(intake.api)
    http.install(app, ready=lambda: True)
    publisher = HeldPublisher()
    async with credentials.authenticating(app, sqlite_url) as store:
        engine = db.engine(sqlite_url)
        sessions = db.sessions(engine)
        service_context.of(app).provide(bootstrap.wire(
            Settings(database_url=sqlite_url, retry_after_seconds=7),
            routed=RoutedTickets(sessions), intake_keys=IntakeKeys(sessions),
            publisher=publisher, held=HeldTickets(sessions)))
        headers = {**await credentials.headers_of(store, "platform", "helpdesk"),
                   "Idempotency-Key": "key-1"}
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://router") as client:
                first = asyncio.create_task(
                    client.post("/v1/tickets", json=TICKET, headers=headers))
                await asyncio.wait_for(publisher.entered.wait(), 30)

                retry = await client.post("/v1/tickets", json=TICKET, headers=headers)
                assert retry.status_code == 409, retry.text
                assert retry.headers["Retry-After"] == "7"
                assert retry.json()["error"] == "in_progress"

                publisher.released.set()
                accepted = await first
                assert accepted.status_code == 202, accepted.text
                again = await client.post("/v1/tickets", json=TICKET, headers=headers)
                assert again.status_code == 202
                assert again.json()["ticket_id"] == accepted.json()["ticket_id"]
                assert len(publisher.published) == 1
        finally:
            await engine.dispose()


async def test_a_503_releases_a_pending_key_and_never_an_accepted_one(
        sqlite_url: str) -> None:
    """The key store's side of a retry after a 503 (intake_policy.judge_claim takes an
    unpublished key over at once): the request answered 503 releases its pending key; a
    late word of a failed publish leaves a key accepted meanwhile as it is, so that its
    retry is answered as the first and publishes nothing again."""
    await migrate.upgrade(sqlite_url)
    engine = db.engine(sqlite_url)
    keys, now = IntakeKeys(db.sessions(engine)), datetime.now(UTC)
    try:
        for key in ("failed", "accepted"):
            await keys.claim(key, fingerprint="f", ticket_id=f"t-{key}", now=now)
        await keys.accepted("accepted", correlation_id="c")
        for key in ("failed", "accepted"):
            await keys.unpublished(key)
        statuses = {key: row.status for key in ("failed", "accepted")
                    if (row := await keys.find(key)) is not None}
        assert statuses == {"failed": intake_policy.UNPUBLISHED,
                            "accepted": intake_policy.ACCEPTED}
    finally:
        await engine.dispose()
