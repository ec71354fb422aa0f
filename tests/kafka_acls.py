"""The least-privilege ACLs of each service and department user (the table in
docs/kafka-security.md), and creating them on a test broker as its admin.

aiokafka's admin client has no `create_acls`, so the CreateAcls request is sent through
the admin client as it is (in the test's process, rather than a JVM per `kafka-acls` run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

from services.core import kafka, topics
from services.core.settings import Settings
from services.router import dead_letters, priority

Resource = Literal["topic", "group", "transactional_id", "cluster"]
Operation = Literal["read", "write", "create", "describe", "idempotent_write"]

# The Kafka protocol's codes (org.apache.kafka.common.resource / acl).
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
OPERATIONS = {"read": 3, "write": 4, "create": 5, "describe": 8, "idempotent_write": 12}
LITERAL, PREFIXED, ALLOW = 3, 4, 3


@dataclass(frozen=True)
class Allow:
    """One operation on one resource (by name or, `prefixed`, by name prefix)."""

    resource: Resource
    name: str
    operation: Operation
    prefixed: bool = False


def _all(resource: Resource, operation: Operation, *names: str) -> list[Allow]:
    return [Allow(resource, name, operation) for name in names]


def router() -> list[Allow]:
    return [
        # The routing stage and the tracker; reading tickets.dlq(.replayed): replays, and
        # the tickets held as dead letters (group router-held).
        # Configuration changes: announced by whichever instance puts one in force,
        # followed by every instance (no group).
        *_all("topic", "read", topics.CONFIG_CHANGES),
        Allow("topic", topics.CONFIG_CHANGES, "write"),
        *_all("topic", "read", topics.SEGMENTED, topics.EVENTS, topics.DEAD_LETTERS,
              topics.DEAD_LETTERS_REPLAYED),
        *_all("group", "read", topics.ROUTER_GROUP, topics.ROUTER_TRACKER_GROUP,
              topics.ROUTER_WEBHOOKS_GROUP, topics.ROUTER_HELD_GROUP),
        # The intake, routing, dead letters; replays go back to the source topics.
        *_all("topic", "write", topics.INCOMING, topics.SEGMENTED, topics.EVENTS,
              topics.DEAD_LETTERS, topics.DEAD_LETTERS_REPLAYED),
        # every department's lanes
        Allow("topic", topics.DEPARTMENT_QUEUE_PREFIX, "write", prefixed=True),
        # The stage's ids start with its group; the intake's with `intake-`.
        Allow("transactional_id", "router-", "write", prefixed=True),
        Allow("transactional_id", "intake-", "write", prefixed=True),
        Allow("transactional_id", dead_letters.TRANSACTIONAL_ID, "write"),
        Allow("topic", topics.CUSTOMER_EVENTS, "describe"),  # ensure_topics sees it
        # queue lag: overflow
        Allow("group", topics.DEPARTMENT_GROUP_PREFIX, "describe", prefixed=True),
    ]


def segmenter() -> list[Allow]:
    return [
        *_all("topic", "read", topics.INCOMING, topics.CUSTOMER_EVENTS, topics.CONFIG_CHANGES),
        Allow("topic", topics.CONFIG_CHANGES, "write"),
        Allow("group", topics.SEGMENTER_GROUP, "read"),
        *_all("topic", "write", topics.SEGMENTED, topics.EVENTS, topics.DEAD_LETTERS,
              topics.CUSTOMER_EVENTS),
        Allow("transactional_id", "segmenter-", "write", prefixed=True),
    ]


def metrics() -> list[Allow]:
    return [
        # The dead letters and the replay markers: those held, and those waiting.
        *_all("topic", "read", topics.EVENTS, topics.DEAD_LETTERS,
              topics.DEAD_LETTERS_REPLAYED),
        Allow("group", topics.METRICS_GROUP, "read"),
        Allow("topic", topics.DEAD_LETTERS, "write"),  # records it cannot process
        # Consumer lag of every stage and department queue.
        *_all("topic", "describe", topics.INCOMING, topics.SEGMENTED, topics.CUSTOMER_EVENTS,
              topics.CONFIG_CHANGES),
        Allow("topic", topics.DEPARTMENT_QUEUE_PREFIX, "describe", prefixed=True),
        *_all("group", "describe", topics.SEGMENTER_GROUP, topics.ROUTER_GROUP,
              topics.ROUTER_TRACKER_GROUP, topics.ROUTER_WEBHOOKS_GROUP,
              topics.ROUTER_HELD_GROUP),
        Allow("group", topics.DEPARTMENT_GROUP_PREFIX, "describe", prefixed=True),
    ]


def department(name: str) -> list[Allow]:
    """Its own lanes only, by full name: a prefix `dept.sales` would match `dept.sales_eu`.
    No write anywhere: departments report over HTTP, where the router checks that the
    ticket is theirs and the time is plausible; a write on `tickets.events` would let
    one forge reports for another department's tickets."""
    return [
        *_all("topic", "read", *priority.lane_topics(name)),
        Allow("group", topics.department_group(name), "read"),
    ]


async def revoke(admin_settings: Settings, user: str, allow: Allow) -> None:
    """Take back what `create` allowed the user, as an operator would (`kafka-acls
    --remove`)."""
    client = kafka.admin(admin_settings, client_id="acl-admin")
    await client.start()
    try:
        response = await client._send_request(DeleteAclsRequest(
            RESOURCE_TYPES[allow.resource], allow.name,
            PREFIXED if allow.prefixed else LITERAL, f"User:{user}", "*",
            OPERATIONS[allow.operation], ALLOW))
        [(code, message, matching)] = response.filter_responses
        if code:
            raise for_code(code)(f"{user}: {allow}: {message}")
        if not matching:
            raise LookupError(f"{user} was not allowed {allow}")
    finally:
        await client.close()


async def create(admin_settings: Settings, grants: Mapping[str, Iterable[Allow]]) -> None:
    """Allow each user (`User:<name>`) what is listed for it, from any host."""
    client = kafka.admin(admin_settings, client_id="acl-admin")
    await client.start()
    try:
        for user, allowed in grants.items():
            for allow in allowed:
                response = await client._send_request(CreateAclsRequest(
                    RESOURCE_TYPES[allow.resource], allow.name,
                    PREFIXED if allow.prefixed else LITERAL, f"User:{user}", "*",
                    OPERATIONS[allow.operation], ALLOW))
                for code, message in response.creation_responses:
                    if code:
                        raise for_code(code)(f"{user}: {allow}: {message}")
    finally:
        await client.close()
