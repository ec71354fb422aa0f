"""Uploading a configuration file (`PUT /v1/routing-table`, `PUT /v1/segment-rules`):
validated, written to its file, and only then put in force. A file that cannot be
written is answered 503 `config_not_writable`, and the version in force stays."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from services.core import http
from services.core.live_config import LiveConfig
from services.core.settings import PROJECT_ROOT
from services.router import table_api, table_file
from services.segmenter import live_rules, rules_api
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE


@dataclass(frozen=True)
class Config:
    """One kind of configuration: its API, where the app keeps it, an upload."""

    path: str
    state: str
    api: APIRouter
    original: Path
    live: Callable[[Path], LiveConfig[Any]]
    replace: tuple[str, str]  # the version line, and the one the upload has


KINDS = {
    "routing table": Config("/v1/routing-table", "routing_table", table_api.api,
                            TEST_ROUTING_TABLE,
                            lambda path: LiveConfig("routing_table", path, table_file.parse),
                            ("version: tests-1", "version: uploaded-2")),
    "segment rules": Config("/v1/segment-rules", "rules", rules_api.api,
                            PROJECT_ROOT / "config" / "segments.yaml",
                            live_rules.live_rule_set,
                            ("version: demo-2", "version: uploaded-2")),
}


@dataclass
class Service:
    client: httpx.AsyncClient
    live: LiveConfig[Any]
    file: Path
    upload: str
    config: Config


@pytest.fixture(params=list(KINDS))
async def service(request: pytest.FixtureRequest, tmp_path: Path,
                  sqlite_url: str) -> AsyncIterator[Service]:
    config = KINDS[request.param]
    folder = tmp_path / "config"
    folder.mkdir()
    file = folder / config.original.name
    shutil.copyfile(config.original, file)
    original = file.read_text(encoding="utf-8")
    assert config.replace[0] in original
    app = FastAPI()
    app.include_router(config.api)
    http.install(app, ready=lambda: True)
    live = config.live(file)
    setattr(app.state, config.state, live)
    async with credentials.authenticating(app, sqlite_url) as store:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            client.headers.update(await credentials.headers_of(store, "admin"))
            yield Service(client, live, file, original.replace(*config.replace), config)


async def put(service: Service, text: str) -> httpx.Response:
    return await service.client.put(service.config.path, content=text.encode(),
                                    headers={"content-type": "application/yaml"})


def make_unwritable(file: Path) -> None:
    # The tests run as root, whom permissions do not stop: a folder where the file
    # was cannot be replaced by a file either.
    file.unlink()
    file.mkdir()


class TestWrittenThenInForce:
    async def test_a_valid_upload_is_written_and_put_in_force(self, service: Service) -> None:
        response = await put(service, service.upload)
        assert response.status_code == 200
        assert response.json()["version"].startswith("uploaded-2+")
        assert service.live.current.version.startswith("uploaded-2+")
        assert service.file.read_text(encoding="utf-8") == service.upload
        assert not list(service.file.parent.glob("*.upload"))

    async def test_an_unwritable_file_is_503_and_the_version_in_force_stays(
            self, service: Service) -> None:
        before = service.live.current.version
        make_unwritable(service.file)
        response = await put(service, service.upload)
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "config_not_writable"
        assert "cannot be written" in body["detail"]
        assert "SQL" not in body["detail"]
        assert str(service.file.parent) not in body["detail"]
        assert service.live.current.version == before
        in_force = (await service.client.get(service.config.path)).json()
        assert in_force["version"] == before
        assert in_force["last_rejection"]["error"].startswith("not written: ")
        assert [path.name for path in service.file.parent.iterdir()] == [service.file.name]

    async def test_an_invalid_upload_is_not_written(self, service: Service) -> None:
        original = service.file.read_text(encoding="utf-8")
        response = await put(service, "routes: [\n")
        assert response.status_code == 422
        assert service.file.read_text(encoding="utf-8") == original
