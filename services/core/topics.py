"""What the services agree on about Kafka: topic, lane, consumer-group and dead-letter
header names. One place, so no service spells one on its own."""

from __future__ import annotations

import functools
from typing import Literal

from services.core import text_forms

INCOMING = "tickets.incoming"
SEGMENTED = "tickets.segmented"
EVENTS = "tickets.events"
DEAD_LETTERS = "tickets.dlq"
# Compacted: a marker per dead letter replayed (its id), so none is replayed twice.
DEAD_LETTERS_REPLAYED = f"{DEAD_LETTERS}.replayed"
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
# Topics kept by key rather than by age (`cleanup.policy=compact`, set when made): the
# latest replay marker of every dead letter, whatever its age.
COMPACTED = frozenset({DEAD_LETTERS_REPLAYED})

# A department's or a segment's name: a part of Kafka topic and group names, and a key of
# the stores' columns.
MAX_NAME = 63
# A name in words, for the errors that refuse one (segments' names too).
NAME_RULE = ("lower-case letters, digits, '_' or '-', starting with a letter, at most"
             f" {MAX_NAME} characters")
DEPARTMENT_NAME = text_forms.Form(f"^[a-z][a-z0-9_-]{{0,{MAX_NAME - 1}}}$",
                                  f"a name of {NAME_RULE}")
DEPARTMENT_QUEUE_PREFIX = "dept."

# The lanes of a department queue, one topic each: `dept.<d>.high`, `dept.<d>` (normal,
# the topic departments always read) and `dept.<d>.low`.
Lane = Literal["high", "normal", "low"]
LANES: tuple[Lane, ...] = ("high", "normal", "low")  # highest first

# Consumer groups of the stages, and the topic each consumes.
SEGMENTER_GROUP = "segmenter"
ROUTER_GROUP = "router"
ROUTER_TRACKER_GROUP = "router-tracker"
# The router's reader of the dead letters that hold tickets (services/router/held_follower.py):
# no stage (its records are never dead-lettered or replayed), so not in STAGE_GROUPS.
ROUTER_HELD_GROUP = "router-held"
ROUTER_WEBHOOKS_GROUP = "router-webhooks"  # the webhook outbox, in the router
METRICS_GROUP = "metrics"
STAGE_GROUPS = {SEGMENTER_GROUP: INCOMING, ROUTER_GROUP: SEGMENTED,
                ROUTER_TRACKER_GROUP: EVENTS, ROUTER_WEBHOOKS_GROUP: EVENTS,
                METRICS_GROUP: EVENTS}
# The groups whose consumer lag the metrics service measures (besides the departments'):
# the stages', and the router's reader of the tickets held as dead letters, which reads
# the dead letters but is no stage (it dead-letters nothing, so none names it).
LAG_GROUPS = {**STAGE_GROUPS, ROUTER_HELD_GROUP: DEAD_LETTERS}
DEPARTMENT_GROUP_PREFIX = "department."
# The topics whose records the stages dead-letter (STAGE_GROUPS'): the only ones a
# replay writes a dead letter back to, whatever source it names (any writer of the
# dead-letter topic can name one: a department lane, an announcement topic, another
# application's topic, one the broker refuses, which would fail the whole replay).
STAGE_INPUTS = frozenset(STAGE_GROUPS.values())

# Headers a stage adds to a record it dead-letters (all start with the prefix, so a
# replay can strip them), and the one a replay adds.
DEAD_LETTER_HEADER_PREFIX = "dlq_"
DLQ_SOURCE_TOPIC, DLQ_SOURCE_PARTITION, DLQ_SOURCE_OFFSET = (
    "dlq_source_topic", "dlq_source_partition", "dlq_source_offset")  # where it was read
DLQ_ERROR, DLQ_ERROR_CLASS, DLQ_STAGE = "dlq_error", "dlq_error_class", "dlq_stage"  # why
DLQ_VALUE_DROPPED = "dlq_value_dropped"  # too large to keep whole: read it at its source
# Too large to keep whole, the platform its value named (dead_letter_reading.platform).
DLQ_PLATFORM = "dlq_platform"
DLQ_REPLAYED_FROM = "dlq_replayed_from"  # a replay's: the dead letter it came from


def department_queue(department: str) -> str:
    """The Kafka topic a department reads its tickets from."""
    if not DEPARTMENT_NAME.fullmatch(department):
        raise ValueError(
            f"department name {department!r} is not valid: use {NAME_RULE}"
        )
    return f"{DEPARTMENT_QUEUE_PREFIX}{department}"


@functools.lru_cache(maxsize=1024)
def lane_topic(department: str, lane: Lane) -> str:
    """The topic of a department's lane. Remembered (a name refused is not): the router
    asks it twice a ticket, of its table's few departments (README "Measured")."""
    queue = department_queue(department)
    return queue if lane == "normal" else f"{queue}.{lane}"


def lane_topics(department: str) -> list[str]:
    """The department's lane topics, highest lane first."""
    return [lane_topic(department, lane) for lane in LANES]


def department_of(topic: str) -> str | None:
    """The department whose queue a topic is: `dept.<d>` and its lanes `dept.<d>.<lane>`."""
    if not topic.startswith(DEPARTMENT_QUEUE_PREFIX):
        return None
    department = topic.removeprefix(DEPARTMENT_QUEUE_PREFIX).split(".")[0]
    return department if DEPARTMENT_NAME.fullmatch(department) else None


def department_group(department: str) -> str:
    """The consumer group a department's agents read their queue with."""
    return f"{DEPARTMENT_GROUP_PREFIX}{department}"
