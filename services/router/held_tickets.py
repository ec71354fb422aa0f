"""Tickets held as dead letters: which dead letters hold a ticket, and what is told of it.
A ticket accepted (202) that a stage dead-lettered is not routed until an operator
replays it; an admin and the platform that posted it are told so (409 `held`), not that
no such ticket exists; a department, which has no such ticket, is not (may_be_told). Pure:
no Kafka client, no store here (`held_store` keeps them, `held_follower` reads the dead
letters).

A dead letter holds a ticket when it is a record of a stage's input that is a ticket
(`tickets.incoming`, the segmenter's; `tickets.segmented`, the router's) and names its
ticket id (the `ce_ticketid` header). What is kept of it: ids, the stage, when, the
fault's class and the platform that posted it; never the ticket's text or its customer.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime

from services.core import access, dead_letter_reading, identifiers, topics

# The stage that reads each topic whose records are tickets (named by a dead letter
# without the stage's header).
TICKET_STAGES = {topics.INCOMING: topics.SEGMENTER_GROUP, topics.SEGMENTED: topics.ROUTER_GROUP}
HELD = "held"
MAX_ERROR_CLASS = 128
MAX_STAGE = 64


@dataclass(frozen=True)
class Held:
    """A ticket held as a dead letter."""

    ticket_id: str
    dead_letter_id: str
    stage: str
    error_class: str
    held_at: datetime
    platform: str | None = None


def held_of(record: dead_letter_reading.Record, now: datetime, *,
            replayed: Container[str]) -> Held | None:
    """The ticket a dead letter holds; None if it holds none (a report, a record of
    another topic), if it was replayed (its id in `replayed`, the markers read:
    dead_letter_reading.Replayed; the replay routes its ticket, or a stage dead-letters
    it again, in a dead letter that holds it), or none the store could keep: a ticket id
    not of the API's ids (identifiers.ID, as `GET /v1/tickets/{id}` takes them). Its
    platform is kept where it is a credential's subject (dead_letter_reading.platform:
    as its value says, or the header kept for it where the value was too large to
    keep), its stage and fault's class where printable; when, clamped to [the
    epoch, `now`] (a timestamp past year 9999 is no date). Never raises: whatever a dead
    letter holds, the reader goes on."""
    dead_letter_id = dead_letter_reading.dead_letter_id(record.partition, record.offset)
    if dead_letter_id in replayed:
        return None
    headers = dead_letter_reading.header_values(record.headers)
    source = headers.get(topics.DLQ_SOURCE_TOPIC)
    ticket_id = headers.get("ce_ticketid", "")
    if source not in TICKET_STAGES or len(ticket_id) > identifiers.MAX_LENGTH \
            or not identifiers.ID.fullmatch(ticket_id):
        return None
    stage = headers.get(topics.DLQ_STAGE, "")[:MAX_STAGE]
    error_class = headers.get(topics.DLQ_ERROR_CLASS, "")[:MAX_ERROR_CLASS]
    return Held(ticket_id=ticket_id, dead_letter_id=dead_letter_id,
                stage=stage if stage and stage.isprintable() else TICKET_STAGES[source],
                error_class=error_class if error_class.isprintable() else "",
                held_at=_when(record.timestamp, now),
                platform=dead_letter_reading.platform(headers, record.value))


def _when(timestamp: int, now: datetime) -> datetime:
    """A record's timestamp (milliseconds since the epoch) as a date, within [the epoch,
    `now`]: a producer sets it, to anything."""
    now_ms = int(now.timestamp() * 1000)
    return datetime.fromtimestamp(min(max(timestamp, 0), now_ms) / 1000, UTC)


def may_be_told(held: Held, principal: access.Principal) -> bool:
    """Whether `principal` is told that the ticket is held: an admin (an operator, who
    replays it) and the platform that posted it (which has its id from the 202) are. A
    department is not: the ticket is in none, and none ever had it (a ticket routed is
    held no longer), so it is no department's business; nor is another platform. Either
    is answered as on an id of no ticket, so that neither learns which ids are
    tickets."""
    if principal.role is access.Role.ADMIN:
        return True
    return principal.role is access.Role.PLATFORM and held.platform is not None \
        and held.platform == principal.subject


def told(held: Held, *, operator: bool) -> str:
    """What the 409 `held` says of it: by which stage and when, and that an operator
    replays it; to an operator (an admin), also the dead letter and the fault's class."""
    said = f"ticket {held.ticket_id!r} was dead-lettered by the {held.stage} stage at" \
           f" {held.held_at.isoformat()}"
    if operator:
        said += f" (dead letter {held.dead_letter_id}, {held.error_class or 'no error class'})"
    return said + ("; it is held there until an operator replays it (`routing dead-letters"
                   " replay`): asking again will not route it")
