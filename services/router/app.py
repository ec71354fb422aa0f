"""The router service: the intake API and the router stage, wired in one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.core import http, kafka, logs, topics
from services.core.settings import Settings
from services.core.stage import StageRunner, stage_running
from services.router import intake, table_file, worker

NAME = "router"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        table = table_file.load(settings.routing_table_file)
        app.state.routing_table = table
        await kafka.ensure_topics(
            settings, [*topics.PIPELINE, *map(topics.department_queue, table.departments)]
        )
        app.state.publisher = kafka.Publisher(settings, client_id=f"{NAME}-intake")
        stage = StageRunner(
            settings, name=NAME, source_topic=topics.SEGMENTED, group_id=NAME,
            transform=worker.RouteTicket(lambda: app.state.routing_table),
        )
        await stage.start()
        app.state.stage = stage
        try:
            yield
        finally:
            await stage.stop()
            await app.state.publisher.close()

    app = FastAPI(
        title="Customer routing: intake and router",
        version="1",
        description="Support platforms post tickets here; departments report on them.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(intake.api)
    http.install(app, ready=lambda: stage_running(app))
    return app


def main() -> None:
    from services.core import serve

    settings = Settings()
    logs.configure(settings, service=NAME)
    serve.run(create_app(settings), settings, port=settings.router_port)
