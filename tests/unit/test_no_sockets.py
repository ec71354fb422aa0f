"""The unit tier's guard (tests/unit/conftest.py) refuses network sockets."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.unit.conftest import SocketInUnitTest


class TestNoSockets:
    def test_a_tcp_connection_is_refused(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                pytest.raises(SocketInUnitTest):
            tcp.connect(("127.0.0.1", 9))

    async def test_an_asyncio_connection_is_refused(self) -> None:
        with pytest.raises(SocketInUnitTest):
            await asyncio.open_connection("127.0.0.1", 9)

    def test_a_unix_socket_pair_still_works(self) -> None:
        left, right = socket.socketpair()
        with left, right:
            left.sendall(b"x")
            assert right.recv(1) == b"x"
