"""The customer admin API: profiles, purchases and tiers."""

from __future__ import annotations

import functools
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import Field, WithJsonSchema

from services.core import auth, http, report_turns, request_bodies, tickets
from services.segmenter import context, row_streams, rows, service
from services.segmenter.api import CustomerId, Segmenter
from services.segmenter.profiles import TEXT_LIMITS, Customer, CustomerType

api = APIRouter(prefix="/v1", tags=["customers"], dependencies=auth.ADMIN_ONLY)


class CustomerIn(request_bodies.RequestBody):
    """A customer's profile. Personal fields are used by segment rules only where the
    rules allow, and never logged."""

    customer_type: CustomerType
    name: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["name"])
    email: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["email"])
    birth_date: http.Day | None = None
    gender: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["gender"])
    country: rows.CountryCode | None = None
    language: tickets.Text | None = Field(default=None, max_length=TEXT_LIMITS["language"])
    socio_economic_band: tickets.Text | None = Field(
        default=None, max_length=TEXT_LIMITS["socio_economic_band"])
    signup_date: http.Day | None = None
    attributes: rows.CustomerAttributes = Field(default_factory=dict)


class PurchaseIn(request_bodies.RequestBody):
    amount: Annotated[rows.Amount, WithJsonSchema({"anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": float(rows.MAX_AMOUNT),
         "multipleOf": 0.01},
        {"type": "string", "pattern": r"^(?!0*(\.0*)?$)[0-9]{1,12}(\.[0-9]{1,2})?$"}],
        "description": "greater than 0, at most two decimal places"})]
    currency: str = Field(pattern=rows.CURRENCY.pattern, description="ISO 4217, e.g. EUR")
    purchased_at: http.Timestamp | None = Field(
        default=None, description=f"RFC 3339 with offset, {rows.PURCHASED_BY_NOW};"
                                  " default: now")


@api.put("/customers/{customer_id}", status_code=200,
         responses={201: {"description": "The customer is new: created"}})
async def save_customer(customer_id: CustomerId, customer: CustomerIn, segmenter: Segmenter,
                        response: Response) -> dict[str, Any]:
    """Create or replace a customer's profile."""
    now = datetime.now(UTC)
    if customer.birth_date and customer.birth_date > rows.today_anywhere():
        raise http.InvalidField("body.birth_date", "must not be in the future")
    created = await service.save_customer(segmenter.customers, segmenter.publisher,
                                          customer_id, customer.model_dump(mode="python"),
                                          now=now)
    response.status_code = 201 if created else 200
    return {"customer_id": customer_id, "created": created}


@api.get("/customers/{customer_id}")
async def read_customer(customer_id: CustomerId, segmenter: Segmenter) -> dict[str, Any]:
    row = await segmenter.customers.profile_row(customer_id)
    if row is None:
        raise _not_found(customer_id)
    customer = await segmenter.customers.customer(customer_id, now=datetime.now(UTC))
    return {
        "customer_id": customer_id,
        "profile": _profile(row),
        "tier": str(customer.tier),
        "features": _features(customer),
    }


def _profile(row: Any) -> dict[str, Any]:
    """A stored profile as CustomerIn gives it, read as stored: not checked again, so a row
    stored under older rules (an import once took nested attributes) is still shown."""
    fields = {name: getattr(row, name) for name in CustomerIn.model_fields}
    return CustomerIn.model_construct(**fields).model_dump(mode="json", warnings=False)


@api.delete("/customers/{customer_id}", status_code=200)
async def delete_customer(customer_id: CustomerId, segmenter: Segmenter) -> dict[str, Any]:
    """Erase the customer: their profile, purchases and tickets leave every table of the
    store; the answer says what was deleted and what Kafka keeps until when."""
    erased = await service.erase_customer(segmenter.customers, segmenter.publisher,
                                          customer_id)
    if not erased.found:
        raise _not_found(customer_id)
    return erased.answer()


