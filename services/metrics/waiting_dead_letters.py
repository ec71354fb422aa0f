"""The dead letters held in `tickets.dlq`: read from it and not deleted since by its
retention (`routing_dead_letters`), and those waiting among them, with no replay marker
(dead_letter_reading.Replayed), by the stage that dead-lettered each and the topic it was
read from. Pure: the readers (kafka_watch.DeadLetterCount) hand it what they read, the
dead letters and the markers in whatever order they come.

The labels come from the dead letters' headers, and only from fixed sets, so that no
writer of the dead-letter topic can make series of its own (nor put a ticket's or a
customer's data in a label): a stage of the pipeline (topics.STAGE_GROUPS, whose names
are the stages') and a stage's input (topics.STAGE_INPUTS), anything else `other`: a
dead letter the Kafka client cannot read, one without those headers, or one naming
another topic (which a replay never writes to).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.core import dead_letter_reading, topics

OTHER = "other"
Labels = tuple[str, str]  # (stage, source_topic)


def labels(headers: Sequence[tuple[str, bytes]] | None) -> Labels:
    found = dead_letter_reading.header_values(headers)
    stage, source = found.get(topics.DLQ_STAGE), found.get(topics.DLQ_SOURCE_TOPIC)
    return (stage if stage in topics.STAGE_GROUPS else OTHER,
            source if source in topics.STAGE_INPUTS else OTHER)


@dataclass(frozen=True)
class _Held:
    labels: Labels
    dead_lettered_at: float | None  # seconds since the epoch; None: not known


@dataclass(frozen=True)
class Figures:
    """What is exported: the dead letters waiting per labels, at 0 when none waits for
    each stage with its input and for labels of a dead letter held, replayed or not (so
    that the first is a change, and the last one replayed leaves 0, not a gap); and when
    the oldest of them was dead-lettered (only labels with one waiting whose time is
    known)."""

    waiting: dict[Labels, int]
    oldest: dict[Labels, float]


class WaitingDeadLetters:
    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self.replayed = dead_letter_reading.Replayed()
        self.changed = True  # since the last figures: a dead letter or a marker read
        # Labels of a dead letter held once, shown at 0 once none waits (even after the
        # topic's retention deleted it), not left as a gap.
        self._labels_seen: set[Labels] = set()

    def held(self, dead_letter: dead_letter_reading.Record) -> None:
        """A dead letter read from `tickets.dlq`."""
        self.changed = True
        at = dead_letter.timestamp / 1000 if dead_letter.timestamp >= 0 else None
        held = _Held(labels(dead_letter.headers), at)
        self._labels_seen.add(held.labels)
        self._held[dead_letter_reading.dead_letter_id(dead_letter.partition,
                                                      dead_letter.offset)] = held

    @property
    def held_count(self) -> int:
        """The dead letters held, replayed or not: each read once (by its place), less
        those the retention deleted (`gone_before`)."""
        return len(self._held)

    def marked(self, marker: dead_letter_reading.Marker) -> None:
        """A replay marker read from `tickets.dlq.replayed`."""
        self.changed = True
        self.replayed.read(marker)

    def gone_before(self, starts: Mapping[int, int]) -> int:
        """Forget the dead letters the topic no longer holds: below each partition's first
        offset (`starts`, after its retention deleted them), which no replay can find;
        how many were forgotten."""
        gone = [dead_letter_id for dead_letter_id in self._held
                if _below(dead_letter_reading.parse_id(dead_letter_id), starts)]
        for dead_letter_id in gone:
            del self._held[dead_letter_id]
        self.changed = self.changed or bool(gone)
        return len(gone)

    def figures(self) -> Figures:
        """Worked out from every dead letter held (`changed` is cleared)."""
        self.changed = False
        waiting = {(stage, source): 0 for stage, source in topics.STAGE_GROUPS.items()}
        waiting.update({seen: 0 for seen in self._labels_seen})
        oldest: dict[Labels, float] = {}
        for dead_letter_id, held in self._held.items():
            if dead_letter_id in self.replayed:
                continue
            waiting[held.labels] += 1
            if held.dead_lettered_at is not None:
                oldest[held.labels] = min(oldest.get(held.labels, held.dead_lettered_at),
                                          held.dead_lettered_at)
        return Figures(waiting, oldest)


def _below(place: tuple[int, int], starts: Mapping[int, int]) -> bool:
    partition, offset = place
    return offset < starts.get(partition, 0)
