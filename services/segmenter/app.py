"""The segmenter service: the segmenter stage and the customer/segment API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from services.core import db, http, kafka, logs, topics
from services.core.settings import Settings
from services.core.stage import StageRunner, stage_running
from services.segmenter import api, rules, rules_file, worker
from services.segmenter.store import CustomerStore

NAME = "segmenter"


@dataclass
class LiveRules:
    current: rules.RuleSet


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.rules = LiveRules(rules_file.load(settings.segment_rules_file))
        engine = db.engine(settings.database_url)
        await db.create_tables(engine)
        app.state.customers = CustomerStore(db.sessions(engine))
        await kafka.ensure_topics(settings, topics.PIPELINE)
        stage = StageRunner(
            settings, name=NAME, source_topic=topics.INCOMING, group_id=NAME,
            transform=worker.SegmentTicket(lookup=app.state.customers.customer,
                                           current_rules=lambda: app.state.rules.current))
        await stage.start()
        app.state.stage = stage
        try:
            yield
        finally:
            await stage.stop()
            await engine.dispose()

    app = FastAPI(title="Customer routing: segmenter", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(api.api)
    http.install(app, ready=lambda: stage_running(app))
    return app


def main() -> None:
    from services.core import serve

    settings = Settings()
    logs.configure(settings, service=NAME)
    serve.run(create_app(settings), settings, port=settings.segmenter_port)
