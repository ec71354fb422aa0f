"""routing_dead_letters_read_total's rule (services/metrics/dead_letters_read.py): the dead
letters read past those the topic held at start-up, each once by its place."""

from __future__ import annotations

from services.metrics.dead_letters_read import DeadLettersRead


def counted(read: DeadLettersRead, places: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [place for place in places if read.read(*place)]


def test_those_held_at_start_up_are_not_counted_those_after_are() -> None:
    read = DeadLettersRead()
    assert counted(read, [(0, 0), (0, 1)]) == []  # read before the ends were asked
    read.start_at({0: 3, 1: 0})
    assert counted(read, [(0, 2), (0, 3), (1, 0), (0, 4)]) == [(0, 3), (1, 0), (0, 4)]


def test_one_read_again_after_a_seek_is_not_counted_again() -> None:
    read = DeadLettersRead()
    read.start_at({0: 0})
    assert counted(read, [(0, 0), (0, 1)]) == [(0, 0), (0, 1)]
    assert counted(read, [(0, 0), (0, 1), (0, 2)]) == [(0, 2)]


def test_a_partition_not_there_at_start_up_is_new_from_its_first_offset() -> None:
    read = DeadLettersRead()
    read.start_at({0: 5})
    assert counted(read, [(2, 0)]) == [(2, 0)]


def test_the_ends_asked_again_change_nothing() -> None:
    read = DeadLettersRead()
    read.start_at({0: 1})
    read.start_at({0: 9})
    assert counted(read, [(0, 1)]) == [(0, 1)]
