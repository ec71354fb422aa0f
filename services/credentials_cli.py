"""`routing credentials`: issue, list, change and revoke credentials straight in the
store (the first admin's token comes from here; afterwards admins can use
`/v1/credentials`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import typer

from services.core import access, command_line, credentials_api, store_start
from services.core.config_files import ConfigError
from services.core.credentials import LIMITS, Credential, Credentials, Revoked
from services.core.settings import Settings, from_environment
from services.router import table_file

app = command_line.App(
    help="Credentials: platforms' API keys, departments' and admins' tokens.",
    no_args_is_help=True)


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Credentials]:
    async with store_start.command_sessions(settings) as sessions:
        yield Credentials(sessions)


def _id_checked(credential_id: str) -> str:
    """`credential_id` if it is one as `/v1/credentials/{id}` checks it; else that said
    (never the text given: it may be anything, of any length), exit 2."""
    if credentials_api.CREDENTIAL_ID.fullmatch(credential_id) is None:
        typer.echo(f"credential_id: should be {credentials_api.CREDENTIAL_ID.words}", err=True)
        raise typer.Exit(2)
    return credential_id


def terms_help(field: str, without: str = "") -> str:
    """An option's help for a credential's term (`issue` and `change` alike): the HTTP
    API's description of the field, one text for all three, then `without`: what leaving
    it out does in that command (`credentials_api.issued_without`, `changed_without`)."""
    return (credentials_api.CredentialTerms.model_fields[field].description or "") + without


# The fields of the request each command checks (the HTTP API's) by the options that set
# them.
ISSUE_OPTIONS = {"role": "--role", "subject": "--subject", "label": "--label",
                 "rate_limit": "--rate-limit", "byte_rate_limit": "--byte-rate-limit"}
CHANGE_OPTIONS = {"label": "--label", "rate_limit": "--rate-limit",
                  "byte_rate_limit": "--byte-rate-limit"}
# What puts a limit back to its setting's default (a change's field set to null).
DEFAULT_OPTIONS = {"rate_limit": "--default-rate-limit",
                   "byte_rate_limit": "--default-byte-rate-limit"}


@app.command("issue")
def issue(
    role: Annotated[access.Role, typer.Option(help="platform, department or admin")],
    subject: Annotated[str | None, typer.Option(
        help="The platform's or department's name (not for admins)")] = None,
    label: Annotated[str, typer.Option(help=terms_help("label"))] = "",
    rate_limit: Annotated[str | None, typer.Option(help=terms_help(
        "rate_limit", credentials_api.issued_without("rate_limit")))] = None,
    byte_rate_limit: Annotated[str | None, typer.Option(help=terms_help(
        "byte_rate_limit", credentials_api.issued_without("byte_rate_limit")))] = None,
) -> None:
    """Issue a credential and print its token: the only time it is shown."""
    # The same checks as the HTTP API's.
    wanted = command_line.checked(credentials_api.CredentialRequest, ISSUE_OPTIONS, role=role,
                                  subject=subject, label=label, rate_limit=rate_limit,
                                  byte_rate_limit=byte_rate_limit)

    async def run() -> str:
        settings = from_environment()
        async with store_start.command_sessions(settings) as sessions:
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
                    typer.echo(f"{ISSUE_OPTIONS['subject']}: {problem}", err=True)
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


@app.command("change")
def change(
    credential_id: str,
    label: Annotated[str | None, typer.Option(help=terms_help("label"))] = None,
    rate_limit: Annotated[str | None, typer.Option(help=terms_help(
        "rate_limit", credentials_api.changed_without(
            "rate_limit", back=DEFAULT_OPTIONS["rate_limit"])))] = None,
    byte_rate_limit: Annotated[str | None, typer.Option(help=terms_help(
        "byte_rate_limit", credentials_api.changed_without(
            "byte_rate_limit", back=DEFAULT_OPTIONS["byte_rate_limit"])))] = None,
    default_rate_limit: Annotated[bool, typer.Option(
        help=f"Back to {credentials_api.the_default('rate_limit')}")] = False,
    default_byte_rate_limit: Annotated[bool, typer.Option(
        help=f"Back to {credentials_api.the_default('byte_rate_limit')}")] = False,
) -> None:
    """Change a credential's label or its own limits: every service takes the change
    within AUTH_CACHE_SECONDS. Its role and subject are fixed: issue a new one."""
    credential_id = _id_checked(credential_id)
    given: dict[str, object] = {} if label is None else {"label": label}
    for name, value, default in (("rate_limit", rate_limit, default_rate_limit),
                                 ("byte_rate_limit", byte_rate_limit,
                                  default_byte_rate_limit)):
        if value is not None and default:
            typer.echo(f"{CHANGE_OPTIONS[name]} or {DEFAULT_OPTIONS[name]}, not both", err=True)
            raise typer.Exit(2)
        if value is not None or default:
            given[name] = value
    if not given:
        typer.echo("nothing to change: give " + ", ".join(
            (CHANGE_OPTIONS["label"],
             *(option for name in LIMITS for option in (CHANGE_OPTIONS[name],
                                                        DEFAULT_OPTIONS[name])))), err=True)
        raise typer.Exit(2)
    wanted = command_line.checked(credentials_api.CredentialChange, CHANGE_OPTIONS, **given)

    async def run() -> Credential | Revoked | None:
        async with open_store(from_environment()) as store:
            return await store.change(credential_id, wanted.changes)

    changed = asyncio.run(run())
    if changed is None:
        typer.echo(credentials_api.no_credential(credential_id), err=True)
        raise typer.Exit(1)
    if isinstance(changed, Revoked):
        typer.echo(changed.problem, err=True)
        raise typer.Exit(1)
    typer.echo(changed.model_dump_json())


@app.command("revoke")
def revoke(credential_id: str) -> None:
    """Revoke a credential: every service refuses it within AUTH_CACHE_SECONDS."""
    credential_id = _id_checked(credential_id)

    async def run() -> bool:
        async with open_store(from_environment()) as store:
            return await store.revoke(credential_id) is not None

    if not asyncio.run(run()):
        typer.echo(credentials_api.no_credential(credential_id), err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {credential_id}")
