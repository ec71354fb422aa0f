"""Webhooks over HTTP, for admins: each platform's endpoint (register, list, update,
delete, rotate its signing secret, shown once) and the dead-letter list (list, replay
one, a platform's or all)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field, StrictBool, field_validator
from pydantic.config import JsonDict

from services.core import (
    access,
    admin_actions,
    auth,
    credentials,
    http,
    request_bodies,
    service_context,
    text_forms,
)
from services.webhooks import catalog, endpoint_store, models, outbox_store, pages, service

api = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=auth.ADMIN_ONLY)
PlatformName = Annotated[str, Path(pattern=access.SUBJECT.pattern,
                                   description="The platform's credential subject")]
DELIVERY_ID = text_forms.Form(r"^msg_[A-Za-z0-9._-]{1,76}$", "a callback's webhook-id: msg_"
                              " then 1 to 76 ASCII letters, digits, '.', '_' or '-'")
DeliveryId = Annotated[str, Path(pattern=DELIVERY_ID.pattern,
                                 description="The callback's webhook-id")]
# Said in the schema (generated clients, fuzzers); checked by `catalog.endpoint_problem`,
# which says what is wrong rather than quoting the pattern.
URL_SCHEMA: JsonDict = {"pattern": catalog.URL_PATTERN, "maxLength": catalog.MAX_URL_LENGTH}
PlatformFilter = Annotated[str | None, Query(pattern=access.SUBJECT.pattern)]


def get_endpoints(context: service_context.Context) -> endpoint_store.Endpoints:
    return context.part(endpoint_store.Endpoints)


def get_deliveries(context: service_context.Context) -> outbox_store.Deliveries:
    return context.part(outbox_store.Deliveries)


Endpoints = Annotated[endpoint_store.Endpoints, Depends(get_endpoints)]
Credentials = Annotated[credentials.Credentials, Depends(auth.get_credentials)]
Deliveries = Annotated[outbox_store.Deliveries, Depends(get_deliveries)]


def _checked_url(url: str | None) -> str | None:
    problem = None if url is None else catalog.endpoint_problem(url)
    if problem:
        raise ValueError(problem)
    return url


class EndpointRequest(request_bodies.RequestBody):
    platform: str = Field(pattern=access.SUBJECT.pattern,
                          description="The platform's credential subject")
    url: request_bodies.UnicodeText = Field(
        description="https:// (http:// only on loopback)", json_schema_extra=URL_SCHEMA)
    enabled: StrictBool = True

    @field_validator("url")
    @classmethod
    def _a_webhook_url(cls, url: str | None) -> str | None:
        return _checked_url(url)


class EndpointChange(request_bodies.RequestBody):
    url: request_bodies.UnicodeText | None = Field(
        default=None, description="https:// (http:// only on loopback)",
        json_schema_extra=URL_SCHEMA)
    enabled: StrictBool | None = None
    held_until: None = Field(default=None, description=(
        "null lifts the endpoint's hold (its receiver asked to wait: a 429, a 503 with"
        " Retry-After): callbacks go at once. No other value: a hold is its receiver's"))

    @field_validator("url")
    @classmethod
    def _a_webhook_url(cls, url: str | None) -> str | None:
        return _checked_url(url)

    @field_validator("held_until", mode="before")
    @classmethod
    def _lifted_only(cls, until: object) -> None:
        if until is not None:
            raise ValueError("null alone, which lifts the hold: a hold is its receiver's to"
                             " ask (a 429, a 503 with Retry-After), not an admin's to set")
        return None

    @property
    def lifts_hold(self) -> bool:
        return "held_until" in self.model_fields_set


class EndpointRegistered(endpoint_store.Endpoint):
    secret: str = Field(description="The signing secret (whsec_...): shown this once")


class SecretRotated(BaseModel):
    platform: str
    secret: str = Field(description="The new signing secret, in force at once (the old one"
                                    " signs too for the overlap): shown once")


class Replayed(BaseModel):
    replayed: int = Field(description="Dead-lettered callbacks queued to send again")


def _no_endpoint(platform: str) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found",
                                      "detail": f"platform {platform!r} has no endpoint"})


@api.post("/endpoints", status_code=201, response_model=EndpointRegistered,
          responses={409: {"description": "The platform has an endpoint already: change it"
                                          " with PATCH, or DELETE it first"},
                     422: {"description": "Among others: `platform` was never issued a"
                                          " platform credential (it posts no tickets)"}})
async def register(request: EndpointRequest, endpoints: Endpoints, known: Credentials,
                   principal: auth.Admin) -> EndpointRegistered:
    """Register a platform's endpoint; the answer holds the signing secret, shown once.
    The platform is one a credential was issued to: one never issued any posts no
    tickets, and its endpoint would never be called."""
    registered = await service.register(endpoints, known, request.platform, request.url,
                                        enabled=request.enabled,
                                        actor=admin_actions.actor_of(principal))
    if isinstance(registered, service.NoCredential):
        raise http.InvalidField("body.platform", registered.problem)
    if registered is None:
        raise HTTPException(409, detail={
            "error": "conflict", "detail": f"platform {request.platform!r} has an endpoint:"
                                           " change it with PATCH, or DELETE it first"})
    endpoint, secret = registered
    return EndpointRegistered(**endpoint.model_dump(), secret=secret)


@api.get("/endpoints", response_model=list[endpoint_store.Endpoint])
async def listed(endpoints: Endpoints) -> Any:
    """Every platform's endpoint, without secrets."""
    return await endpoints.listed()


