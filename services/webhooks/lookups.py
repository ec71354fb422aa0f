"""A platform's callbacks look their receiver's host name up on threads of their own.

httpx (through anyio) looks host names up with `loop.getaddrinfo`, on asyncio's default
thread pool: a handful of threads the whole process shares, the Kafka clients' connects
among them. A timeout gives up waiting for a lookup, not the thread doing it, so one
platform whose DNS server drops queries (each lookup blocking for seconds) would take
every thread, and other platforms' callbacks, and the process's other connects, would
wait behind it. Here each platform's callbacks are looked up on threads of its own, as
many as it sends at once, kept from one worker to the next (lookups still blocking when
a worker ends hold that platform's threads, not more of them): a slow resolver holds up
that platform's callbacks alone. The rest is as httpx connects: the lookup within the
connect timeout; the addresses tried as anyio tries them (the first IPv6, then the first
IPv4, then the others, each started 250 ms after the one before, or at once when it
failed, the first to connect kept); TLS checked against the host name. Where httpx would
go through a proxy (HTTPS_PROXY or ALL_PROXY in the environment, the receiver's host not
in NO_PROXY, as httpx matches them) the proxy looks names up: httpx's own transport is
kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ipaddress
import socket
import ssl
import typing

import httpcore
import httpx
from httpx._utils import URLPattern, get_environment_proxies

from services.core import unicode_errors

# How long a connect to one address runs alone before the next is tried beside it
# (anyio's, RFC 8305's).
NEXT_ADDRESS_AFTER_SECONDS = 0.25
# How long an idle connection to a receiver is kept for the next callback (httpx's).
KEEPALIVE_SECONDS = 5.0
_FAILED_CONNECT = (httpcore.ConnectError, httpcore.ConnectTimeout)


def proxied(url: str) -> bool:
    """Whether httpx, reading the environment (HTTPS_PROXY, ALL_PROXY, NO_PROXY, in any
    case), would send requests to `url` through a proxy: then its own transport, which
    the proxy looks names up for. httpx's own reading and matching (its most specific
    pattern first), which it does not expose: httpx is pinned in pyproject.toml."""
    proxies = get_environment_proxies()
    if not any(proxy is not None for proxy in proxies.values()):
        return False  # none set: NO_PROXY alone, however written, changes nothing
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        return False  # each attempt fails on it, a callback at a time, as httpx's would
    patterns = []
    for pattern, proxy in proxies.items():
        try:
            patterns.append((URLPattern(pattern), proxy))
        except httpx.InvalidURL:
            continue  # an entry httpx cannot read (e.g. NO_PROXY=[::1]): matches nothing
    return next((proxy is not None for pattern, proxy in sorted(patterns)
                 if pattern.matches(target)), False)


class OwnLookups(httpcore.AsyncNetworkBackend):
    """httpx's network backend, but for the threads its host names are looked up on."""

    def __init__(self, platform: str, *, threads: int) -> None:
        self._connect = httpcore.AnyIOBackend()
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=f"webhook-lookups-{platform}")

    async def connect_tcp(
        self, host: str, port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port, within=timeout)
        return await _first_connected([functools.partial(
            self._connect.connect_tcp, address, port, timeout=timeout,
            local_address=local_address, socket_options=socket_options)
            for address in addresses])

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
        """Lets the threads go: a lookup still blocking ends in its own time."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _addresses(self, host: str, port: int, *, within: float | None) -> list[str]:
        """The host's addresses in the order anyio tries them: the first IPv6, the first
        IPv4, then the rest as the resolver gave them. ConnectTimeout past `within`."""
        with contextlib.suppress(ValueError):
            return [str(ipaddress.ip_address(host))]
        lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            async with asyncio.timeout(within):
                found = await asyncio.get_running_loop().run_in_executor(self._threads, lookup)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"no address for {host} in {within:g} s") from error
        except OSError as error:  # socket.gaierror among them
            raise httpcore.ConnectError(f"{type(error).__name__}: {error}") from error
        except UnicodeError as error:  # a name the IDNA codec refuses
            raise httpcore.ConnectError(f"{type(error).__name__}: the host's name cannot be"
                                        f" looked up: {unicode_errors.problem(error)}"
                                        ) from error
        ordered: list[str] = []
        for family in (socket.AF_INET6, socket.AF_INET):
            first = next((str(sockaddr[0]) for af, *_, sockaddr in found if af == family),
                         None)
            if first is not None:
                ordered.append(first)
        ordered += [str(sockaddr[0]) for *_, sockaddr in found]
        return list(dict.fromkeys(ordered))


Connect = typing.Callable[[], typing.Awaitable[httpcore.AsyncNetworkStream]]


async def _first_connected(connects: list[Connect]) -> httpcore.AsyncNetworkStream:
    """The first stream `connects` make, each started NEXT_ADDRESS_AFTER_SECONDS after the
    one before (at once when every one started has failed); the others cancelled, and
    one connected meanwhile closed. The last failure if none connects."""
    running: set[asyncio.Task[httpcore.AsyncNetworkStream]] = set()
    failure: BaseException = httpcore.ConnectError("no address to connect to")
    waiting = list(connects)
    try:
        while waiting or running:
            if waiting:
                running.add(asyncio.ensure_future(waiting.pop(0)()))
            done, _ = await asyncio.wait(
                running, timeout=NEXT_ADDRESS_AFTER_SECONDS if waiting else None,
                return_when=asyncio.FIRST_COMPLETED)
            running -= done
            connected = [task for task in done if task.exception() is None]
            for extra in connected[1:]:  # two at the same moment: one is kept
                _closed_if_connected(extra)
            if connected:
                return connected[0].result()
            for task in done:
                error = task.exception()
                if not isinstance(error, _FAILED_CONNECT):
                    raise typing.cast(BaseException, error)
                failure = error
        raise failure
    finally:
        for task in running:
            task.cancel()
            task.add_done_callback(_closed_if_connected)


# Streams connected after another address won, being closed (held till then).
_CLOSING: set[asyncio.Future[None]] = set()


def _closed_if_connected(task: asyncio.Task[httpcore.AsyncNetworkStream]) -> None:
    if not task.cancelled() and task.exception() is None:
        closing = asyncio.ensure_future(task.result().aclose())
        _CLOSING.add(closing)
        closing.add_done_callback(_CLOSING.discard)


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
