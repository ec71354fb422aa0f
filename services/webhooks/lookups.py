"""A platform's callbacks look their receiver's host name up on a thread of their own.

httpx (through anyio) looks host names up with `loop.getaddrinfo`, on asyncio's default
thread pool: a handful of threads the whole process shares, the Kafka clients' connects
among them. A timeout gives up waiting for a lookup, not the thread doing it, so one
platform whose DNS server drops queries (each lookup blocking for seconds) would take
every thread, and other platforms' callbacks, and the process's other connects, would
wait behind it. Here each delivery worker (one a platform) looks up on its own thread,
one lookup at a time: a slow resolver holds up that platform's callbacks alone. The
connection itself, TLS (checked against the host name) and all else are httpx's own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import socket
import ssl
import typing

import httpcore
import httpx


class OwnLookups(httpcore.AsyncNetworkBackend):
    """httpx's network backend, but for the thread its host names are looked up on."""

    def __init__(self, platform: str) -> None:
        self._connect = httpcore.AnyIOBackend()
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"webhook-lookups-{platform}")

    async def connect_tcp(
        self, host: str, port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to the first of the host's addresses that takes one, in the
        resolver's order (each an IP address: no lookup on the shared pool)."""
        failures: list[httpcore.ConnectError] = []
        for address in await self._addresses(host, port):
            try:
                return await self._connect.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except httpcore.ConnectError as error:
                failures.append(error)
        raise failures[-1] if failures else httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(
        self, path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._connect.connect_unix_socket(path, timeout=timeout,
                                                       socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._connect.sleep(seconds)

    def close(self) -> None:
        """Lets the thread go: a lookup still blocking ends in its own time."""
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            found = await asyncio.get_running_loop().run_in_executor(self._thread, lookup)
        except (OSError, UnicodeError) as error:  # socket.gaierror among them
            raise httpcore.ConnectError(f"{type(error).__name__}: {error}") from error
        return list(dict.fromkeys(str(address[0]) for *_, address in found))


class LookingUpOwn(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that connects through `lookups`, of up to
    `connections` connections (a worker's concurrency): httpx takes no network backend
    of its own, so its pool is made again, as httpx makes it but for those two."""

    def __init__(self, tls: ssl.SSLContext, lookups: OwnLookups, *, connections: int) -> None:
        super().__init__(verify=tls)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls, max_connections=connections,
            max_keepalive_connections=connections, keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=lookups)


# How long an idle connection to a receiver is kept for the next callback (httpx's).
KEEPALIVE_SECONDS = 5.0
