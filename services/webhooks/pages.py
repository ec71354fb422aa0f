"""Where a listing of callbacks goes on: each page says where the next starts, so that an
admin reads every dead letter, however many, those dead-lettered longest ago first.

A page ends at its last callback, by its last change then its id (two may have changed
at the same moment): the next page is those after it in that order. The place is the
last callback's moment and id, not its id alone, so that a page goes on where the last
one ended even when that callback was replayed or purged since.

A callback dead-lettered after a page was read is after that page's place, whenever its
worker took its moment: dead-letterings take their moments in the order they commit
(outbox_store.next_dead_letter_moment), so none commits before a moment already read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# A cursor: the last callback's last change, in microseconds since 1970 (UTC), then its
# id. Said in the schema (generated clients, fuzzers): any text of this shape is a place.
CURSOR_PATTERN = r"^[0-9]{1,17}/[!-~]{1,80}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Place:
    """Where a page ended: its last callback's last change and id."""

    changed_at: datetime
    delivery_id: str

    @property
    def cursor(self) -> str:
        """The place as a page says it, for the next page's `since`."""
        return f"{micros_of(self.changed_at)}/{self.delivery_id}"


def place_of(cursor: str) -> Place:
    """The place a cursor says; ValueError saying what a cursor is when it is not one."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("the `next` of the page before, as it was given (microseconds,"
                         " a slash, then a callback's id, e.g. 1764579600000000/msg_...)")
    micros, _, delivery_id = cursor.partition("/")
    return Place(moment_of(int(micros)), delivery_id)


def micros_of(moment: datetime) -> int:
    """A moment in microseconds since 1970 (UTC)."""
    return (moment - _EPOCH) // _MICROSECOND


def moment_of(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND
