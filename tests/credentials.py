"""Credentials for tests: issued in the real store the services read, as operators do."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.core import access, db, migrate, service_context
from services.core.credentials import Credentials


async def issue_token(database_url: str, role: str, subject: str | None = None, *,
                      rate_limit: str | None = None) -> str:
    """A fresh token of `role` ("admin", "platform" or "department") for `subject`."""
    await migrate.upgrade(database_url)
    engine = db.engine(database_url)
    try:
        _credential, token = await Credentials(db.sessions(engine)).issue(
            access.Role(role), subject, label="tests", rate_limit=rate_limit)
    finally:
        await engine.dispose()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def issue_token_blocking(database_url: str, role: str, subject: str | None = None) -> str:
    """`issue_token` for synchronous code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, issue_token(database_url, role, subject)).result()


@contextlib.asynccontextmanager
async def authenticating(app: FastAPI, database_url: str) -> AsyncIterator[Credentials]:
    """Give an app built in a test the credential store its services' lifespans give it."""
    await migrate.upgrade(database_url)
    engine = db.engine(database_url)
    service_context.of(app).credentials = store = Credentials(db.sessions(engine))
    try:
        yield store
    finally:
        await engine.dispose()


async def headers_of(store: Credentials, role: str, subject: str | None = None) -> dict[str, str]:
    _credential, token = await store.issue(access.Role(role), subject, label="tests")
    return bearer(token)
