"""A record the Kafka client cannot read at all: a header name that is not UTF-8, which
aiokafka raises on out of every fetch of its partition. Written with kcat, since no
Python client writes one."""

from __future__ import annotations

import asyncio


async def write_unreadable(bootstrap: str, topic: str, *, partition: int) -> None:
    kcat = await asyncio.create_subprocess_exec(
        b"kcat", b"-P", b"-b", bootstrap.encode(), b"-t", topic.encode(), b"-p",
        str(partition).encode(), b"-H", b"\xff\xfename=value", stdin=asyncio.subprocess.PIPE)
    await asyncio.wait_for(kcat.communicate(b"unreadable\n"), 60)
    assert kcat.returncode == 0