@api.post("/customers/{customer_id}/purchases", status_code=201)
async def record_purchase(customer_id: CustomerId, purchase: PurchaseIn,
                          segmenter: Segmenter) -> dict[str, Any]:
    """Record a purchase; the customer's values and tier are updated at once."""
    now = datetime.now(UTC)
    if purchase.purchased_at and rows.purchased_in_future(purchase.purchased_at, now=now):
        raise http.InvalidField("body.purchased_at", "in the future; accepted: a moment"
                                                     f" {rows.PURCHASED_BY_NOW}")
    purchased = await service.record_purchase(
        segmenter.customers, segmenter.publisher, customer_id, amount=float(purchase.amount),
        currency=purchase.currency, purchased_at=purchase.purchased_at, now=now)
    if purchased is None:
        raise _not_found(customer_id)
    change = purchased.tier_change
    return {"customer_id": customer_id, "tier": str(purchased.customer.tier),
            "tier_changed": {"previous": str(change.previous), "current": str(change.current)}
            if change else None,
            "features": _features(purchased.customer)}


@api.get("/tiers", tags=["tiers"])
async def tiers(segmenter: Segmenter) -> dict[str, Any]:
    """How many customers are in each tier, and the cutoffs in force."""
    return {"sizes": await segmenter.customers.tier_sizes(),
            "cutoffs": segmenter.customers.cutoffs.to_dict()}


@api.post("/tiers/recompute", tags=["tiers"], responses=report_turns.IN_PROGRESS)
async def recompute_tiers(segmenter: Segmenter, principal: auth.Admin,
                          turn: report_turns.ReportTurn) -> dict[str, Any]:
    """Recompute every customer's values, the cutoffs and the tiers now (a pass over
    the whole customer base, in a report turn)."""
    async with turn.taken(principal):
        return recomputed_answer(await service.recompute_tiers(
            segmenter.customers, segmenter.publisher, now=datetime.now(UTC)))


def recomputed_answer(recomputed: service.Recomputed) -> dict[str, Any]:
    return {"tier_changes": len(recomputed.tier_changes), "sizes": recomputed.sizes,
            "cutoffs": recomputed.cutoffs.to_dict()}


def _not_found(customer_id: str) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found",
                                      "detail": f"no customer {customer_id!r}"})


def _features(customer: Customer) -> dict[str, Any]:
    return context.features_view(customer.features)


IMPORT_FORMATS = {"text/csv": "csv", "application/x-ndjson": "jsonl",
                  "application/jsonl": "jsonl", "application/json-lines": "jsonl"}
IMPORT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "description": "a header line, then rows"}},
    "application/x-ndjson": {"schema": {"type": "string",
                                        "description": "one JSON object a line"}}}},
    "responses": {"415": {"description": "The body is neither CSV nor JSON Lines"}}}


def import_format(request: Request) -> rows.Format:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    found = IMPORT_FORMATS.get(media_type)
    if found is None:
        raise HTTPException(415, detail={
            "error": "unsupported_media_type",
            "detail": f"send {', '.join(IMPORT_FORMATS)}; got {media_type or 'nothing'!r}"})
    return found  # type: ignore[return-value]


Format = Annotated[rows.Format, Depends(import_format)]


# The job a customer import sets off, as its turn is named (`job:import-recompute`).
IMPORT_RECOMPUTE = "import-recompute"


@api.post("/customers/import", openapi_extra=IMPORT_BODY, tags=["import"])
async def import_customers(request: Request, fmt: Format, segmenter: Segmenter,
                           turn: report_turns.ReportTurn) -> dict[str, Any]:
    """Create or update customers from CSV or JSON Lines, streamed: good rows are kept in
    chunks, each row all or nothing; bad rows come back with their line and reason. Then
    the tiers are recomputed over the new base (`tier_recompute`; null when no row was
    kept), in its turn among the service's reports: waited for, never refused, and shared
    with the imports made while it waits."""
    imported = await service.import_customers(
        segmenter.customers, segmenter.publisher,
        row_streams.read_rows(request.stream(), fmt, "customers"),
        in_turn=functools.partial(turn.run_in_turn, IMPORT_RECOMPUTE))
    return {**asdict(imported.report), "tier_recompute": recomputed_answer(imported.recomputed)
            if imported.recomputed else None}


@api.post("/purchases/import", openapi_extra=IMPORT_BODY, tags=["import"])
async def import_purchases(request: Request, fmt: Format,
                           segmenter: Segmenter) -> dict[str, Any]:
    """Record purchases from CSV or JSON Lines, streamed; values and tiers follow."""
    report = await service.import_purchases(
        segmenter.customers, segmenter.publisher,
        row_streams.read_rows(request.stream(), fmt, "purchases"))
    return asdict(report)
