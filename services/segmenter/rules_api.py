"""The segment rules API: what is in force, replacing it (a new version in the store),
its history (services/core/config_history_api.py), and analysing a candidate."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from services.core import (
    auth,
    config_files,
    config_history_api,
    config_preconditions,
    config_store,
    http,
    report_turns,
)
from services.segmenter import bootstrap, rules, rules_file, service
from services.segmenter.api import Segmenter
from services.segmenter.live_rules import LiveRuleSet

api = APIRouter(prefix="/v1/segment-rules", tags=["segment rules"],
                dependencies=auth.ADMIN_ONLY)


async def get_live(segmenter: Segmenter) -> LiveRuleSet:
    return segmenter.rules


Live = Annotated[LiveRuleSet, Depends(get_live)]


def describe(rule_set: rules.RuleSet) -> dict[str, Any]:
    return {
        "version": rule_set.version,
        "source": rule_set.source,
        "default_segment": rule_set.default_segment,
        "protected_attributes": list(rule_set.protected_attributes),
        "rules": [{"name": r.name, "segment": r.segment, "when": r.expression,
                   "line": r.line, "reads": list(r.reads),
                   "protected_reads": rule_set.protected_reads(r)} for r in rule_set.rules],
    }


@api.get("", responses=config_preconditions.ETAG_HEADER)
async def rules_in_force(live: Live, response: Response) -> dict[str, Any]:
    """The rule set in force, its id in the store (the ETag names it too), when it was
    loaded here, the store's version in force when this instance cannot read it
    (`refused_version_id`), and the last rejected attempt."""
    rejection = live.last_rejection
    config_preconditions.show_version(response, live.version_id)
    return {**describe(live.current), "version_id": live.version_id,
            "refused_version_id": live.refused_id,
            "loaded_at": live.loaded_at.isoformat(),
            "last_rejection": asdict(rejection) | {"at": rejection.at.isoformat()}
            if rejection else None}


@api.put("", openapi_extra=http.YAML_BODY,
         responses={**config_preconditions.ETAG_HEADER,
                    **config_preconditions.PRECONDITION_FAILED,
                    422: {"description": "The rule set is invalid (the old one serves), or"
                                         " a malformed If-Match"}})
async def upload_rules(live: Live, principal: auth.Admin, text: http.YamlText,
                       response: Response, if_match: config_preconditions.IfMatch,
                       comment: config_history_api.CommentQuery = "") -> Any:
    """Put a rule set in force without a restart, kept in the store as a new version
    with the credential and `comment`, and announced to every instance (the rule file is
    not written). An invalid one is rejected and the rule set in force keeps serving.
    With If-Match, only while the version it names is in force (else 412)."""
    try:
        version, changed = await live.put_in_force(
            text, source=live.upload_source, comment=comment,
            author=config_history_api.author_of(principal), by_request=True,
            if_in_force=if_match)
    except config_files.ConfigError as exc:
        return http.config_error(exc)
    except config_store.NotInForce as exc:
        return config_preconditions.precondition_failed(exc, what="segment rules")
    config_preconditions.show_version(response, version.version_id)
    return {**describe(live.current), "version_id": version.version_id, "changed": changed}


@api.post("/dry-run", openapi_extra=http.YAML_BODY,
          responses={422: {"description": "The rule set is invalid (file, line, rule)"},
                     **report_turns.IN_PROGRESS})
async def dry_run(live: Live, segmenter: Segmenter, text: http.YamlText,
                  principal: auth.Admin, turn: report_turns.ReportTurn) -> Any:
    """Validate a candidate rule set and analyse it over the customer base against the
    one in force, with the diff of the texts; nothing is put in force or kept."""
    try:
        candidate = await live.validate(text, source="candidate (dry run)")
    except config_files.ConfigError as exc:
        return http.config_error(exc)
    async with turn.taken(principal):  # the rule set in force when the turn came
        current, in_force_text = live.in_force_here()
        report = await service.analyse(
            segmenter.customers, candidate, live=current, now=datetime.now(UTC),
            proxy_policy=bootstrap.proxy_policy(segmenter.settings))
    return {"valid": True, "version": candidate.version,
            "in_force": current.version,
            "diff": config_store.text_diff(in_force_text, text, "in force", "candidate"),
            "analysis": asdict(report)}


@api.post("/analysis", openapi_extra={"requestBody": {"required": False, "content": {
    "application/yaml": {"schema": {"type": "string",
                                    "description": "a candidate rule file; empty: the"
                                                   " rule set in force"}}}}},
          responses=report_turns.IN_PROGRESS)
async def analyse_rules(live: Live, segmenter: Segmenter, text: http.YamlText,
                        principal: auth.Admin, turn: report_turns.ReportTurn) -> Any:
    """Run a candidate rule set (or, with an empty body, the one in force) over the whole
    customer base: segment sizes, customers only the default catches, rules that never
    match or are shadowed, protected attributes read, rules that stand in for one
    (`proxy_detection`: Cramér's V of the rule's matches against each protected
    attribute's bands), and who would move where."""
    candidate: rules.RuleSet | None = None
    if text.strip():
        try:
            candidate = await config_files.parse_off_the_loop(
                rules_file.parse, text, source="candidate (upload)")
        except config_files.ConfigError as exc:
            return http.config_error(exc)
    async with turn.taken(principal):
        # the rule set in force alone, or a candidate against it
        analysed, against = ((live.current, None) if candidate is None
                             else (candidate, live.current))
        report = await service.analyse(
            segmenter.customers, analysed, live=against, now=datetime.now(UTC),
            proxy_policy=bootstrap.proxy_policy(segmenter.settings))
    return asdict(report)


api.include_router(config_history_api.routes(get_live, what="segment rules"))

