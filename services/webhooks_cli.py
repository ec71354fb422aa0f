"""`routing webhooks`: the platforms' callback endpoints and dead letters, straight in the
store (the same checks and actions as the admin API's `/v1/webhooks`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

import typer

from services.core import command_line, credentials, db, store_start
from services.core.settings import from_environment
from services.webhooks import api, endpoint_store, models, outbox_store, pages, service

app = command_line.App(help="Callbacks to the platforms: endpoints, secrets, dead letters.",
                       no_args_is_help=True)
T = TypeVar("T")


@dataclass(frozen=True)
class _Stores:
    endpoints: endpoint_store.Endpoints
    deliveries: outbox_store.Deliveries
    credentials: credentials.Credentials


@contextlib.asynccontextmanager
async def _stores() -> AsyncIterator[_Stores]:
    settings = from_environment()
    await store_start.migrated(settings.database_url)
    engine = db.store_engine(settings)
    try:
        sessions = db.sessions(engine)
        yield _Stores(service.endpoints_of(settings, sessions), outbox_store.Deliveries(sessions),
                      credentials.Credentials(sessions))
    finally:
        await engine.dispose()


def _run(action: Callable[[_Stores], Awaitable[T]]) -> T:
    async def run() -> T:
        async with _stores() as stores:
            return await action(stores)

    return asyncio.run(run())


def _found(value: T | None, platform: str) -> T:
    if value is None:
        typer.echo(f"platform {platform!r} has no endpoint", err=True)
        raise typer.Exit(1)
    return value


Url = Annotated[str, typer.Option(help="https:// (http:// only on loopback)")]

# The fields of the request each command checks (the admin API's) by what sets them.
REGISTER_OPTIONS = {"platform": "platform", "url": "--url"}
UPDATE_OPTIONS = {"url": "--url", "enabled": "--enabled/--disabled",
                  "held_until": "--lift-hold"}


@app.command("register")
def register(platform: str, url: Url) -> None:
    """Register a platform's endpoint and print its signing secret: shown this once."""
    wanted = command_line.checked(api.EndpointRequest, REGISTER_OPTIONS,
                                  platform=platform, url=url)
    registered = _run(lambda stores: service.register(stores.endpoints, stores.credentials,
                                                      wanted.platform, wanted.url))
    if isinstance(registered, service.NoCredential):
        typer.echo(f"{REGISTER_OPTIONS['platform']}: {registered.problem}", err=True)
        raise typer.Exit(2)
    if registered is None:
        typer.echo(f"platform {platform!r} has an endpoint: use update or delete", err=True)
        raise typer.Exit(1)
    typer.echo(f"registered {platform} -> {wanted.url}", err=True)
    typer.echo(registered[1])


@app.command("list")
def listed() -> None:
    """Every endpoint (without secrets), one JSON object per line."""
    for endpoint in _run(lambda stores: stores.endpoints.listed()):
        typer.echo(endpoint.model_dump_json())


@app.command("update")
def update(platform: str,
           url: Annotated[str | None, typer.Option(help="A new URL")] = None,
           enabled: Annotated[bool | None, typer.Option(
               "--enabled/--disabled", help="Disabled: callbacks wait")] = None,
           lift_hold: Annotated[bool, typer.Option(
               help="Lift the hold its receiver asked for (a 429, a 503 with"
                    " Retry-After): callbacks go at once")] = False) -> None:
    """Change a platform's URL, disable and enable its endpoint, or lift its hold."""
    change = command_line.checked(api.EndpointChange, UPDATE_OPTIONS, url=url, enabled=enabled,
                                  **({"held_until": None} if lift_hold else {}))
    changed = _run(lambda stores: stores.endpoints.update(
        platform, url=change.url, enabled=change.enabled, lift_hold=change.lifts_hold))
    typer.echo(_found(changed, platform).model_dump_json())


@app.command("delete")
def delete(platform: str) -> None:
    """Delete a platform's endpoint and the callbacks still waiting for it."""
    _found(_run(lambda stores: stores.endpoints.delete(platform)), platform)
    typer.echo(f"deleted {platform}")


@app.command("rotate-secret")
def rotate_secret(platform: str, force: Annotated[bool, typer.Option(
        help="Even while the secret the last rotation replaced still signs: the current"
             " one alone is replaced (lost before it was stored)")] = False) -> None:
    """Print a new signing secret, in force at once (the old one signs too for
    WEBHOOK_SECRET_OVERLAP_SECONDS): shown this once."""
    rotated = _found(_run(lambda stores: stores.endpoints.rotate_secret(platform, force=force)),
                     platform)
    if isinstance(rotated, endpoint_store.StillSigning):
        typer.echo(api.still_signing(rotated)["detail"], err=True)
        raise typer.Exit(1)
    typer.echo(rotated)


@app.command("dead-letters")
def dead_letters(
    platform: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(
        help=f"At most this many, 1-{outbox_store.LISTED_AT_MOST}")] = outbox_store.LISTED_AT_MOST,
    since: Annotated[str | None, typer.Option(
        help="The next page: after the place the page before said")] = None,
) -> None:
    """Dead-lettered callbacks, those dead-lettered longest ago first, one JSON object per
    line; where the next page starts, if there is one, on stderr."""
    problem = api.page_size_problem(limit)
    if problem:
        typer.echo(f"--limit: {problem}", err=True)
        raise typer.Exit(2)
    try:
        place = None if since is None else pages.place_of(since)
    except ValueError as exc:
        typer.echo(f"--since: {exc}", err=True)
        raise typer.Exit(2) from exc
    page = _run(lambda stores: stores.deliveries.page(models.DEAD, platform=platform,
                                                      since=place, limit=limit))
    for delivery in page.deliveries:
        typer.echo(delivery.model_dump_json())
    if page.next is not None:
        typer.echo(f"more: the next page with --since {page.next.cursor}", err=True)


@app.command("replay")
def replay(delivery_id: Annotated[str | None, typer.Argument(
               help="One callback's webhook-id; none: every dead-lettered one")] = None,
           platform: Annotated[str | None, typer.Option()] = None) -> None:
    """Send dead-lettered callbacks again, from their first attempt."""
    count = _run(lambda stores: stores.deliveries.replay(delivery_id=delivery_id,
                                                          platform=platform))
    typer.echo(f"replayed {count}")
    if delivery_id is not None and not count:
        raise typer.Exit(1)
