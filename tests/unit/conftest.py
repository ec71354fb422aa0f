"""The unit tier has no sockets: any attempt to reach the network (or a local port) fails
the test that makes it. Unix socket pairs, which the event loop uses to wake itself, are
allowed; everything that talks to Kafka, a database server or Prometheus belongs in
tests/integration or tests/e2e."""

from __future__ import annotations

import socket
from typing import Any

import pytest


class SocketInUnitTest(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, *_args: Any, **_kwargs: Any) -> None:
        if self.family != socket.AF_UNIX:
            raise SocketInUnitTest("tests/unit must not open network connections")
        return None

    for name in ("connect", "connect_ex", "bind"):
        original = getattr(socket.socket, name)

        def guarded(self: socket.socket, *args: Any, _original: Any = original,
                    **kwargs: Any) -> Any:
            refuse(self)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(socket.socket, name, guarded)
