"""A field whose text its pattern refuses is answered 422 naming the field and saying, in
words, what it accepts (services/core/text_forms.py), never the regex: over HTTP on the
real SQL store, for the credentials API's rate limit and a transfer's department."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from services.core import credentials_api, topics
from services.router import tickets_api
from tests import credentials
from tests.router_apis import (
    CUSTOMER_CARE_AND_BILLING,
    RouterApis,
    routed_ticket,
    router_apis,
)


@pytest.fixture
async def router(database_url: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[RouterApis]:
    async with router_apis(database_url, kafka_bootstrap, tmp_path, credentials_api.api,
                           tickets_api.api, table=CUSTOMER_CARE_AND_BILLING) as apis:
        yield apis


def refused(answer: dict[str, list[dict[str, str]]]) -> dict[str, str]:
    [field] = answer["fields"]
    assert "pattern" not in field["problem"] and "^" not in field["problem"], field
    return field


class TestAFieldItsPatternRefuses:
    async def test_a_credentials_rate_limit_is_told_what_a_rate_is(
            self, router: RouterApis) -> None:
        admin = await credentials.headers_of(router.credentials, "admin")
        answer = await router.client.post("/v1/credentials", headers=admin, json={
            "role": "platform", "subject": "helpdesk", "rate_limit": "fast"})
        assert answer.status_code == 422
        assert refused(answer.json()) == {
            "field": "body.rate_limit", "type": "string_pattern_mismatch",
            "problem": "should be a rate such as 200/second, 6000/minute, 10 per second or"
                       " 100/5 minutes, in lower case: a number of requests from 1, then '/'"
                       " or 'per', then second, minute, hour, day, month or year, with a"
                       " number of them before it if more than one; one rate, at most one"
                       " space between its parts, none around it"}

    async def test_a_transfers_department_is_told_what_a_name_is(
            self, router: RouterApis) -> None:
        ticket_id, _ = await routed_ticket(router.routed, "customer_care",
                                           spent=timedelta(minutes=1))
        admin = await credentials.headers_of(router.credentials, "admin")
        answer = await router.client.post(
            f"/v1/tickets/{ticket_id}/transfer", headers=admin,
            json={"to_department": "Billing Dept", "reason": "a billing question"})
        assert answer.status_code == 422
        assert refused(answer.json()) == {
            "field": "body.to_department", "type": "string_pattern_mismatch",
            "problem": f"should be a name of {topics.NAME_RULE}"}
