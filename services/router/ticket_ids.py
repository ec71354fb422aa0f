"""A ticket's id as the intake issues it: a UUID of version 7 (RFC 9562), whose first
48 bits are the millisecond it was issued, then 12 bits of a mark (a hash of the time
and the 62 random bits that follow) in the place RFC 9562 leaves to the issuer (rand_a).

So the router tells an id the intake issued, and when, from the id alone: a platform may
ask about its ticket between the 202 and its routing, and the router answers "not
routed yet" without the intake writing a row per ticket. The mark tells the intake's ids
from other UUIDs of version 7 (a platform's own ticket ids, sent by mistake), all but
one in 4,096. It is no secret and proves nothing: an id minted in this form by anyone
is answered as one the intake issued then. Ids issued before (UUID version 4), and any
other id, carry no time: `issued_at` is None, and they go everywhere as before. Pure.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_RANDOM_BITS = 62  # rand_b: after the version (4 bits), the mark and the variant (2)
_MARK_BITS = 12
_VERSION, _VARIANT = 0x7, 0b10
_MARK_KEY = b"routing-ticket-id"  # a domain tag, not a secret


def issue(now: datetime) -> str:
    """A new ticket id, issued at `now` (to the millisecond), in the canonical form (lower
    case, hyphens)."""
    millisecond = (now - _EPOCH) // _MILLISECOND
    random = secrets.randbits(_RANDOM_BITS)
    number = (millisecond << 80 | _VERSION << 76 | _mark(millisecond, random) << 64
              | _VARIANT << 62 | random)
    digits = f"{number:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def issued_at(ticket_id: str) -> datetime | None:
    """When the intake issued `ticket_id`, if it is an id of the intake's (`issue`: in
    its canonical form, version 7, marked); else None."""
    try:
        parsed = uuid.UUID(ticket_id)
    except ValueError:
        return None
    if parsed.version != _VERSION or str(parsed) != ticket_id:
        return None  # another UUID, or ours written otherwise: not a ticket's id as given
    number = parsed.int
    millisecond = number >> 80
    random = number & ((1 << _RANDOM_BITS) - 1)
    if number >> 64 & ((1 << _MARK_BITS) - 1) != _mark(millisecond, random):
        return None
    try:
        return _EPOCH + millisecond * _MILLISECOND
    except OverflowError:  # past the year 9999: marked, but no moment a store holds
        return None


def _mark(millisecond: int, random: int) -> int:
    said = millisecond.to_bytes(6, "big") + random.to_bytes(8, "big")
    digest = hashlib.blake2b(said, digest_size=2, key=_MARK_KEY).digest()
    return int.from_bytes(digest, "big") >> (16 - _MARK_BITS)
