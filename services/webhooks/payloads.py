"""What a callback's body holds: one definition, which builds each body sent and is the
schema the router's OpenAPI document gives receivers (`webhooks`).

The body is the lifecycle event (`events.TicketEvent`: ids, department, segment,
priority, deadlines, times, never the ticket's text or the customer's attributes) and
the ticket's correlation id, wrapped as the Standard Webhooks spec recommends:
`{"type", "timestamp", "data"}`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from services.core import data_paths, envelope, events, tickets
from services.webhooks import catalog


class CallbackData(events.TicketEvent):
    """The lifecycle event as its platform is told it: without the platform (the receiver
    itself) and the event's type (the callback's `type`), with the ticket's correlation
    id."""

    model_config = ConfigDict(title="CallbackData")

    type: SkipJsonSchema[events.TicketEventType] = Field(exclude=True)
    platform: SkipJsonSchema[tickets.Platform | None] = Field(default=None, exclude=True)
    # Inside the signed body, kept with it in the outbox: every attempt and replay of a
    # callback carries the one its event was published with.
    correlation_id: str = Field(
        max_length=envelope.MAX_CORRELATION_ID,
        description="The ticket's correlation id: the X-Correlation-ID its platform posted"
                    " it with (default: the ticket's id), carried by every record and"
                    " callback of the ticket")


# Said in the schema: the names a callback's type is one of.
_TYPES: JsonDict = {"enum": [*sorted(catalog.WEBHOOK_EVENTS.values())]}


class Callback(BaseModel):
    """A callback's body."""

    type: str = Field(description="The webhook event type",
                      json_schema_extra=_TYPES)
    timestamp: AwareDatetime = Field(description="When the event happened (data.occurred_at)")
    data: CallbackData


# A callback refused (building its body in the outbox writer) names its fields, as a
# pipeline's record does (`correlation_id`, not an unknown name).
data_paths.know(Callback, CallbackData)


def callback_of(lifecycle: events.TicketEvent, *, correlation_id: str) -> Callback:
    return Callback(type=catalog.WEBHOOK_EVENTS[lifecycle.type],
                    timestamp=lifecycle.occurred_at,
                    data=CallbackData.model_validate(
                        {**dict(lifecycle), "correlation_id": correlation_id}))


def body_of(lifecycle: events.TicketEvent, *, correlation_id: str) -> str:
    """The JSON body sent (signed exactly as stored)."""
    payload: dict[str, Any] = callback_of(lifecycle, correlation_id=correlation_id
                                          ).model_dump(mode="json", exclude_none=True)
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)
