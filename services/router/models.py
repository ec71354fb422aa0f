"""Tables of the router: tickets as routed (state and trace) and intake idempotency keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from services.core import db, envelope, identifiers, tickets, topics
from services.core.db import Base
from services.router import intake_policy

_NO_CLOCKS = "service_clocks IS NULL"


# The polls' indexes (the load sample: backlog, oldest_open, first_responses_since; and
# due_for_escalation): they read the unanswered, lately answered or due tickets through
# these, not every routed ticket kept (v0015, v0017, v0020; bench/router_polls.py).
POLL_INDEXES = (
    Index("ix_routed_tickets_first_response", "first_response_at", "department",
          "first_response_department"),
    # The tickets without clocks (routed before v0010; the clock watch has the others)
    # and not escalated yet, by first response, then deadline: the check reads the
    # unanswered ones past their deadline, not the tickets escalated or abandoned.
    Index("ix_routed_tickets_escalation_due", "first_response_at",
          "first_response_deadline", sqlite_where=text(f"escalated IS 0 AND {_NO_CLOCKS}"),
          postgresql_where=text(f"escalated IS false AND {_NO_CLOCKS}")),
)


class RoutedTicketRow(Base):
    """A ticket's current state and its whole routing trace."""

    __tablename__ = "routed_tickets"
    __table_args__ = POLL_INDEXES

    ticket_id: Mapped[str] = mapped_column(String(identifiers.MAX_LENGTH), primary_key=True)
    department: Mapped[str] = mapped_column(String(topics.MAX_NAME))
    segment: Mapped[str] = mapped_column(String(topics.MAX_NAME))
    status: Mapped[str] = mapped_column(String(32))  # lifecycle.Status
    priority: Mapped[int | None] = mapped_column()
    first_response_deadline: Mapped[datetime | None] = mapped_column(db.UtcDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime())
    # The department that held the ticket when it had its first response, credited with it
    # (None: answered before v0020, or not yet; `department` stands for it then).
    first_response_department: Mapped[str | None] = mapped_column(String(topics.MAX_NAME))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    trace: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The routed ticket as dispatched, for escalation and transfers to re-dispatch.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(db.UtcDateTime(), index=True)
    # Whose ticket it is: erasing a customer finds their tickets by it.
    customer_id: Mapped[str | None] = mapped_column(String(identifiers.MAX_LENGTH),
                                                     index=True)
    # The support platform that posted it (told of what becomes of it; only it may
    # report on the customer's side of the ticket).
    platform: Mapped[str | None] = mapped_column(String(tickets.MAX_PLATFORM), index=True)
    # Its service-level clocks (service_clocks.to_json), and when they next call for a
    # warning or an escalation (None: none will while they stand as they are).
    service_clocks: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    next_clock_check: Mapped[datetime | None] = mapped_column(db.UtcDateTime(),
                                                              index=True)
    # The id of the segmented event that routed it: another copy of the ticket has another.
    routed_event_id: Mapped[str | None] = mapped_column(String(envelope.MAX_EVENT_ID))
    # The correlation id the ticket came with: its handovers publish under it too.
    correlation_id: Mapped[str | None] = mapped_column(String(envelope.MAX_CORRELATION_ID))
    # Until when a hand-over (a transfer, an escalation) being published holds the ticket
    # (RoutedTickets.claim_handover; v0018).
    handover_until: Mapped[datetime | None] = mapped_column(db.UtcDateTime())


class IntakeKeyRow(Base):
    """An `Idempotency-Key` and the ticket it created, or the report it published on a
    ticket."""

    __tablename__ = "intake_keys"

    idempotency_key: Mapped[str] = mapped_column(String(intake_policy.KEY_MAX_LENGTH),
                                                 primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(identifiers.MAX_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(64))
    # pending until Kafka acknowledged the ticket, then accepted; unpublished if Kafka did
    # not take it (intake_policy: the states of a claim).
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime(), index=True)
    # The correlation id its ticket was published under (None: claimed before 0013).
    correlation_id: Mapped[str | None] = mapped_column(String(envelope.MAX_CORRELATION_ID))
    # A report's key (services/router/service/reports.py): the id of the event it
    # published, which a retry answers. None: a ticket's key.
    event_id: Mapped[str | None] = mapped_column(String(envelope.MAX_EVENT_ID))
    # The date a report's key's report was judged to stand at, which a retry taking over
    # from a request that died publishes it at (None: a ticket's key, or claimed before
    # 0021).
    occurred_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime())


class ErasedCustomerRow(Base):
    """A customer erased, and when (the latest erasure): a ticket of theirs received
    before it and still in Kafka then is routed but not kept (services/router/erasures.py;
    v0022). Purged past retention.ERASURES_REMEMBERED."""

    __tablename__ = "erased_customers"

    customer_id: Mapped[str] = mapped_column(String(identifiers.MAX_LENGTH), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(db.UtcDateTime(), index=True)


class HeldTicketRow(Base):
    """A ticket a stage dead-lettered and not routed since: the dead letter that holds it
    (its id as dead_letter_reading gives it), the stage, when, and the fault's class; the
    platform that posted it, where its record tells (services/router/held_tickets.py;
    v0030). No personal data, no ticket text."""

    __tablename__ = "held_tickets"

    ticket_id: Mapped[str] = mapped_column(String(identifiers.MAX_LENGTH), primary_key=True)
    dead_letter_id: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(64))
    error_class: Mapped[str] = mapped_column(String(128))
    held_at: Mapped[datetime] = mapped_column(db.UtcDateTime(), index=True)
    platform: Mapped[str | None] = mapped_column(String(tickets.MAX_PLATFORM))
