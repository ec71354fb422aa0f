"""Accepting a ticket from a support platform: its idempotency claim, then its publishing.

Answered `ACCEPTED` only once Kafka holds the ticket; `UNAVAILABLE` means it does not,
and never will (the intake's publisher is transactional). A request repeated under the
same `Idempotency-Key` gets the first answer again: the same ticket id and correlation id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import orjson

from services.core import db, envelope, events, kafka, tickets, topics
from services.router import intake_policy, ports, ticket_ids

logger = logging.getLogger(__name__)
SOURCE = events.INTAKE_SOURCE


class Verdict(Enum):
    ACCEPTED = "accepted"  # in Kafka now
    REPLAY = "replay"  # accepted before under this key: the first answer again
    IN_FLIGHT = "in_flight"  # conflict: the key's first request is still being accepted
    KEY_REUSED = "key_reused"  # conflict: the key was used for a different ticket
    UNAVAILABLE = "unavailable"  # Kafka did not acknowledge: not accepted, retry later
    TOO_LARGE = "too_large"  # written out, it leaves the stages no room


@dataclass(frozen=True)
class Acceptance:
    verdict: Verdict
    ticket_id: str = ""
    correlation_id: str = ""
    problem: str = ""  # TOO_LARGE: what is too large


def scoped_key(platform: str | None, idempotency_key: str) -> str:
    """Keys are the platform's own: two platforms may well pick the same one."""
    return hashlib.sha256(f"{platform}\x00{idempotency_key}".encode()).hexdigest()


