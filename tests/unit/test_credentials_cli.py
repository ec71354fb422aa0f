"""`routing credentials issue --role admin`, as README gives it for the first admin (on
the host, in a compose container, in a Kubernetes pod): it migrates the store it is
given, issues the credential, prints the token once, and that token authenticates as an
admin. On a SQLite file: no sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from services import cli, credentials_cli
from services.core import access, credentials_api, db, settings
from services.core.credentials import LIMITS, Credentials
from tests import command_options


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
    assert result.stderr.splitlines() == ["--subject: admin credentials have no subject"]
    assert not (tmp_path / "store.db").exists()  # refused before the store is opened


def test_a_rate_limit_not_a_rate_is_told_what_a_rate_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    result = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "platform",
                                          "--subject", "helpdesk", "--rate-limit", "fast"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"--rate-limit: should be {settings.RATE.words}"]
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
    assert refused.stderr.startswith("--subject: no department 'nowhere' in the routing"
                                     " table in force; its departments: ")
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
    assert refused.stderr.startswith(
        "--byte-rate-limit: at least 1MiB a window, the largest body a request may send")
    assert "such as 4MiB/second" in refused.output
    assert not (tmp_path / "store.db").exists()
    issued = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "platform",
                                          "--subject", "zendesk",
                                          "--byte-rate-limit", "16MiB/second"])
    assert issued.exit_code == 0, issued.output
    principal = asyncio.run(authenticated(url, issued.stdout.strip().splitlines()[-1]))
    assert principal is not None and principal.byte_rate_limit == "16MiB/second"


def issued_platform_key(*options: str) -> tuple[str, str]:
    """A key of zendesk issued by the command with `options`: its id and token."""
    issued = CliRunner().invoke(cli.app, ["credentials", "issue", "--role", "platform",
                                          "--subject", "zendesk", *options])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    parts = access.split_token(token)
    assert parts is not None
    return parts[0], token


class TestChange:
    """README, "Credentials": `routing credentials change` as `PATCH /v1/credentials/{id}`:
    the same checks and words, a bad value refused (exit 2) before the store is opened."""

    @pytest.mark.parametrize(("options", "said"), [
        (["--byte-rate-limit", "512KiB/second"],
         "--byte-rate-limit: at least 1MiB a window, the largest body a request may send"),
        (["--rate-limit", "fast"], "--rate-limit: should be a rate such as 200/second"),
        (["--rate-limit", "5/minute", "--default-rate-limit"],
         "--rate-limit or --default-rate-limit, not both"),
        ([], "nothing to change: give --label, --rate-limit, --default-rate-limit,"
             " --byte-rate-limit, --default-byte-rate-limit"),
    ])
    def test_a_bad_change_is_refused_naming_the_field(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str],
            said: str) -> None:
        monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        refused = CliRunner().invoke(cli.app, ["credentials", "change", "0123456789ab",
                                               *options])
        assert refused.exit_code == 2
        assert refused.stderr.startswith(said)
        assert not (tmp_path / "store.db").exists()

    def test_a_key_carries_its_new_limits(self, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        monkeypatch.setenv("DATABASE_URL", url)
        credential_id, token = issued_platform_key("--rate-limit", "100/second")
        changed = CliRunner().invoke(cli.app, [
            "credentials", "change", credential_id, "--default-rate-limit",
            "--byte-rate-limit", "16MiB/second", "--label", "zendesk, more bytes"])
        assert changed.exit_code == 0, changed.output
        shown = json.loads(changed.stdout)
        assert (shown["credential_id"], shown["label"], shown["rate_limit"],
                shown["byte_rate_limit"]) == (credential_id, "zendesk, more bytes", None,
                                              "16MiB/second")
        principal = asyncio.run(authenticated(url, token))
        assert principal is not None
        assert (principal.rate_limit, principal.byte_rate_limit) == (None, "16MiB/second")

    def test_an_unknown_or_revoked_key_is_said(self, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        unknown = CliRunner().invoke(cli.app, ["credentials", "change", "0123456789ab",
                                               "--label", "x"])
        assert (unknown.exit_code, unknown.stderr.strip()) == (
            1, "no credential '0123456789ab'")
        credential_id, _token = issued_platform_key()
        CliRunner().invoke(cli.app, ["credentials", "revoke", credential_id])
        revoked = CliRunner().invoke(cli.app, ["credentials", "change", credential_id,
                                               "--label", "x"])
        assert (revoked.exit_code, revoked.stderr.strip()) == (
            1, f"credential '{credential_id}' is revoked: issue a new one with the label and"
               " limits wanted")


def test_revoking_an_unknown_key_says_it_in_the_apis_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`revoke` of an id no key has says it as `change` and `DELETE /v1/credentials/{id}`
    do (exit 1)."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    unknown = CliRunner().invoke(cli.app, ["credentials", "revoke", "0123456789ab"])
    assert (unknown.exit_code, unknown.stderr.strip()) == (
        1, credentials_api.no_credential("0123456789ab"))


class TestAnIdNotAnId:
    """`change` and `revoke` check the id as `/v1/credentials/{id}` does, in the same
    words, before the store is opened: a byte that is no UTF-8 (from the shell, as
    `$'\\xff'`) or an id of thousands of characters is neither sent nor printed back."""

    @pytest.mark.parametrize("command", [["change", "--label", "x"], ["revoke"]])
    @pytest.mark.parametrize("credential_id", [
        "\udcff", "x" * 5000, "0123456789AB", "0123456789ab\n", ""])
    def test_exit_2_saying_what_an_id_is(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str],
            credential_id: str) -> None:
        monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        name, *options = command
        refused = CliRunner().invoke(cli.app, ["credentials", name, credential_id, *options])
        assert (refused.exit_code, refused.output) == (
            2, f"credential_id: should be {credentials_api.CREDENTIAL_ID.words}\n")
        assert not (tmp_path / "store.db").exists()


# What leaving a term out does, each command's own: issue gives the service's default,
# change keeps the current one (its --default-* option goes back to the default).
WITHOUT = {
    "label": ("", ""),
    "rate_limit": (" (default: the service's INTAKE_RATE_LIMIT)",
                   " (left out: unchanged; --default-rate-limit for the service's"
                   " INTAKE_RATE_LIMIT)"),
    "byte_rate_limit": (" (default: the service's INTAKE_BYTE_RATE_LIMIT)",
                        " (left out: unchanged; --default-byte-rate-limit for the service's"
                        " INTAKE_BYTE_RATE_LIMIT)")}


@pytest.mark.parametrize("field", ["label", "rate_limit", "byte_rate_limit"])
def test_issue_and_change_say_a_term_as_the_api_describes_it(field: str) -> None:
    """`--byte-rate-limit`'s help (and each term's) is one text, `issue`'s and `change`'s:
    the field's description in the HTTP API's schema, then what leaving it out does in
    that command."""
    commands = typer.main.get_group(cli.app).commands["credentials"]
    assert isinstance(commands, typer.core.TyperGroup)
    helps = {name: [param.help for param in commands.commands[name].params
                    if param.name == field and isinstance(param, typer.core.TyperOption)]
             for name in ("issue", "change")}
    described = credentials_api.CredentialTerms.model_fields[field].description
    assert described
    issued, changed = WITHOUT[field]
    assert helps == {"issue": [described + issued], "change": [described + changed]}


@pytest.mark.parametrize(("field", "setting"), [("rate_limit", "INTAKE_RATE_LIMIT"),
                                                ("byte_rate_limit", "INTAKE_BYTE_RATE_LIMIT")])
def test_changes_default_options_name_the_setting_they_go_back_to(field: str,
                                                                  setting: str) -> None:
    """`--default-rate-limit` and `--default-byte-rate-limit` say the setting a credential
    without the limit gets, as `--rate-limit`'s help says it."""
    commands = typer.main.get_group(cli.app).commands["credentials"]
    assert isinstance(commands, typer.core.TyperGroup)
    helps = [param.help for param in commands.commands["change"].params
             if param.name == f"default_{field}"]
    assert helps == [f"Back to the service's {setting}"]


