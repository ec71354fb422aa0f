"""services/webhooks/lookups.py without sockets: the lookup bounded by the connect
timeout, the addresses in anyio's order, connects staggered and the first kept, and a
proxy in the environment left to httpx (the real receivers: test_webhook_attempts.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

import httpcore
import pytest

from services.webhooks import lookups


class Stream:
    def __init__(self, name: str) -> None:
        self.name, self.closed = name, False

    async def aclose(self) -> None:
        self.closed = True


def connect(stream: Stream | None = None, *, after: float = 0.0,
            fails: BaseException | None = None, started: list[str] | None = None,
            name: str = "") -> Any:
    async def run() -> Any:
        if started is not None:
            started.append(name)
        await asyncio.sleep(after)
        if fails is not None:
            raise fails
        return stream
    return run


class TestTheLookup:
    async def test_past_the_connect_timeout_it_is_a_connect_timeout(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        released = threading.Event()

        def hanging(*_args: object, **_kwargs: object) -> object:
            released.wait(5)
            raise socket.gaierror(socket.EAI_AGAIN, "no answer")

        monkeypatch.setattr(socket, "getaddrinfo", hanging)
        own = lookups.OwnLookups("desk", threads=1)
        try:
            with pytest.raises(httpcore.ConnectTimeout):
                await own.connect_tcp("hooks.desk.test", 443, timeout=0.1)
        finally:
            released.set()
            own.close()

    async def test_the_addresses_go_first_ipv6_then_first_ipv4_then_the_rest(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        found = [(socket.AF_INET, "10.0.0.1"), (socket.AF_INET6, "fd00::1"),
                 (socket.AF_INET, "10.0.0.2"), (socket.AF_INET6, "fd00::2")]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *_a, **_k: [
            (family, socket.SOCK_STREAM, 6, "", (address, 443)) for family, address in found])
        tried: list[str] = []

        async def refused(address: str, *_args: object, **_kwargs: object) -> object:
            tried.append(address)
            raise httpcore.ConnectError("refused")

        own = lookups.OwnLookups("desk", threads=1)
        monkeypatch.setattr(own._connect, "connect_tcp", refused)
        try:
            with pytest.raises(httpcore.ConnectError):
                await own.connect_tcp("hooks.desk.test", 443, timeout=1.0)
        finally:
            own.close()
        assert tried == ["fd00::1", "10.0.0.1", "10.0.0.2", "fd00::2"]


class TestTheConnects:
    async def test_one_that_does_not_answer_is_passed_for_the_next_after_a_while(
            self) -> None:
        second = Stream("second")
        won = await lookups._first_connected([connect(after=60), connect(second)])
        assert won is second

    async def test_one_that_fails_has_the_next_started_at_once(self) -> None:
        started: list[str] = []
        second = Stream("second")
        won = await asyncio.wait_for(lookups._first_connected([
            connect(fails=httpcore.ConnectError("refused"), started=started, name="1"),
            connect(second, started=started, name="2")]),
            timeout=lookups.NEXT_ADDRESS_AFTER_SECONDS * 0.8)
        assert won is second and started == ["1", "2"]

    async def test_a_timeout_is_a_failure_like_any_other(self) -> None:
        second = Stream("second")
        won = await lookups._first_connected([
            connect(fails=httpcore.ConnectTimeout("no answer")), connect(second)])
        assert won is second

    async def test_none_connecting_raises_the_last_failure(self) -> None:
        last = httpcore.ConnectError("the last")
        with pytest.raises(httpcore.ConnectError, match="the last"):
            await lookups._first_connected([
                connect(fails=httpcore.ConnectTimeout("first")), connect(fails=last)])

    async def test_one_that_connected_as_it_was_cancelled_is_closed(self) -> None:
        late, fast = Stream("late"), Stream("fast")

        async def connected_as_cancelled() -> Stream:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                return late
            raise AssertionError("not cancelled")

        won = await lookups._first_connected([connected_as_cancelled, connect(fast)])
        for _ in range(5):
            await asyncio.sleep(0)
        assert won is fast and late.closed and not fast.closed


class TestThroughAProxy:
    """lookups.proxied: httpx's own transport where the environment sends the receiver's
    requests through a proxy (which looks the name up), and only there."""

    @pytest.fixture(autouse=True)
    def no_proxies(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in list(os.environ):
            if name.lower().endswith("_proxy"):
                monkeypatch.delenv(name)

    @pytest.mark.parametrize(("environment", "proxied"), [
        ({"HTTPS_PROXY": "http://proxy.internal:3128"}, True),
        ({"https_proxy": "http://proxy.internal:3128"}, True),
        ({"ALL_PROXY": "socks5://proxy.internal:1080"}, True),
        ({}, False),
        ({"HTTP_PROXY": "http://proxy.internal:3128"}, False),  # the receiver is https
        ({"FTP_PROXY": "x", "GRPC_PROXY": "y", "npm_config_https_proxy": "z"}, False),
        ({"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "*"}, False),
        ({"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "desk.test"}, False),
        ({"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "other.test"}, True),
        # httpx's own matching, where the standard library's differs: a leading dot
        # names subdomains only; `localhost` is not `hooks.localhost`.
        ({"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": ".hooks.desk.test"},
         True),
        ({"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "localhost"}, True),
    ])
    def test_as_httpx_reads_the_environment(self, monkeypatch: pytest.MonkeyPatch,
                                            environment: dict[str, str],
                                            proxied: bool) -> None:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        assert lookups.proxied("https://hooks.desk.test/routing") is proxied

    def test_a_url_httpx_cannot_parse_is_left_to_each_attempt(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
        assert lookups.proxied("https://10.0.0.300/hooks") is False

    @pytest.mark.parametrize("no_proxy", ["[::1]", "localhost,example.com:abc"])
    def test_a_no_proxy_entry_httpx_cannot_read_stops_nothing(
            self, monkeypatch: pytest.MonkeyPatch, no_proxy: str) -> None:
        """It raised for every URL, and every worker stopped at each poll."""
        monkeypatch.setenv("NO_PROXY", no_proxy)
        assert lookups.proxied("https://hooks.desk.test/routing") is False
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
        assert lookups.proxied("https://hooks.desk.test/routing") is True