def ticket_fingerprint(content: tickets.TicketContent) -> str:
    """What the platform said, in one form for what JSON says alike: whatever the order
    of its attributes (a JSON object's members have no order, and a retry may send them
    in another: its map iterated anew after a restart), and a number the same whether
    written 1 or 1.0 (a retry whose client serialises its numbers anew: one number in
    JSON, read as an int or a float). Either is the same ticket, not a key reused."""
    said = orjson.dumps(_same_numbers(content.model_dump(mode="json")),
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(said).hexdigest()


def _same_numbers(value: Any) -> Any:
    """`value` with each integral float an int (1.0 as 1, -0.0 as 0)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _same_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_same_numbers(item) for item in value]
    return value


def _earlier_fingerprints(content: tickets.TicketContent) -> Iterator[str]:
    """The fingerprint in the forms keys were claimed under before ticket_fingerprint:
    the attributes in the order they came, then sorted with 1.0 unlike 1; and of a
    language sent in lower case (the intake took `nl-be` as it came; it keeps `nl-BE`
    now). A retry of such a key, sent as before, is still the same request. Not needed
    once every such key is past RETENTION_IDEMPOTENCY_KEYS_DAYS."""
    sent = [content]
    if content.language is not None and content.language != content.language.lower():
        sent.append(content.model_copy(update={"language": content.language.lower()}))
    for said in sent:
        yield hashlib.sha256(said.model_dump_json().encode()).hexdigest()
        yield hashlib.sha256(orjson.dumps(said.model_dump(mode="json"),
                                          option=orjson.OPT_SORT_KEYS)).hexdigest()


async def accept_ticket(content: tickets.TicketContent, *, platform: str | None,
                        correlation_id: str | None, idempotency_key: str | None,
                        keys: ports.Keys, publisher: ports.Publisher,
                        in_flight_for: timedelta, now: datetime,
                        new_id: Callable[[datetime], str] = ticket_ids.issue) -> Acceptance:
    """Accept a ticket posted by `platform` (a key's claim left pending longer than
    `in_flight_for` was left by a request that died: this one publishes its ticket). Its
    id carries the moment it was issued, `now` (ticket_ids)."""
    ticket_id = new_id(now)
    # Written out before anything is claimed or shared: a ticket that cannot be carried
    # to its department is this caller's refusal alone.
    written = _written(content, ticket_id, now, correlation_id, platform)
    if isinstance(written, Acceptance):
        return written
    ticket, records = written
    key = None
    if idempotency_key is not None:
        fingerprint = ticket_fingerprint(content)
        key = scoped_key(platform, idempotency_key)
        claim = await keys.claim(key, fingerprint=fingerprint, ticket_id=ticket_id, now=now,
                                 correlation_id=correlation_id or ticket_id)
        if claim.fingerprint != fingerprint \
                and claim.fingerprint in _earlier_fingerprints(content):
            fingerprint = claim.fingerprint  # a key claimed under an earlier form
        claimed = intake_policy.ClaimedKey(claim.ticket_id, claim.fingerprint, claim.status,
                                           claim.created_at)
        verdict = intake_policy.judge_claim(claimed, holder=ticket_id,
                                            fingerprint=fingerprint, now=now,
                                            in_flight_for=in_flight_for)
        if verdict is intake_policy.Claim.MISMATCH:
            return Acceptance(Verdict.KEY_REUSED)
        if verdict is intake_policy.Claim.IN_FLIGHT:
            return Acceptance(Verdict.IN_FLIGHT)
        if verdict is intake_policy.Claim.REPLAY:
            return Acceptance(Verdict.REPLAY, claim.ticket_id,
                              claim.correlation_id or claim.ticket_id)
        if claim.ticket_id != ticket_id:  # a crashed request's, which we take over
            written = _written(content, claim.ticket_id, now, correlation_id, platform)
            if isinstance(written, Acceptance):
                return written
            ticket, records = written
    correlation = correlation_id or ticket.ticket_id
    try:
        await publisher.publish(records)
    except kafka.PublishFailed as exc:
        logger.warning("ticket not accepted: Kafka unavailable", extra={"error": str(exc)})
        if key is not None:
            await unpublished(keys, key, ticket_id=ticket.ticket_id)
        return Acceptance(Verdict.UNAVAILABLE)
    if key is not None:
        try:
            await keys.accepted(key, correlation_id=correlation)
        except db.STORE_ERRORS as error:
            if not db.is_temporary(error):
                raise
            # The ticket is in Kafka: say so. A retry with this key publishes it again
            # (the key stays pending), and the router drops that copy.
            logger.warning("ticket accepted; its Idempotency-Key stays pending (store"
                           " unavailable or in conflict)", extra={"ticket_id": ticket.ticket_id})
    logger.info("ticket accepted", extra={"ticket_id": ticket.ticket_id,
                                          "correlation_id": correlation})
    return Acceptance(Verdict.ACCEPTED, ticket.ticket_id, correlation)


async def unpublished(keys: ports.Keys, key: str, *, ticket_id: str) -> None:
    """Kafka did not take what a request published under its claim of `key` (a 503):
    the key is released for its retry, which takes it over at once and publishes again
    under the same id, the ticket's or the report's event's. Should the broker have
    committed after all (its answer to the commit lost, see transactional_publisher),
    the readers know that copy by its id: delivered twice under one id, never under two.
    Left pending if the store cannot say so now: a retry then waits out the claim."""
    try:
        await keys.unpublished(key)
    except db.STORE_ERRORS as error:
        if not db.is_temporary(error):
            raise
        logger.warning("not published; its Idempotency-Key stays pending (store"
                       " unavailable or in conflict)", extra={"ticket_id": ticket_id})


def _written(content: tickets.TicketContent, ticket_id: str, received_at: datetime,
             correlation_id: str | None, platform: str | None,
             ) -> tuple[tickets.Ticket, list[envelope.Record]] | Acceptance:
    """The ticket and its records, on `tickets.incoming` and its `received` event; or
    TOO_LARGE if the ticket's record would not leave the stages room for what they add."""
    ticket = tickets.received(content, ticket_id=ticket_id, received_at=received_at,
                              platform=platform)
    correlation = correlation_id or ticket_id
    received = envelope.Event(
        type=events.TicketEventType.RECEIVED, source=SOURCE, ticket_id=ticket.ticket_id,
        correlation_id=correlation, data=ticket.model_dump(mode="json"),
        time=ticket.received_at)
    try:
        record = envelope.encode(topics.INCOMING, ticket.customer_id, received,
                                 max_bytes=tickets.MAX_TICKET_RECORD_BYTES)
    except envelope.Unserialisable as exc:
        return Acceptance(Verdict.TOO_LARGE, problem=str(exc))
    lifecycle = events.TicketEvent(ticket_id=ticket_id, type=events.TicketEventType.RECEIVED,
                                   occurred_at=received_at, received_at=received_at,
                                   platform=platform)
    return ticket, [record, kafka.Output(topics.EVENTS, ticket_id, events.as_envelope(
        lifecycle, correlation, SOURCE)).encoded()]
