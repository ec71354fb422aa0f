"""Consumer lag: which groups read which topics, and how far behind they are.
Pure decision code.

A group that never committed on a partition has read nothing of it: its lag counts from
the partition's first retained offset. Offsets also count transaction markers, so a
caught-up stage whose input is written in transactions shows up to one record of lag
per partition (the marker after the last batch); alerts look at lag that grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.core import topics


def watched(topic_names: Iterable[str]) -> list[tuple[str, str]]:
    """(group, topic) pairs to measure: the stages' groups and the held tickets' reader's
    (topics.LAG_GROUPS), and each department's group (`department.<d>`, as the
    department tool reads) on each lane of its queue."""
    names = set(topic_names)
    pairs = [(group, topic) for group, topic in topics.LAG_GROUPS.items() if topic in names]
    for topic in sorted(names):
        department = topics.department_of(topic)
        if department is not None:
            pairs.append((topics.department_group(department), topic))
    return pairs


def departments(topic_names: Iterable[str]) -> set[str]:
    return {d for d in map(topics.department_of, topic_names) if d is not None}


@dataclass(frozen=True)
class GroupPosition:
    lag: int
    committed: int  # sum over partitions; where nothing is committed, the first offset


def position(end: Mapping[int, int], beginning: Mapping[int, int],
             committed: Mapping[int, int]) -> GroupPosition:
    """A group's lag on one topic, from offsets per partition (committed < 0: none)."""
    lag = total = 0
    for partition, end_offset in end.items():
        first = beginning.get(partition, 0)
        offset = committed.get(partition, -1)
        if offset < first:  # nothing committed, or committed before retention removed it
            offset = first
        lag += max(0, end_offset - offset)
        total += offset
    return GroupPosition(lag=lag, committed=total)
