"""The intake's HTTP path alone, in one process: the router's app (every route, the
shared middleware and error handlers, auth with a real credential store on SQLite in
a file, the rate limits, its logging) called as ASGI, with a publisher that writes the records out
and returns: microseconds of CPU per `POST /v1/tickets`, no sockets, no Kafka.

    .venv/bin/python -m bench.intake_asgi [--requests 2000] [--rounds 5] [--profile] 2>/dev/null

With `--profile`, cProfile's top functions by own time (cumulative too).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from services.core import access, db, kafka, logs, migrate, service_context
from services.core.credentials import Credentials
from services.core.settings import Settings
from services.router import app as router_app
from services.router import bootstrap
from services.router.models import IntakeKeyRow


class WrittenOut:
    """Writes the records out, as the transactional publisher does before queuing them."""

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        kafka.records(outputs)


class NoKeys:
    async def claim(self, key: str, *, fingerprint: str, ticket_id: str, now: datetime,
                    correlation_id: str | None = None, event_id: str | None = None,
                    occurred_at: datetime | None = None) -> IntakeKeyRow:
        raise AssertionError("the bench sends no Idempotency-Key")

    async def accepted(self, key: str, *, correlation_id: str) -> None:
        raise AssertionError("the bench sends no Idempotency-Key")

    async def unpublished(self, key: str) -> None:
        raise AssertionError("the bench sends no Idempotency-Key")

    async def find(self, key: str) -> IntakeKeyRow | None:
        raise AssertionError("the bench sends no Idempotency-Key")


async def prepared(folder: Path) -> tuple[Any, str]:
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    await migrate.upgrade(url)
    settings = Settings(database_url=url, intake_rate_limit="1000000/second")
    logs.configure(settings, service=bootstrap.NAME)  # as the service: JSON lines, INFO
    app = router_app.create_app(settings)
    context = service_context.of(app)
    credentials = Credentials(db.sessions(db.engine(url)), cache_seconds=3600)
    context.credentials = credentials
    _credential, token = await credentials.issue(access.Role.PLATFORM, "bench")
    # The intake reads no routed or held ticket.
    context.provide(bootstrap.wire(settings, routed=None, held=None,  # type: ignore[arg-type]
                                   intake_keys=NoKeys(), publisher=WrittenOut()))
    return app, token


async def post(app: Any, token: str, n: int) -> int:
    body = orjson.dumps({"customer_id": f"C-{n % 2000}", "subject": f"bench {n}",
                         "body": "The invoice of last month is missing from my account.",
                         "channel": "email", "kind": "question"})
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/tickets", "raw_path":
             b"/v1/tickets", "query_string": b"", "root_path": "",
             "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"authorization", f"Bearer {token}".encode())]}
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run(requests: int, rounds: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        app, token = await prepared(Path(folder))
        for n in range(200):  # warm up
            assert await post(app, token, n) == 202
        profiler = cProfile.Profile() if profile else None
        spent = []
        for _round in range(1 if profiler else rounds):
            began = time.process_time()
            if profiler:
                profiler.enable()
            for n in range(requests):
                status = await post(app, token, n)
                assert status == 202, status
            if profiler:
                profiler.disable()
            spent.append(1e6 * (time.process_time() - began) / requests)
        print(f"{requests} requests x {len(spent)}: us of CPU per request, least"
              f" {min(spent):,.0f}, median {statistics.median(spent):,.0f}"
              f"{' (profiled)' if profiler else ''}")
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.rounds, args.profile))


if __name__ == "__main__":
    main()
