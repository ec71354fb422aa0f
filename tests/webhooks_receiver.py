"""A platform's webhook receiver for the tests (a pytest plugin, loaded by conftest).

A real HTTP server on a free loopback port, in its own threads, so that sync and async
tests alike can use it and a slow answer holds up nobody else:

    receiver = webhook_receiver()          # the fixture: a factory, stopped at the end
    register its `receiver.url` for a platform, keep the secret shown;
    await receiver.wait_for(3)             # bounded wait for 3 callbacks
    receiver.verified(secret)              # each body, checked with standardwebhooks

`status` sets the answer (204 by default; 500 for a failing receiver), `headers` more
headers of it (a Retry-After); `hold()` makes
it answer only once `release()` is called (a slow receiver); `Receiver(port=...)` not
started yet is a receiver that is down until `start()`. `answer_bytes` gives the answer a
body that long, sent at once; with `drip_seconds` the whole answer, status line first,
goes a byte at a time; `cut` counts the answers the sender stopped reading before their
end. With `tls` (a server context, e.g. trustme's), it answers HTTPS as `localhost`.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks

from devtools import ports


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    port: int = field(default_factory=ports.free_port)
    path: str = "/hooks/routing"
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)  # more of the answer's
    received: list[Received] = field(default_factory=list)
    attempts: int = 0  # every request, answered or not yet
    in_flight: int = 0
    max_in_flight: int = 0  # the most requests it held at once
    answer_bytes: int = 0
    drip_seconds: float | None = None
    cut: int = 0
    tls: ssl.SSLContext | None = None  # HTTPS, as `localhost`, with this server context
    _held: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self._held.set()

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}{self.path}"
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with receiver._lock:
                    receiver.attempts += 1
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver._held.wait(120)
                with receiver._lock:
                    receiver.in_flight -= 1
                status = receiver.status
                if 200 <= status < 300:
                    receiver.received.append(Received(
                        {k.lower(): v for k, v in self.headers.items()}, body, status))
                more = "".join(f"{name}: {value}\r\n"
                               for name, value in receiver.headers.items())
                head = (f"{self.protocol_version} {status} {HTTPStatus(status).phrase}\r\n"
                        f"{more}content-length: {receiver.answer_bytes}\r\n\r\n").encode()
                try:
                    if receiver.drip_seconds:  # the whole answer, status line first
                        self.drip(head + b"x" * receiver.answer_bytes)
                    else:
                        self.wfile.write(head)
                        self.answer(receiver.answer_bytes)
                except OSError:  # the sender closed the connection: it read no more
                    with receiver._lock:
                        receiver.cut += 1

            def answer(self, length: int) -> None:
                chunk = b"x" * 65536
                while length > 0:
                    self.wfile.write(chunk[:length])
                    self.wfile.flush()
                    length -= len(chunk)

            def drip(self, answer: bytes) -> None:
                assert receiver.drip_seconds is not None
                for position in range(len(answer)):
                    self.wfile.write(answer[position:position + 1])
                    self.wfile.flush()
                    time.sleep(receiver.drip_seconds)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._held.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self) -> None:
        """Answer nothing until `release()`: a slow receiver."""
        self._held.clear()

    def release(self) -> None:
        self._held.set()

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every callback accepted, its signature checked by the standardwebhooks library
        (raises WebhookVerificationError on a bad one)."""
        webhook = standardwebhooks.Webhook(secret)
        return [webhook.verify(item.body, item.headers) for item in self.received]

    async def wait_for(self, count: int, *, within: float = 60.0,
                       what: Callable[[Receiver], int] | None = None) -> None:
        """Until `count` callbacks were accepted (or `what(self)` reaches it)."""
        measure = what or (lambda receiver: len(receiver.received))
        deadline = time.monotonic() + within
        while measure(self) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{measure(self)} of {count} callbacks within {within}s")
            await asyncio.sleep(0.05)


@pytest.fixture
def webhook_receiver() -> Iterator[Callable[..., Receiver]]:
    """A factory of started receivers (`start=False`: one that is down), all stopped at
    the end of the test."""
    made: list[Receiver] = []

    def make(*, start: bool = True, **options: Any) -> Receiver:
        receiver = Receiver(**options)
        made.append(receiver)
        if start:
            receiver.start()
        return receiver

    yield make
    for receiver in made:
        receiver.stop()
