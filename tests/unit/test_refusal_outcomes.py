"""The outcomes of the HTTP edge's refusals (401, 403, 429) are defined once, in
`refusal_outcomes` (which `refusals` gives on): each refusal the services raise is one of
`refusals.OUTCOMES`, by a role its series of `routing_http_auth_refused_total` starts at 0
for, and every series started is one a refusal can count. The refusals raised by the real
paths (auth, rate_limits, report_turns, the router's intake), and every `Refused` built in
services/ read as written, the router's forbidding verdicts too."""

from __future__ import annotations

import ast
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.core import access, auth, rate_limits, refusals, report_turns
from services.router import intake
from services.router.service import verdicts
from tests.unit.router_fakes import wired

SERVICES = Path(__file__).parents[2] / "services"
MIB = 1 << 20
AT = datetime(2026, 12, 1, tzinfo=UTC)


def principal(role: access.Role) -> access.Principal:
    return access.Principal(f"c-{role.value}", role,
                            None if role is access.Role.ADMIN else "billing")


def another_role(role: access.Role) -> access.Role:
    return next(other for other in access.Role if other is not role)


async def unauthenticated(_role: access.Role) -> None:
    raise refusals.unauthenticated()


async def unknown_token(_role: access.Role) -> None:
    raise refusals.unknown_token()


async def role_not_admitted(role: access.Role) -> None:
    auth.require(another_role(role)).admit_role(principal(role))


async def another_department(_role: access.Role) -> None:
    auth.ensure_may_act_for(principal(access.Role.DEPARTMENT), "customer_care")


async def over_the_rate(role: access.Role) -> None:
    limits = rate_limits.RateLimits("1/hour")
    for _ in range(2):
        await limits.check(principal(role))


async def over_the_byte_budget(role: access.Role) -> None:
    rate_limits.RateLimits("1000/hour", "1MiB/hour").spend_bytes(principal(role), MIB + 1)


async def a_second_report_at_once(role: access.Role) -> None:
    context: Any = SimpleNamespace(report_turns=report_turns.ReportTurns(at_once=2),
                                   settings=SimpleNamespace(retry_after_seconds=1))

    async def gone() -> bool:
        return False

    turn = report_turns.Turn(context, gone)
    async with turn.taken(principal(role)), turn.taken(principal(role)):
        pass


def verdict_answered(name: str, verdict: verdicts.Refused
                     ) -> Callable[[access.Role], Awaitable[None]]:
    """The router's use case's refusal `verdict`, answered by the intake."""
    async def answered(_role: access.Role) -> None:
        intake.refused(verdict, wired().router, "transfer")
    answered.__name__ = name
    return answered


# Each path to a refusal, by the roles of the credentials it can refuse.
ALL_ROLES = tuple(access.Role)
PATHS: list[tuple[Callable[[access.Role], Awaitable[None]], tuple[access.Role | None, ...]]] = [
    (unauthenticated, (None,)),
    (unknown_token, (None,)),
    (role_not_admitted, ALL_ROLES),
    (another_department, (access.Role.DEPARTMENT,)),
    (verdict_answered("acts_for_own", verdicts.ACTS_FOR_OWN), (access.Role.DEPARTMENT,)),
    (verdict_answered("escalated_away", verdicts.escalated_away(
        [], asked_at=AT, department="key_accounts")), (access.Role.DEPARTMENT,)),
    (verdict_answered("escalated_away_before", verdicts.escalated_away_before(
        [], escalated_at=AT, department="key_accounts")), (access.Role.DEPARTMENT,)),
    (over_the_rate, ALL_ROLES),
    (over_the_byte_budget, ALL_ROLES),
    (a_second_report_at_once, ALL_ROLES)]
REFUSING = [pytest.param(path, role, id=f"{path.__name__}-{role.value if role else 'none'}")
            for path, roles in PATHS for role in roles]


async def counted_as(path: Callable[[access.Role], Awaitable[None]], role: access.Role | None,
                     ) -> tuple[str, str]:
    """The series of routing_http_auth_refused_total the refusal `path` raises for a
    credential of `role` (None: none valid) is counted in."""
    with pytest.raises(refusals.Refused) as raised:
        await path(role or access.Role.PLATFORM)
    return raised.value.error, role.value if role else refusals.NO_ROLE


def started() -> set[tuple[str, str]]:
    """The series refusals.start_at_zero starts, on a counter of its own."""
    counter = Counter("refused", "", ["outcome", "role"], registry=CollectorRegistry())
    refusals.start_at_zero(counter)
    return {(sample.labels["outcome"], sample.labels["role"])
            for metric in counter.collect() for sample in metric.samples
            if sample.name == "refused_total" and sample.value == 0}


@pytest.mark.parametrize(("path", "role"), REFUSING)
async def test_each_refusal_is_counted_in_a_series_started_at_0(
        path: Callable[[access.Role], Awaitable[None]], role: access.Role | None) -> None:
    outcome, label = await counted_as(path, role)
    assert outcome in refusals.OUTCOMES
    assert (outcome, label) in started()


