"""Credentials while the SQL store is down, on a real PostgreSQL that is stopped: a
platform's key is checked against its last good read, and a key once seen revoked is
never trusted again on an older read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devtools.postgres import LocalPostgres
from services.core import access, db, migrate
from services.core.credentials import Credentials

CACHE_SECONDS = 0.2


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "postgres")
    await asyncio.to_thread(server.start)
    try:
        await migrate.upgrade(server.url)
        yield server
    finally:
        await asyncio.to_thread(server.remove)


@pytest.fixture
async def service_and_operator(own_postgres: LocalPostgres
                               ) -> AsyncIterator[tuple[Credentials, Credentials]]:
    """A service's credential checks, and the operator's (another process's) store."""
    service_engine, operator_engine = db.engine(own_postgres.url), db.engine(own_postgres.url)
    try:
        yield (Credentials(db.sessions(service_engine), cache_seconds=CACHE_SECONDS),
               Credentials(db.sessions(operator_engine)))
    finally:
        await service_engine.dispose()
        await operator_engine.dispose()


async def past_the_cache() -> None:
    await asyncio.sleep(CACHE_SECONDS * 2)


class TestStoreOutage:
    async def test_a_key_seen_revoked_stays_refused_and_others_go_on(
            self, own_postgres: LocalPostgres,
            service_and_operator: tuple[Credentials, Credentials]) -> None:
        service, operator = service_and_operator
        leaving, leaving_token = await operator.issue(access.Role.PLATFORM, "leaving-desk")
        _, staying_token = await operator.issue(access.Role.PLATFORM, "staying-desk")
        _, department_token = await operator.issue(access.Role.DEPARTMENT, "public_sector")
        for token in (leaving_token, staying_token, department_token):
            assert await service.authenticate(token) is not None  # good reads

        await operator.revoke(leaving.credential_id)  # elsewhere: this service's cache
        await past_the_cache()
        assert await service.authenticate(leaving_token) is None  # seen revoked

        await asyncio.to_thread(own_postgres.stop)
        try:
            await past_the_cache()
            assert await service.authenticate(leaving_token) is None
            staying = await service.authenticate(staying_token)
            assert staying is not None and staying.subject == "staying-desk"
            assert await service.authenticate(staying_token[:-1] + "x") is None  # its secret
            with pytest.raises(db.STORE_ERRORS) as down:  # not trusted on an old read: 503
                await service.authenticate(department_token)
            assert db.is_outage(down.value)
        finally:
            await asyncio.to_thread(own_postgres.start)

        await past_the_cache()
        assert await service.authenticate(leaving_token) is None
        assert await service.authenticate(staying_token) is not None

    async def test_a_key_revoked_here_is_refused_during_an_outage(
            self, own_postgres: LocalPostgres,
            service_and_operator: tuple[Credentials, Credentials]) -> None:
        service, _ = service_and_operator
        credential, token = await service.issue(access.Role.PLATFORM, "leaving-desk")
        assert await service.authenticate(token) is not None
        await service.revoke(credential.credential_id)

        await asyncio.to_thread(own_postgres.stop)
        try:
            await past_the_cache()
            assert await service.authenticate(token) is None
        finally:
            await asyncio.to_thread(own_postgres.start)

    async def test_a_change_not_read_since_is_not_in_force_during_an_outage(
            self, own_postgres: LocalPostgres,
            service_and_operator: tuple[Credentials, Credentials]) -> None:
        """README: a service goes by what it last read of a platform's key, so a change it
        read no more before the store went down, its own included, waits for the store."""
        service, operator = service_and_operator
        elsewhere, elsewhere_token = await operator.issue(access.Role.PLATFORM, "desk")
        here, here_token = await operator.issue(access.Role.PLATFORM, "desk")
        for token in (elsewhere_token, here_token):
            assert await service.authenticate(token) is not None  # good reads
        await operator.change(elsewhere.credential_id, {"rate_limit": "5/second"})
        await service.change(here.credential_id, {"rate_limit": "5/second"})

        await asyncio.to_thread(own_postgres.stop)
        try:
            await past_the_cache()
            for token in (elsewhere_token, here_token):
                principal = await service.authenticate(token)
                assert principal is not None and principal.rate_limit is None  # as read
        finally:
            await asyncio.to_thread(own_postgres.start)

        await past_the_cache()
        for token in (elsewhere_token, here_token):
            principal = await service.authenticate(token)
            assert principal is not None and principal.rate_limit == "5/second"