@api.get("/endpoints/{platform}", response_model=endpoint_store.Endpoint)
async def one(platform: PlatformName, endpoints: Endpoints) -> endpoint_store.Endpoint:
    return await endpoints.get(platform) or _raise(_no_endpoint(platform))


@api.patch("/endpoints/{platform}", response_model=endpoint_store.Endpoint)
async def change(platform: PlatformName, request: EndpointChange, endpoints: Endpoints,
                 principal: auth.Admin) -> endpoint_store.Endpoint:
    """Change the URL, disable (callbacks wait) and enable the endpoint, or lift its hold
    (`held_until` null)."""
    changed = await endpoints.update(platform, url=request.url, enabled=request.enabled,
                                     lift_hold=request.lifts_hold,
                                     actor=admin_actions.actor_of(principal))
    return changed or _raise(_no_endpoint(platform))


@api.delete("/endpoints/{platform}", response_model=endpoint_store.Endpoint)
async def delete(platform: PlatformName, endpoints: Endpoints, principal: auth.Admin
                 ) -> endpoint_store.Endpoint:
    """Delete the endpoint and the callbacks still waiting to be sent to it."""
    return await endpoints.delete(platform, actor=admin_actions.actor_of(principal)) \
        or _raise(_no_endpoint(platform))


@api.post("/endpoints/{platform}/secret", response_model=SecretRotated, responses={409: {
    "description": "`previous_secret_still_signs`: the secret the last rotation replaced"
                   " still signs (until `until`); rotate again after it, or with"
                   " `force=true`"}})
async def rotate_secret(platform: PlatformName, endpoints: Endpoints, principal: auth.Admin,
                        force: Annotated[bool, Query(description=(
                            "Rotate even while the secret the last rotation replaced"
                            " still signs: the current secret (lost before it was"
                            " stored) is replaced, and that one signs on for its"
                            " overlap"))] = False,
                        ) -> SecretRotated:
    """A new signing secret, used from the next attempt on; shown this once. The old one
    signs too (a second signature) for WEBHOOK_SECRET_OVERLAP_SECONDS, so that the
    receiver can switch at its pace; while it does, another rotation is refused (409),
    unless forced."""
    rotated = await endpoints.rotate_secret(platform, force=force,
                                            actor=admin_actions.actor_of(principal))
    if isinstance(rotated, endpoint_store.StillSigning):
        raise HTTPException(409, detail=still_signing(rotated))
    return SecretRotated(platform=platform, secret=rotated or _raise(_no_endpoint(platform)))


def still_signing(refused: endpoint_store.StillSigning) -> dict[str, str]:
    return {"error": "previous_secret_still_signs",
            "detail": "the secret the last rotation replaced still signs until"
                      f" {refused.until.isoformat()}, for receivers not yet moved to the"
                      " current one: rotate again after that, or force it to replace the"
                      " current secret alone (one lost before it was stored)",
            "until": refused.until.isoformat()}


class DeadLetterPage(BaseModel):
    dead_letters: list[outbox_store.Delivery]
    next: str | None = Field(description="Pass as `since` for the next page; null at the end")


@api.get("/dead-letters", response_model=DeadLetterPage)
async def dead_letters(
    deliveries: Deliveries, platform: PlatformFilter = None,
    limit: Annotated[int, Query(description=f"At most this many, 1-{outbox_store.LISTED_AT_MOST}",
                                json_schema_extra={"minimum": 1,
                                                   "maximum": outbox_store.LISTED_AT_MOST})
                     ] = outbox_store.LISTED_AT_MOST,
    since: Annotated[str | None, Query(
        description="The `next` of the page before: those after it",
        json_schema_extra={"pattern": pages.CURSOR_PATTERN})] = None,
) -> DeadLetterPage:
    """Callbacks whose attempts were used up, those dead-lettered longest ago first, a
    page at a time (bodies are not shown); a replay of all or a platform's takes every
    one."""
    problem = page_size_problem(limit)
    if problem:
        raise http.InvalidField("query.limit", problem)
    try:
        place = None if since is None else pages.place_of(since)
    except ValueError as exc:
        raise http.InvalidField("query.since", str(exc)) from exc
    page = await deliveries.page(models.DEAD, platform=platform, since=place, limit=limit)
    return DeadLetterPage(dead_letters=page.deliveries,
                          next=None if page.next is None else page.next.cursor)


def page_size_problem(limit: int) -> str | None:
    """What is wrong with a page's size, or None."""
    if 1 <= limit <= outbox_store.LISTED_AT_MOST:
        return None
    return f"from 1 to {outbox_store.LISTED_AT_MOST} callbacks a page, not {limit}"


@api.post("/dead-letters/replay", response_model=Replayed)
async def replay_all(deliveries: Deliveries, platform: PlatformFilter = None) -> Replayed:
    """Send every dead-lettered callback (of one platform, with `platform`) again."""
    return Replayed(replayed=await deliveries.replay(platform=platform))


@api.post("/dead-letters/{delivery_id}/replay", response_model=Replayed)
async def replay_one(delivery_id: DeliveryId, deliveries: Deliveries) -> Replayed:
    """Send one dead-lettered callback again, from its first attempt."""
    replayed = await deliveries.replay(delivery_id=delivery_id)
    if not replayed:
        raise HTTPException(404, detail={"error": "not_found",
                                         "detail": f"no dead-lettered {delivery_id!r} of a"
                                                   " platform with an endpoint"})
    return Replayed(replayed=replayed)


def _raise(error: HTTPException) -> Any:
    raise error
