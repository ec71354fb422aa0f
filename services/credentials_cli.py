"""`routing credentials`: issue, list and revoke credentials straight in the store (the
first admin's token comes from here; afterwards admins can use `/v1/credentials`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import access, credentials_api, db, request_bodies, store_start
from services.core.config_files import ConfigError
from services.core.credentials import Credentials
from services.core.settings import Settings, from_environment
from services.router import table_file

app = typer.Typer(help="Credentials: platforms' API keys, departments' and admins' tokens.",
                  no_args_is_help=True)


@contextlib.asynccontextmanager
async def open_sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await store_start.migrated(settings.database_url)
    engine = db.store_engine(settings)
    try:
        yield db.sessions(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Credentials]:
    async with open_sessions(settings) as sessions:
        yield Credentials(sessions)


@app.command("issue")
def issue(
    role: Annotated[access.Role, typer.Option(help="platform, department or admin")],
    subject: Annotated[str | None, typer.Option(
        help="The platform's or department's name (not for admins)")] = None,
    label: Annotated[str, typer.Option(help="What it is for")] = "",
    rate_limit: Annotated[str | None, typer.Option(
        help="Platforms: their intake rate limit, e.g. 200/second")] = None,
    byte_rate_limit: Annotated[str | None, typer.Option(
        help="Its budget of body bytes on the routes its rate limit counts, e.g."
             " 16MiB/second")] = None,
) -> None:
    """Issue a credential and print its token: the only time it is shown."""
    try:  # the same checks as the HTTP API's
        wanted = credentials_api.CredentialRequest(role=role, subject=subject, label=label,
                                                   rate_limit=rate_limit,
                                                   byte_rate_limit=byte_rate_limit)
    except ValidationError as exc:
        for problem in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in problem["loc"]) or "options"
            typer.echo(f"{where}: {request_bodies.message_of(problem)}", err=True)
        raise typer.Exit(2) from exc

    async def run() -> str:
        settings = from_environment()
        async with open_sessions(settings) as sessions:
            if wanted.role is access.Role.DEPARTMENT:  # as the HTTP API checks it
                try:
                    table = await table_file.in_force(sessions, settings.routing_table_file)
                except ConfigError as exc:
                    typer.echo(f"cannot tell the departments of the routing table in force:"
                               f" {exc}", err=True)
                    raise typer.Exit(1) from None
                problem = credentials_api.department_problem(wanted.role, wanted.subject,
                                                             table.departments)
                if problem is not None:
                    typer.echo(f"subject: {problem}", err=True)
                    raise typer.Exit(2)
            credential, token = await Credentials(sessions).issue(
                wanted.role, wanted.subject, label=wanted.label, rate_limit=wanted.rate_limit,
                byte_rate_limit=wanted.byte_rate_limit)
        typer.echo(f"issued {credential.credential_id} ({role.value}"
                   f"{' ' + subject if subject else ''})", err=True)
        return token

    typer.echo(asyncio.run(run()))


@app.command("list")
def listed() -> None:
    """Every credential (without secrets), one JSON object per line."""

    async def run() -> None:
        async with open_store(from_environment()) as store:
            for credential in await store.listed():
                typer.echo(credential.model_dump_json())

    asyncio.run(run())


@app.command("revoke")
def revoke(credential_id: str) -> None:
    """Revoke a credential: every service refuses it within AUTH_CACHE_SECONDS."""

    async def run() -> bool:
        async with open_store(from_environment()) as store:
            return await store.revoke(credential_id) is not None

    if not asyncio.run(run()):
        typer.echo(f"no credential {credential_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {credential_id}")
