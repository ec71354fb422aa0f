"""The dead letters waiting (routing_dead_letters_waiting): held with no replay marker,
by stage and source topic from fixed sets; and the replay markers' rule, which the
router's replay reads the same way (dead_letter_reading.Replayed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.core import dead_letter_reading, topics
from services.metrics import waiting_dead_letters
from services.metrics.waiting_dead_letters import OTHER, WaitingDeadLetters

NONE_WAITING = {(stage, source): 0 for stage, source in topics.STAGE_GROUPS.items()}


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"cust-1"
    value: bytes | None = b"{not json"


@dataclass(frozen=True)
class Marker:
    key: bytes | None
    value: bytes | None = b'{"replayed_to": "tickets.incoming"}'


def set_aside(stage: str, source: str) -> list[tuple[str, bytes]]:
    return [("ce_ticketid", b"t-1"), (topics.DLQ_SOURCE_TOPIC, source.encode()),
            (topics.DLQ_ERROR, b"value is not JSON"), (topics.DLQ_STAGE, stage.encode())]


SEGMENTER = set_aside("segmenter", topics.INCOMING)
TRACKER = set_aside("router-tracker", topics.EVENTS)


class TestWaiting:
    def test_none_held_is_each_stage_at_zero(self) -> None:
        figures = WaitingDeadLetters().figures()
        assert figures.waiting == NONE_WAITING
        assert figures.oldest == {}
        assert ("router", topics.SEGMENTED) in figures.waiting

    def test_changed_says_whether_a_read_brought_something_since_the_last_figures(
            self) -> None:
        """What the readers go by to work the figures out again (each a pass over every
        dead letter held), not after every empty poll."""
        waiting = WaitingDeadLetters()
        assert waiting.changed  # the first figures are shown
        waiting.figures()
        assert not waiting.changed
        waiting.held(DeadLetter(0, 0, SEGMENTER))
        assert waiting.changed
        waiting.figures()
        waiting.marked(Marker(b"0:0"))
        assert waiting.changed

    def test_those_the_retention_deleted_are_no_longer_held_nor_wait_labels_at_zero(
            self) -> None:
        waiting = WaitingDeadLetters()
        for offset in range(3):
            waiting.held(DeadLetter(0, offset, SEGMENTER))
        waiting.held(DeadLetter(1, 0, TRACKER))
        waiting.figures()
        assert waiting.held_count == 4
        assert waiting.gone_before({0: 2}) == 2  # partition 0 starts at offset 2 now
        assert waiting.held_count == 2  # routing_dead_letters: one rule with the waiting
        assert waiting.changed
        assert waiting.figures().waiting == {
            **NONE_WAITING, ("segmenter", topics.INCOMING): 1,
            ("router-tracker", topics.EVENTS): 1}
        assert waiting.gone_before({0: 3, 1: 1}) == 2
        assert waiting.figures() == waiting_dead_letters.Figures(NONE_WAITING, {})
        assert waiting.held_count == 0
        assert waiting.gone_before({0: 3, 1: 1}) == 0

    def test_dead_letters_without_a_marker_wait_by_stage_and_source(self) -> None:
        waiting = WaitingDeadLetters()
        for offset in range(3):
            waiting.held(DeadLetter(0, offset, SEGMENTER))
        waiting.held(DeadLetter(1, 0, TRACKER))
        assert waiting.figures().waiting == {
            **NONE_WAITING, ("segmenter", topics.INCOMING): 3,
            ("router-tracker", topics.EVENTS): 1}

    def test_a_replayed_one_no_longer_waits_whichever_is_read_first(self) -> None:
        marker_first, marker_after = WaitingDeadLetters(), WaitingDeadLetters()
        marker_first.marked(Marker(b"0:1"))
        for waiting in (marker_first, marker_after):
            waiting.held(DeadLetter(0, 0, SEGMENTER))
            waiting.held(DeadLetter(0, 1, SEGMENTER))
        marker_after.marked(Marker(b"0:1"))
        for waiting in (marker_first, marker_after):
            assert waiting.figures().waiting[("segmenter", topics.INCOMING)] == 1

    def test_a_marker_on_another_partition_replays_nothing_here(self) -> None:
        waiting = WaitingDeadLetters()
        waiting.held(DeadLetter(0, 1, SEGMENTER))
        waiting.marked(Marker(b"1:1"))
        assert waiting.figures().waiting[("segmenter", topics.INCOMING)] == 1

    def test_the_same_dead_letter_read_twice_waits_once(self) -> None:
        waiting = WaitingDeadLetters()
        waiting.held(DeadLetter(0, 1, SEGMENTER))
        waiting.held(DeadLetter(0, 1, SEGMENTER))
        assert waiting.figures().waiting[("segmenter", topics.INCOMING)] == 1

    def test_the_oldest_waiting_is_when_the_oldest_not_replayed_was_set_aside(self) -> None:
        waiting = WaitingDeadLetters()
        waiting.held(DeadLetter(0, 0, SEGMENTER, timestamp=1_000_000))
        waiting.held(DeadLetter(0, 1, SEGMENTER, timestamp=2_000_000))
        waiting.held(DeadLetter(0, 2, SEGMENTER, timestamp=3_000_000))
        assert waiting.figures().oldest == {("segmenter", topics.INCOMING): 1000.0}
        waiting.marked(Marker(b"0:0"))
        assert waiting.figures().oldest == {("segmenter", topics.INCOMING): 2000.0}
        waiting.marked(Marker(b"0:1"))
        waiting.marked(Marker(b"0:2"))
        assert waiting.figures().oldest == {}

    def test_labels_whose_dead_letters_were_all_replayed_show_zero(self) -> None:
        waiting = WaitingDeadLetters()
        waiting.held(DeadLetter(0, 0, set_aside("router", topics.INCOMING)))
        waiting.marked(Marker(b"0:0"))
        assert waiting.figures().waiting == {**NONE_WAITING, ("router", topics.INCOMING): 0}


class TestLabels:
    """From fixed sets only: nothing a writer of tickets.dlq puts in a header becomes a
    label of its own, a ticket's id or a customer's data least of all."""

    def test_a_stage_and_its_input_are_their_own_labels(self) -> None:
        for stage, source in topics.STAGE_GROUPS.items():
            assert waiting_dead_letters.labels(set_aside(stage, source)) == (stage, source)

    def test_anything_else_is_other(self) -> None:
        assert waiting_dead_letters.labels(set_aside("cust-4711", "dept.sales")) == (
            OTHER, OTHER)
        assert waiting_dead_letters.labels(set_aside("router", "orders.jane.doe")) == (
            "router", OTHER)
        assert waiting_dead_letters.labels([]) == (OTHER, OTHER)

    def test_the_last_header_of_a_name_wins(self) -> None:
        headers = [*set_aside("cust-4711", "x"), *SEGMENTER]
        assert waiting_dead_letters.labels(headers) == ("segmenter", topics.INCOMING)

    def test_one_the_client_cannot_read_waits_as_other_with_no_time(self) -> None:
        waiting = WaitingDeadLetters()
        waiting.held(DeadLetter(0, 5, headers=(), timestamp=-1))  # an UnreadableRecord's
        figures = waiting.figures()
        assert figures.waiting[(OTHER, OTHER)] == 1
        assert figures.oldest == {}


class TestReplayMarkers:
    """The rule the router's replay and the waiting count share."""

    def test_an_ids_latest_marker_wins_and_a_tombstone_withdraws_it(self) -> None:
        replayed = dead_letter_reading.Replayed()
        replayed.read(Marker(b"0:7"))
        assert "0:7" in replayed
        replayed.read(Marker(b"0:7", value=None))
        assert "0:7" not in replayed
        replayed.read(Marker(b"0:7"))
        assert "0:7" in replayed

    def test_a_marker_with_no_id_for_a_key_marks_nothing(self) -> None:
        replayed = dead_letter_reading.Replayed()
        for key in (None, b"", b"\xff\xfe", b"0-7", b"cust-1"):
            replayed.read(Marker(key))
        assert "" not in replayed
        assert "0-7" not in replayed
        assert "cust-1" not in replayed

    def test_a_marker_is_keyed_by_the_dead_letters_id(self) -> None:
        replayed = dead_letter_reading.Replayed()
        replayed.read(Marker(dead_letter_reading.dead_letter_id(2, 9).encode()))
        assert "2:9" in replayed
