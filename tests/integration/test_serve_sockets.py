"""The sockets a router instance serves an intake port on, shared with the other intake
processes of its host (services/core/serve.py, INTAKE_SHARED_PORT)."""

from __future__ import annotations

import socket

import pytest

from devtools import ports
from services.core import serve


def test_processes_share_the_shared_port_and_not_their_own() -> None:
    own, shared = ports.free_ports_by_name(("own", "shared")).values()
    first = serve.bound("127.0.0.1", shared, shared=True)
    second = serve.bound("127.0.0.1", shared, shared=True)  # another intake's
    mine = serve.bound("127.0.0.1", own)
    try:
        for sock in (first, second, mine):
            sock.listen()  # as uvicorn does once the app has started
        assert second.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert mine.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        with pytest.raises(OSError):
            serve.bound("127.0.0.1", own)  # its own port is its alone
    finally:
        for sock in (first, second, mine):
            sock.close()


def test_a_taken_port_stops_the_start_as_uvicorn_does() -> None:
    own, shared = ports.free_ports_by_name(("own", "shared")).values()
    taken = serve.bound("127.0.0.1", shared)  # a process that does not share it
    taken.listen()
    try:
        with pytest.raises(SystemExit) as exited:
            serve._shared("127.0.0.1", own, shared)
        assert exited.value.code == serve.STARTUP_FAILURE
    finally:
        taken.close()
