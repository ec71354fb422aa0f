"""The metrics service: timelines from `tickets.events`, `/metrics` and the stats API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.core import db, http, kafka, logs, migrate, topics
from services.core.settings import Settings
from services.core.stage import StageRunner, stage_running
from services.metrics import api, tracker
from services.metrics.store import TimelineStore

NAME = "metrics"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate.upgrade(settings.database_url)
        engine = db.engine(settings.database_url)
        sessions = db.sessions(engine)
        app.state.timelines = TimelineStore(sessions)
        await kafka.ensure_topics(settings, topics.PIPELINE)
        stage = StageRunner(settings, name=NAME, source_topic=topics.EVENTS, group_id=NAME,
                            transform=tracker.TrackTicketEvent(app.state.timelines, sessions))
        await stage.start()
        app.state.stage = stage
        try:
            yield
        finally:
            await stage.stop()
            await engine.dispose()

    app = FastAPI(title="Customer routing: response-time metrics", version="1",
                  lifespan=lifespan)
    app.state.settings = settings
    app.include_router(api.api)
    http.install(app, ready=lambda: stage_running(app))
    return app


def main() -> None:
    from services.core import serve

    settings = Settings()
    logs.configure(settings, service=NAME)
    serve.run(create_app(settings), settings, port=settings.metrics_port)
