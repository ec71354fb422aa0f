"""`routing webhooks` checks what it is given as the admin API checks a body, and says a
refusal as the API says it: a text its field's pattern refuses is told in words what the
pattern accepts, never by the regex (README, "in words"). Refused before the store is
opened: no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services import cli
from services.core import credentials_api


def test_a_platform_name_not_a_name_is_told_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    result = CliRunner().invoke(cli.app, ["webhooks", "register", "Bad Desk", "--url",
                                          "https://hooks.example.com/in"])
    assert result.exit_code == 2, result.output
    assert f"platform: should be {credentials_api.SUBJECT.words}" in result.output
    assert "pattern" not in result.output
    assert not (tmp_path / "store.db").exists()  # refused before the store is opened
