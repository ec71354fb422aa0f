"""Topic names: one place, so no service spells a topic on its own."""

from __future__ import annotations

import re

INCOMING = "tickets.incoming"
SEGMENTED = "tickets.segmented"
EVENTS = "tickets.events"
DEAD_LETTERS = "tickets.dlq"
CUSTOMER_EVENTS = "customers.events"
# A configuration version put in force (segment rules, routing table): a nudge to read
# the store, so every instance converges on it.
CONFIG_CHANGES = "config.changes"

PIPELINE = (INCOMING, SEGMENTED, EVENTS, DEAD_LETTERS, CUSTOMER_EVENTS, CONFIG_CHANGES)
# How long each topic keeps its records (`retention.ms`, set when a service creates it):
# the personal data a ticket carries stays in Kafka until then, whatever the SQL store
# erases. One place: topic creation and the erasure answer read it.
RETENTION_DAYS = {
    INCOMING: 7,  # tickets as posted (text, customer id)
    SEGMENTED: 7,  # the same, segmented
    EVENTS: 30,  # lifecycle events: ids, departments, segments, times
    DEAD_LETTERS: 30,  # records no stage could process, kept for replay
    CUSTOMER_EVENTS: 7,  # customer ids and tier changes
    CONFIG_CHANGES: 7,  # nudges: a configuration version was put in force
}
DEPARTMENT_LANE_RETENTION_DAYS = 14  # dept.<department>.<lane>: routed tickets

DEPARTMENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def department_queue(department: str) -> str:
    """The Kafka topic a department reads its tickets from."""
    if not DEPARTMENT_NAME.match(department):
        raise ValueError(
            f"department name {department!r} is not valid: use lower-case letters, digits,"
            " '_' or '-', starting with a letter, at most 63 characters"
        )
    return f"dept.{department}"
