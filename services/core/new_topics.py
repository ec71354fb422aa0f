"""Topics made a moment ago, as the cluster shows them.

CreateTopics answers once the controller has made a topic; each broker applies that to
the metadata it serves in its own time (a broker just started about 0.1 s later). A look
at the cluster's topics that lacks one expected there may be a look taken too soon, so
it is taken again for a while (`SHOWS_WITHIN_SECONDS`) before the topic is taken for
absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

SHOWS_WITHIN_SECONDS = 5.0
LOOK_AGAIN_SECONDS = 0.1

Seen = TypeVar("Seen")


async def looked_again(look: Callable[[], Awaitable[Seen]],
                       shows: Callable[[Seen], bool]) -> Seen:
    """What `look()` saw once it `shows` what is expected, or SHOWS_WITHIN_SECONDS
    after the first look: the last look either way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SHOWS_WITHIN_SECONDS
    seen = await look()
    while not shows(seen) and loop.time() < deadline:
        await asyncio.sleep(LOOK_AGAIN_SECONDS)
        seen = await look()
    return seen
