"""`routing credentials issue --role admin`, as README gives it for the first admin (on
the host, in a compose container, in a Kubernetes pod): it migrates the store it is
given, issues the credential, prints the token once, and that token authenticates as an
admin. On a SQLite file: no sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services import cli
from services.core import access, credentials_api, db
from services.core.credentials import Credentials


async def authenticated(url: str, token: str) -> access.Principal | None:
    engine = db.engine(url)
    try:
        return await Credentials(db.sessions(engine)).authenticate(token)
    finally:
        await engine.dispose()


def test_the_first_admin_is_issued_straight_in_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    result = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "admin",
                                          "--label", "ops on call"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    principal = asyncio.run(authenticated(url, token))
    assert principal is not None and principal.role is access.Role.ADMIN


def test_a_subject_an_admin_cannot_have_is_refused_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    result = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "admin",
                                          "--subject", "public_sector"])
    assert result.exit_code == 2
    assert "subject: admin credentials have no subject" in result.output
    assert not (tmp_path / "store.db").exists()  # refused before the store is opened


def test_a_rate_limit_not_a_rate_is_told_what_a_rate_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    result = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "platform",
                                          "--subject", "helpdesk", "--rate-limit", "fast"])
    assert result.exit_code == 2
    assert f"rate_limit: should be {credentials_api.RATE_FORM.words}\n" in result.output
    assert "pattern" not in result.output


def test_a_department_credential_names_a_department_of_the_table_in_force(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the HTTP API checks it: the store's version in force, here none yet, so the
    file's (config/routing.yaml)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    refused = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "department",
                                           "--subject", "nowhere"])
    assert refused.exit_code == 2
    assert "subject: no department 'nowhere' in the routing table in force; its" \
        " departments: " in refused.output
    assert "public_sector" in refused.output
    issued = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "department",
                                          "--subject", "public_sector"])
    assert issued.exit_code == 0, issued.output
    principal = asyncio.run(authenticated(url, issued.stdout.strip().splitlines()[-1]))
    assert principal is not None and principal.subject == "public_sector"


def test_a_routing_table_that_cannot_be_read_is_said_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("ROUTING_TABLE_FILE", str(tmp_path / "none.yaml"))
    result = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "department",
                                          "--subject", "public_sector"])
    assert result.exit_code == 1
    assert "cannot tell the departments of the routing table in force:" in result.output
    assert "none.yaml" in result.output
    assert isinstance(result.exception, SystemExit)  # an exit, not an error raised


def test_a_keys_own_budget_of_body_bytes_is_checked_as_the_http_apis(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README, "Credentials": `--byte-rate-limit` as `byte_rate_limit` over HTTP: below
    1 MiB a window, refused naming it (exit 2, before the store is opened); else the key
    carries it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    refused = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "platform",
                                           "--subject", "zendesk",
                                           "--byte-rate-limit", "512KiB/second"])
    assert refused.exit_code == 2
    assert "byte_rate_limit: at least 1MiB a window, the largest body a request may send" \
        in refused.output
    assert "such as 4MiB/second" in refused.output
    assert not (tmp_path / "store.db").exists()
    issued = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "platform",
                                          "--subject", "zendesk",
                                          "--byte-rate-limit", "16MiB/second"])
    assert issued.exit_code == 0, issued.output
    principal = asyncio.run(authenticated(url, issued.stdout.strip().splitlines()[-1]))
    assert principal is not None and principal.byte_rate_limit == "16MiB/second"