class TestRefusedFieldsNameTheOptions:
    """A field the HTTP API's body refuses is said as the option the user typed to set it
    (`command_line.checked` with the command's table: `--rate-limit`, not `rate_limit`)."""

    @pytest.mark.parametrize(("options", "said"), [
        (["issue", "--role", "admin", "--subject", "public_sector"],
         "--subject: admin credentials have no subject"),
        (["issue", "--role", "platform", "--subject", "zendesk", "--label", "x" * 1000],
         "--label: "),
        (["issue", "--role", "platform", "--subject", "zendesk", "--rate-limit", "fast"],
         f"--rate-limit: should be {settings.RATE.words}"),
        (["issue", "--role", "platform", "--subject", "zendesk",
          "--byte-rate-limit", "512KiB/second"], "--byte-rate-limit: at least 1MiB a window"),
        (["change", "0123456789ab", "--label", "x" * 1000], "--label: "),
        (["change", "0123456789ab", "--rate-limit", "fast"],
         f"--rate-limit: should be {settings.RATE.words}"),
        (["change", "0123456789ab", "--byte-rate-limit", "512KiB/second"],
         "--byte-rate-limit: at least 1MiB a window")])
    def test_a_field_refused_is_named_by_its_option(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str],
            said: str) -> None:
        monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        refused = CliRunner().invoke(cli.app, ["credentials", *options])
        assert refused.exit_code == 2, refused.output
        [line] = refused.stderr.splitlines()
        assert line.startswith(said)
        assert not (tmp_path / "store.db").exists()

    @pytest.mark.parametrize(("command", "body", "options"), [
        (["issue", "--role", "platform", "--subject", "zendesk", "--label", "desk",
          "--rate-limit", "5/second", "--byte-rate-limit", "2MiB/second"],
         credentials_api.CredentialRequest, credentials_cli.ISSUE_OPTIONS),
        (["change", "0123456789ab", "--label", "desk", "--rate-limit", "5/second",
          "--byte-rate-limit", "2MiB/second"],
         credentials_api.CredentialChange, credentials_cli.CHANGE_OPTIONS),
        (["change", "0123456789ab", "--default-rate-limit", "--default-byte-rate-limit"],
         credentials_api.CredentialChange, credentials_cli.CHANGE_OPTIONS)])
    def test_each_field_given_is_named_by_an_option_of_its_command(
            self, monkeypatch: pytest.MonkeyPatch, command: list[str], body: type,
            options: dict[str, str]) -> None:
        """Every field the command gives (each option typed) is in its table, as a field of
        the body, named by one of the command's own options: an option renamed fails."""
        command_options.assert_fields_named_by_options(
            monkeypatch, cli.app, credentials_cli, "credentials", command, body, options)

    def test_the_options_putting_a_limit_back_are_changes_own(self) -> None:
        """What `change` says of its --default-* options (their help, "not both", "nothing
        to change") names options it has, one a limit."""
        assert set(credentials_cli.DEFAULT_OPTIONS) == set(LIMITS)
        assert set(credentials_cli.DEFAULT_OPTIONS.values()) <= command_options.typed(
            cli.app, "credentials", "change")
