"""`routing webhooks` checks what it is given as the admin API checks a body, and says a
refusal as the API says it: a text its field's pattern refuses is told in words what the
pattern accepts, never by the regex (README, "in words"). Refused before the store is
opened: no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services import cli, webhooks_cli
from services.core import access
from services.webhooks import api
from tests import command_options


def test_a_platform_name_not_a_name_is_told_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    result = CliRunner().invoke(cli.app, ["webhooks", "register", "Bad Desk", "--url",
                                          "https://hooks.example.com/in"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"platform: should be {access.SUBJECT.words}"]
    assert "pattern" not in result.output
    assert not (tmp_path / "store.db").exists()  # refused before the store is opened


class TestRefusedFieldsNameTheOptions:
    """A field the admin API's body refuses is said as what the user typed to set it
    (`command_line.checked` with the command's table: `--url`, not the body's `url`)."""

    @pytest.mark.parametrize("command", [["register", "desk"], ["update", "desk"]])
    def test_a_url_refused_is_named_by_its_option(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
        monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        result = CliRunner().invoke(cli.app, ["webhooks", *command,
                                              "--url", "http://hooks.example.com/in"])
        assert result.exit_code == 2, result.output
        [said] = result.stderr.splitlines()
        assert said.startswith("--url: ") and "https:// is required" in said
        assert not (tmp_path / "store.db").exists()

    @pytest.mark.parametrize(("command", "body", "options"), [
        (["register", "desk", "--url", "https://hooks.example.com/in"],
         api.EndpointRequest, webhooks_cli.REGISTER_OPTIONS),
        (["update", "desk", "--url", "https://hooks.example.com/in", "--disabled",
          "--lift-hold"], api.EndpointChange, webhooks_cli.UPDATE_OPTIONS)])
    def test_each_field_given_is_named_by_an_option_of_its_command(
            self, monkeypatch: pytest.MonkeyPatch, command: list[str], body: type,
            options: dict[str, str]) -> None:
        """Every field the command gives (each option typed) is in its table, as a field of
        the body, named by one of the command's own options: an option renamed fails."""
        command_options.assert_fields_named_by_options(
            monkeypatch, cli.app, webhooks_cli, "webhooks", command, body, options)
