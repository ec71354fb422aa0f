"""The dead letters read from `tickets.dlq` since the metrics service started, past those
the topic held then (`routing_dead_letters_read_total`): a counter, which only rises, so
that dead letters arriving are seen though the retention deletes others meanwhile (the
dead letters held, `routing_dead_letters`, rise and fall by both). Pure: the reader
(kafka_watch.DeadLetterCount) hands it the places of what it reads.

Each is counted once, by its place (partition, offset): one read again, after a seek, is
not counted again. Those the topic held at start-up are not counted at all, so that a
restart, which sets the counter back to 0 (as Prometheus's `increase()` expects of a
counter), is no burst of new dead letters; those dead-lettered while no metrics service
ran are in neither count of a restart (the dead letters held show them)."""

from __future__ import annotations

from collections.abc import Mapping


class DeadLettersRead:
    def __init__(self) -> None:
        # Per partition, the first offset not counted yet; None until the topic's ends at
        # start-up are known (what is read before is below them).
        self._next: dict[int, int] | None = None

    def start_at(self, ends: Mapping[int, int]) -> None:
        """The topic's end offsets at start-up: the dead letters below were there already.
        Only the first call counts (the reader may ask for the ends again)."""
        if self._next is None:
            self._next = dict(ends)

    def read(self, partition: int, offset: int) -> bool:
        """A dead letter read: whether it is new, to be counted (a partition not there at
        start-up is new from its first offset)."""
        if self._next is None or offset < self._next.get(partition, 0):
            return False
        self._next[partition] = offset + 1
        return True
