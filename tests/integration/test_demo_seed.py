"""devtools/demo_seed.py, which docker-compose's `demo` service runs: the customers and
credentials of the README's walk-through, once, in a file only its owner reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devtools import demo_seed
from services.core.settings import Settings
from services.router import table_file


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines())
    return dict(pairs)


@pytest.fixture
def demo_settings(sqlite_url: str) -> Settings:
    return Settings(database_url=sqlite_url)


class TestSeed:
    def test_loads_customers_and_writes_the_walk_through_credentials(
            self, demo_settings: Settings, tmp_path: Path) -> None:
        credentials = tmp_path / "data" / "credentials.env"
        done = demo_seed.seed(demo_settings, credentials, customers=20)
        assert done[0] == "demo customers loaded: 20"
        assert "written to" in done[1]
        tokens = read_env(credentials)
        departments = table_file.load(demo_settings.routing_table_file).departments
        assert set(tokens) == {"ADMIN_TOKEN", "PLATFORM_TOKEN",
                               *(f"{name.upper()}_TOKEN" for name in departments)}
        assert "PUBLIC_SECTOR_TOKEN" in tokens
        assert all(token.startswith("rt_") for token in tokens.values())
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    def test_a_file_there_before_is_left_readable_by_its_owner_only(
            self, demo_settings: Settings, tmp_path: Path) -> None:
        """A store without credentials, a credentials file from an earlier store (or
        made by hand) readable by others: the new tokens are not."""
        credentials = tmp_path / "credentials.env"
        credentials.write_text("ADMIN_TOKEN=rt_from_an_earlier_store\n", encoding="utf-8")
        credentials.chmod(0o644)
        demo_seed.seed(demo_settings, credentials, customers=20)
        assert "rt_from_an_earlier_store" not in credentials.read_text(encoding="utf-8")
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    def test_run_again_it_changes_nothing(self, demo_settings: Settings,
                                          tmp_path: Path) -> None:
        credentials = tmp_path / "credentials.env"
        demo_seed.seed(demo_settings, credentials, customers=20)
        first = credentials.read_text(encoding="utf-8")
        done = demo_seed.seed(demo_settings, credentials, customers=20)
        assert done == ["customer store in use", "credentials in use: none issued"]
        assert credentials.read_text(encoding="utf-8") == first


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
class TestHandOver:
    def test_the_file_and_a_root_owned_folder_go_to_the_checkouts_owner(
            self, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> None:
        checkout = tmp_path / "config"
        checkout.mkdir()
        os.chown(checkout, 4321, 4321)
        credentials = tmp_path / "data" / "credentials.env"
        monkeypatch.setenv("DATABASE_URL", sqlite_url)
        demo_seed.main([str(credentials), "--owner-of", str(checkout), "--customers", "10"])
        assert "demo customers loaded: 10" in capsys.readouterr().out
        for path in (credentials, credentials.parent):
            assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321), path
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
