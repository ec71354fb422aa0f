"""A configuration's admin API alone (`/v1/routing-table` on the router, `/v1/segment-rules`
on the segmenter), as an integration test runs it: its live configuration governed in a
real SQL store, announcing on the real broker, called in process (ASGI) with an admin's
credential; its file a copy in a folder of the test's."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI

from services.core import (
    config_changes,
    config_files,
    config_store,
    db,
    http,
    kafka,
    service_context,
    topics,
)
from services.core.live_config import LiveConfig
from services.core.settings import PROJECT_ROOT, Settings
from services.router import bootstrap as router_bootstrap
from services.router import table_api, table_file
from services.router.held_store import HeldTickets
from services.router.intake_keys import IntakeKeys
from services.router.store import RoutedTickets
from services.segmenter import bootstrap, live_rules, rules_api
from tests import credentials
from tests.conftest import TEST_ROUTING_TABLE


@dataclass(frozen=True)
class Config:
    """One kind of configuration: its API, where the app keeps it, an upload."""

    path: str
    state: str  # whose context holds it: the router's or the segmenter's
    api: APIRouter
    original: Path
    live: Callable[[Path], LiveConfig[Any]]
    replace: tuple[str, str]  # the version line, and the one the upload has


KINDS = {
    "routing table": Config("/v1/routing-table", "router", table_api.api,
                            TEST_ROUTING_TABLE,
                            lambda path: LiveConfig("routing_table", path, table_file.parse),
                            ("version: tests-1", "version: uploaded-2")),
    "segment rules": Config("/v1/segment-rules", "segmenter", rules_api.api,
                            PROJECT_ROOT / "config" / "segments.yaml",
                            live_rules.live_rule_set,
                            ("version: demo-2", "version: uploaded-2")),
}


@dataclass
class Service:
    client: httpx.AsyncClient  # an admin's
    live: LiveConfig[Any]
    file: Path
    upload: str  # the file with another version line
    config: Config
    routed: RoutedTickets  # the router's tickets on the same store
    versions: config_store.ConfigVersions  # the store's, as another instance writes them

    def edited(self, label: str) -> str:
        """The file with the version line `version: <label>`."""
        return self.upload.replace(self.config.replace[1], f"version: {label}")


def copy_of(config: Config, folder: Path) -> Path:
    """`config`'s file, copied into a new `folder`."""
    folder.mkdir()
    file = folder / config.original.name
    shutil.copyfile(config.original, file)
    return file


@asynccontextmanager
async def config_api(config: Config, file: Path, database_url: str, kafka_bootstrap: str,
                     ) -> AsyncIterator[Service]:
    """`config`'s API over the store of `database_url` (migrated here), seeded from
    `file` (copy_of the config's)."""
    original = config_files.read_text(file)
    assert config.replace[0] in original
    app = FastAPI()
    app.include_router(config.api)
    http.install(app, ready=lambda: True)
    live = config.live(file)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.CONFIG_CHANGES])
    publisher = kafka.Publisher(settings, client_id="config-api-tests")
    async with credentials.authenticating(app, database_url) as store:
        engine = db.engine(database_url)
        sessions = db.sessions(engine)
        routed = RoutedTickets(sessions)
        if config.state == "segmenter":
            service_context.of(app).provide(bootstrap.wire(
                settings, customers=bootstrap.customer_store(settings, sessions),
                publisher=publisher, rules=live))
        else:
            service_context.of(app).provide(router_bootstrap.wire(
                settings, routed=routed, intake_keys=IntakeKeys(sessions),
                publisher=publisher, held=HeldTickets(sessions), table=live))
        await live.govern(config_store.ConfigVersions(sessions, live.name),
                          announce=config_changes.Announcer(publisher))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://service") as client:
                client.headers.update(await credentials.headers_of(store, "admin"))
                yield Service(client, live, file, original.replace(*config.replace), config,
                              routed, config_store.ConfigVersions(sessions, live.name))
        finally:
            await publisher.close()
            await engine.dispose()


async def put(service: Service, text: str, *, headers: dict[str, str] | None = None,
              **params: str) -> httpx.Response:
    """An upload of `text` (YAML), with `params` in the query."""
    return await service.client.put(service.config.path, content=text.encode(),
                                    params=params,
                                    headers={"content-type": "application/yaml",
                                             **(headers or {})})


async def dry_run(service: Service, body: str | bytes) -> httpx.Response:
    """A dry run of `body` (YAML text, or bytes as sent)."""
    return await service.client.post(
        f"{service.config.path}/dry-run",
        content=body.encode() if isinstance(body, str) else body,
        headers={"content-type": "application/yaml"})