async def test_every_series_started_is_one_a_refusal_is_counted_in() -> None:
    """No outcome, nor role of one, started at 0 that no refusal counts: and, with the
    test above, the outcomes are the tuple's, every one."""
    assert {await counted_as(path, role) for path, roles in PATHS for role in roles} \
        == started()
    assert {outcome for outcome, _role in started()} == set(refusals.OUTCOMES)


def test_the_service_starts_its_counter_so() -> None:
    series = {(sample.labels["outcome"], sample.labels["role"])
              for metric in refusals.AUTH_REFUSED.collect() for sample in metric.samples
              if sample.name == "routing_http_auth_refused_total"}
    assert started() <= series


def refused_errors(source: Path) -> list[tuple[int, ast.expr]]:
    """The `error` argument of each `Refused` (refusals') built in `source`, by line."""
    tree = ast.parse(source.read_text(), str(source))
    in_refusals = source.name == "refusals.py" and source.parent.name == "core"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "Refused"
                and isinstance(func.value, ast.Name) and func.value.id == "refusals") \
                or (in_refusals and isinstance(func, ast.Name) and func.id == "Refused"):
            error = node.args[1] if len(node.args) > 1 else next(
                keyword.value for keyword in node.keywords if keyword.arg == "error")
            found.append((node.lineno, error))
    return found


def forbidding_verdicts(source: Path) -> list[tuple[int, ast.expr]]:
    """The `error` of each router verdict `Refused(Refusal.FORBIDDEN, detail, error)`
    built in `source`, by line: the outcome its 403 is answered and counted by (the
    router's intake: `refusal.error or refusals.FORBIDDEN`); one without is FORBIDDEN."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func, refusal = node.func, node.args[0]
        named = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else ""
        if named != "Refused" or not (isinstance(refusal, ast.Attribute)
                                      and refusal.attr == "FORBIDDEN"):
            continue
        error = node.args[2] if len(node.args) > 2 else next(
            (keyword.value for keyword in node.keywords if keyword.arg == "error"), None)
        if error is not None:
            found.append((node.lineno, error))
    return found


def named_outcomes(error: ast.expr, where: str) -> list[str]:
    """The outcome constants `error` names (`refusals.FORBIDDEN`,
    `refusal_outcomes.ESCALATED_AWAY`, or FORBIDDEN in refusals itself), as in
    `verdict.error or refusals.FORBIDDEN`; a literal fails."""
    if isinstance(error, ast.BoolOp):
        return [name for value in error.values for name in named_outcomes(value, where)]
    if isinstance(error, ast.Constant):
        pytest.fail(f"{where}: the outcome {error.value!r} written as a literal: name its"
                    " constant in refusal_outcomes")
    if isinstance(error, ast.Attribute) and isinstance(error.value, ast.Name) \
            and error.value.id in ("refusals", "refusal_outcomes"):
        return [error.attr]
    if isinstance(error, ast.Name):
        return [error.id]
    return []  # a verdict's own error: test_each_refusal_is_counted_in_a_series_started_at_0


def test_every_refusal_built_names_an_outcome_of_the_tuple() -> None:
    built = [(where, name) for source in sorted(SERVICES.rglob("*.py"))
             for line, error in refused_errors(source)
             for where in [f"services/{source.relative_to(SERVICES)}:{line}"]
             for name in named_outcomes(error, where)]
    assert len(built) >= 7  # the raise sites found: auth's 2, intake's, rate limits' 2...
    assert [(where, name) for where, name in built
            if getattr(refusals, name, None) not in refusals.OUTCOMES] == []


def test_every_forbidding_verdict_names_an_outcome_of_the_tuple() -> None:
    """The router's verdicts decide a 403's outcome (escalated_away) without the edge's
    refusals (FastAPI, Prometheus): named from refusal_outcomes, as the edge counts it."""
    built = [(where, name) for source in sorted((SERVICES / "router").rglob("*.py"))
             for line, error in forbidding_verdicts(source)
             for where in [f"services/{source.relative_to(SERVICES)}:{line}"]
             for name in named_outcomes(error, where)]
    assert len(built) >= 2  # verdicts.escalated_away, escalated_away_before
    assert [(where, name) for where, name in built
            if getattr(refusals, name, None) not in refusals.OUTCOMES] == []


def test_readme_names_every_outcome_counted() -> None:
    """README, the metrics: `routing_http_auth_refused_total{outcome,role}` (401
    `unauthenticated`, ...), by its outcomes, every one."""
    readme = (SERVICES.parent / "README.md").read_text()
    start = readme.index("`routing_http_auth_refused_total{outcome,role}` (")
    told = readme[start:readme.index(")", start + 50)]
    assert {outcome for outcome in refusals.OUTCOMES if f"`{outcome}`" in told} \
        == set(refusals.OUTCOMES)
