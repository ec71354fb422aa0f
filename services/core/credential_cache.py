"""What a service read of credentials, kept so that it does not read the store on each
request.

A credential looked up is kept `AUTH_CACHE_SECONDS` (the service that changes or revokes
it forgets it at once), and requests that find its entry expired share one read.
While the store is down, the intake goes by what it last read of a platform's key, so it
keeps accepting tickets from the platforms it knows (a key revoked during the outage
works until the store is back); department and admin tokens are not trusted on an old
read (503). A key once seen revoked or gone is never trusted again on an older read.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache

from services.core import access, db

# The longest a read of a credential is waited for: a read that hangs (a connection half
# open after a network failure) is shared by every request for that key, so it fails as
# an outage would, and the intake goes by what it last read (as the store's connect
# timeout).
READ_SECONDS = db.CONNECT_SECONDS

_NOT_CACHED = object()  # a credential not in the cache (None: cached as unknown)


@dataclass(frozen=True)
class LookedUp:
    """What a service remembers of a credential it looked up (no secret)."""

    secret_hash: str
    principal: access.Principal | None  # None: revoked


# A credential as the store has it, by its id: None if there is no such one.
LookUp = Callable[[str], Awaitable[LookedUp | None]]


class CredentialCache:
    def __init__(self, look_up: LookUp, *, cache_seconds: float,
                 read_seconds: float = READ_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._look_up = look_up
        self._read_seconds = read_seconds
        # `clock`: the seconds entries expire by (time.monotonic's; a test's, moved by it).
        self._looked: TTLCache[str, LookedUp | None] = TTLCache(
            maxsize=10_000, ttl=cache_seconds, timer=clock)
        # Platforms' valid keys, for store outages: the intake goes on with them, while
        # other roles' tokens are not trusted on an old read. None: seen revoked or gone,
        # kept so that no older read (one still under way, say) brings the key back.
        self._last_read: LRUCache[str, LookedUp | None] = LRUCache(maxsize=10_000)
        # The reads under way, by credential: requests that find a credential's entry
        # expired share one read, rather than each reading the store at once (at some
        # hundreds of requests a second, every few seconds, a burst of reads each waiting
        # for a connection of its own).
        self._reading: dict[str, asyncio.Future[LookedUp | None]] = {}

    async def looked_up(self, credential_id: str) -> LookedUp | None:
        """The credential as kept, else as read from the store; while the store is down,
        a platform's key as last read. None: unknown."""
        # One read of the cache: an entry may expire between a membership test and a read.
        try:
            cached: object = self._looked[credential_id]
        except KeyError:
            cached = _NOT_CACHED
        if isinstance(cached, LookedUp) or cached is None:
            return cached
        try:
            return await self._read(credential_id)
        except db.STORE_ERRORS as error:
            if not db.is_outage(error) or credential_id not in self._last_read:
                raise
            # The store is down: a platform's key as last read (None: revoked).
            return self._last_read[credential_id]

    def forget(self, credential_id: str) -> None:
        """Forget what was read of a credential changed here: the next request reads it."""
        self._looked.pop(credential_id, None)
        self._reading.pop(credential_id, None)  # a read under way keeps nothing

    def forget_revoked(self, credential_id: str) -> None:
        """Forget a credential revoked here, and never trust an older read of it."""
        self.forget(credential_id)
        self._last_read[credential_id] = None  # revoked: final

    def _remember(self, credential_id: str, looked: LookedUp | None) -> None:
        """Keep a successful read for store outages: a platform's valid key, or that a
        key is revoked or gone, which is final."""
        if looked is None or looked.principal is None:
            # An unknown id is kept only once it was valid: anyone can make ids up.
            if looked is not None or credential_id in self._last_read:
                self._last_read[credential_id] = None
        elif looked.principal.role is access.Role.PLATFORM:
            seen_revoked = credential_id in self._last_read and \
                self._last_read[credential_id] is None
            if not seen_revoked:
                self._last_read[credential_id] = looked

    def _read(self, credential_id: str) -> asyncio.Future[LookedUp | None]:
        """The credential as the store has it, and kept: read once for all the requests
        that ask while the read is under way (shielded, so that a request that goes away
        leaves the read to the others)."""
        reading = self._reading.get(credential_id)
        if reading is None or reading.get_loop() is not asyncio.get_running_loop():
            reading = self._reading[credential_id] = asyncio.ensure_future(
                self._read_and_keep(credential_id))
            reading.add_done_callback(functools.partial(self._read_done, credential_id))
        return asyncio.shield(reading)

    def _read_done(self, credential_id: str,
                   reading: asyncio.Future[LookedUp | None]) -> None:
        if self._reading.get(credential_id) is reading:
            del self._reading[credential_id]
        if not reading.cancelled():
            reading.exception()  # its requests may all have gone: nobody else reads it

    async def _read_and_keep(self, credential_id: str) -> LookedUp | None:
        async with asyncio.timeout(self._read_seconds):
            looked = await self._look_up(credential_id)
        # Kept unless the credential was changed or revoked by this service while it was
        # being read: the read may have found it before (the requests waiting on it are
        # answered as it read; other services take the change within their cache's time).
        if self._reading.get(credential_id) is asyncio.current_task():
            self._looked[credential_id] = looked
            self._remember(credential_id, looked)
        return looked
