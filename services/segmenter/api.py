"""The segmenter's API: which segment a customer is in, and why; and the one dependency
every segmenter route reaches its context through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from services.core import auth, identifiers, service_context
from services.segmenter import bootstrap, rules, service

api = APIRouter(prefix="/v1", tags=["segments"], dependencies=auth.ADMIN_ONLY)

CustomerId = Annotated[str, Path(min_length=1, max_length=identifiers.MAX_LENGTH,
                                 pattern=identifiers.ID.pattern)]


async def get_segmenter(context: service_context.Context) -> bootstrap.Segmenter:
    """The context the lifespan provided (services/segmenter/app.py)."""
    return context.part(bootstrap.Segmenter)


Segmenter = Annotated[bootstrap.Segmenter, Depends(get_segmenter)]


@api.get("/customers/{customer_id}/segment", responses={409: {
    "description": "A rule reached before one that holds reads the ticket's fields: the"
                   " segment depends on the ticket (`rule` names it)"}})
async def customer_segment(customer_id: CustomerId, segmenter: Segmenter,
                           explain: Annotated[bool, Query()] = False) -> dict[str, Any]:
    """The segment a ticket from this customer would get now (a ticket's own fields are
    unknown here, so rules on `ticket` see nulls). Unknown customers are answered too."""
    rule_set = segmenter.rules.current
    segmented = await service.explain(segmenter.customers, rule_set, customer_id,
                                      now=datetime.now(UTC))
    on_the_ticket = [rule.name for rule in _before(rule_set, segmented.decision.rule)
                     if _reads_the_ticket(rule)]
    if on_the_ticket:
        # A rule on the ticket's fields comes before the one that holds: on null fields it
        # failed or did not hold, but on a real ticket it may: no segment without a
        # ticket. An error is not repeated (it may quote a customer's values).
        raise HTTPException(409, detail={
            "error": "needs_a_ticket", "rule": on_the_ticket[0],
            "detail": f"segment rule {on_the_ticket[0]!r} cannot be evaluated for this"
                       " customer without a ticket's fields (they are null here): its"
                       " segment depends on the ticket"})
    decision, customer = segmented.decision, segmented.customer
    answer: dict[str, Any] = {
        "customer_id": customer_id, "segment": decision.segment,
        "rule": decision.rule, "rules_version": decision.rules_version,
        "customer_known": customer.profile is not None, "tier": str(customer.tier),
        # Rules that failed on this customer's data: they did not hold, as on tickets.
        "rules_failed": [{"rule": failure.rule, "kind": failure.kind}
                         for failure in decision.failed],
    }
    if explain:
        answer["explanation"] = {
            # An admin's answer, not a ticket: the values themselves, protected ones too.
            "decided_by": rules.values_read(list(decision.decided_by), segmented.evaluation),
            "features": segmented.evaluation["features"],
            "rules_checked": [
                {"rule": rule.name, "segment": rule.segment, "when": rule.expression}
                for rule in rule_set.rules[:_position(rule_set, decision.rule) + 1]
            ],
        }
    return answer


def _reads_the_ticket(rule: rules.Rule) -> bool:
    return any(path.split(".")[0] == "ticket" for path in rule.reads)


def _before(rule_set: rules.RuleSet, name: str) -> list[rules.Rule]:
    """The rules checked before the one named (every rule: none named, the default)."""
    names = [rule.name for rule in rule_set.rules]
    held = name != rules.DEFAULT_RULE and name in names
    return list(rule_set.rules[:names.index(name)] if held else rule_set.rules)


def _position(rule_set: rules.RuleSet, name: str) -> int:
    names = [rule.name for rule in rule_set.rules]
    return names.index(name) if name in names else len(names) - 1
