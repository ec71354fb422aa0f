"""How long a stage has held records without finishing them, for the alert on a stage
that stopped (RoutingStageNotProgressing). Pure bookkeeping; the clock is passed in.

The lag of a stage's group cannot tell it in the quiet hours: offsets count transaction
markers, so a caught-up stage shows lag too, and a stage stuck on its last records looks
the same as long as nothing new arrives. The stage itself can: each partition it holds
records of (taken, in a share, or to be read again) has held them since its last share
finished, or since they came into hand. The stage's progress is the oldest of those
moments, and now when it holds nothing; one partition stuck while the others flow holds
it back as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Hashable

from prometheus_client import Gauge

PROGRESS = Gauge("routing_stage_progress_timestamp_seconds",
                 "Since when (Unix time) the partition a stage has held records of longest"
                 " without finishing any; now when it holds none. It stands still while a"
                 " record in hand is not finished, and while the stage's loop does not run",
                 ["stage"])


class Progress:
    def __init__(self, stage: str, clock: Callable[[], float] = time.time) -> None:
        self._stage = stage  # exported from the first round of its loop: not before
        self._clock = clock
        self._since: dict[Hashable, float] = {}

    def holding(self, partitions: Collection[Hashable]) -> None:
        """The partitions the stage holds records of now, or cannot take records of (no
        producer for them yet): each round of its loop."""
        now = self._clock()
        for partition in self._since.keys() - set(partitions):
            del self._since[partition]
        for partition in partitions:
            self._since.setdefault(partition, now)
        self._report(now)

    def finished(self, partition: Hashable) -> None:
        """A share of the partition's records is finished (processed, dead-lettered) and
        committed."""
        now = self._clock()
        if partition in self._since:
            self._since[partition] = now
        self._report(now)

    def _report(self, now: float) -> None:
        PROGRESS.labels(self._stage).set(min(self._since.values(), default=now))
