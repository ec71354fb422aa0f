"""The callbacks the router sends, as its OpenAPI document gives them to receivers
(`webhooks`, OpenAPI 3.1): one operation per webhook event type (`catalog.WEBHOOK_EVENTS`),
its body the model every body sent is built from (`payloads.Callback`, its `type` that
event's), its headers the Standard Webhooks ones, and what the sender makes of each
answer. Documentation only: the router serves none of it (`app.webhooks`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header

from services.webhooks import catalog, payloads

WebhookId = Annotated[str, Header(
    alias="webhook-id",
    description="The callback's id (msg_...): the same on every attempt and replay of it,"
                " so drop one you already had; a dead-lettered callback is replayed by it")]
WebhookTimestamp = Annotated[int, Header(
    alias="webhook-timestamp",
    description="When this attempt was signed, in seconds since the epoch: refuse one too"
                " far from your clock (a replayed request)")]
WebhookSignature = Annotated[str, Header(
    alias="webhook-signature",
    description="v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}' with"
                " the endpoint's whsec_ secret>, space-separated, two while a rotated secret"
                " still signs: verify the raw body with a standardwebhooks library")]

RETRIED_AFTER = ("a failed attempt, retried after the longer of the backoff and its"
                 " Retry-After (seconds or an HTTP date), at most WEBHOOK_RETRY_MAX_SECONDS")
ANSWERS: dict[int | str, dict[str, Any]] = {
    204: {"description": "Taken: any 2xx answer within WEBHOOK_TIMEOUT_SECONDS (its body is"
                         " not read)"},
    410: {"description": "Gone: no more callbacks wanted. The endpoint is disabled, its"
                         " callbacks waiting until an admin enables it again"},
    429: {"description": "Too many requests: slow down. The whole endpoint is held for its"
                         " Retry-After (seconds or an HTTP date; without one,"
                         " WEBHOOK_RETRY_BASE_SECONDS), at most WEBHOOK_RETRY_MAX_SECONDS:"
                         " nothing more is sent to it until then (those already in flight"
                         " finish), and the callbacks not sent spend no attempt. This one"
                         f" is {RETRIED_AFTER}"},
    503: {"description": "Unavailable. With a Retry-After, the whole endpoint is held for it,"
                         " as after a 429; without one, a failed attempt of this callback"
                         " alone, retried with backoff"},
    "default": {"description": "Anything else (a 3xx, which is not followed, another 4xx or"
                               " 5xx), an error or a timeout: a failed attempt, retried"
                               " with backoff, dead-lettered after WEBHOOK_MAX_ATTEMPTS"},
}


async def _sent(body: payloads.Callback, webhook_id: WebhookId,
                webhook_timestamp: WebhookTimestamp, webhook_signature: WebhookSignature
                ) -> None:
    """What a receiver is sent; never called."""


def documented() -> APIRouter:
    """An operation for each webhook event type: the one body model, its `type` narrowed
    to the event's beside the reference (as JSON Schema 2020-12 allows), so that no
    shape is written twice."""
    router = APIRouter(tags=["callbacks"])
    body = f"#/components/schemas/{payloads.Callback.__name__}"
    for kind, name in catalog.WEBHOOK_EVENTS.items():
        router.add_api_route(
            name, _sent, methods=["POST"], name=name, summary=catalog.TOLD[kind],
            description="Sent to the endpoint registered for the ticket's platform, signed"
                        " per the Standard Webhooks spec; at least once, in any order"
                        " (order by data.occurred_at)."
                        + (f" {catalog.MORE[kind]}" if kind in catalog.MORE else ""),
            status_code=204, responses=ANSWERS, operation_id=f"callback_{kind.name.lower()}",
            openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
                "$ref": body, "properties": {"type": {"const": name}}}}}}})
    return router


callbacks = documented()
