"""The routing policy on the real pipeline: priority lanes and deadlines, refinements,
overflow on live load, escalation, transfers, the routing trace, idempotent intake and
routing table reloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from services.core import topics
from tests.conftest import Pipeline, demo_pipeline, department_lanes, read_topic, unique

TABLE = """
version: policy-tests-1
fallback_department: customer_care
defaults: {priority: 4, first_response_target: 1d}
routes:
  - segment: key_accounts
    department: key_accounts
    priority: 2
    first_response_target: 1h
    refinements:
      - {name: key-complaints, when: 'ticket.kind == "complaint"', department: key_accounts,
         priority: 1, first_response_target: 30m}
  - {segment: growth, department: account_development, priority: 3, first_response_target: 3s}
  - {segment: potential, department: sales_support, priority: 3, first_response_target: 4h}
  - {segment: government, department: public_sector, priority: 2, first_response_target: 4h}
departments:
  key_accounts: {}
  account_development: {escalation_to: key_accounts}
  public_sector: {}
  sales_support:
    overflow: {to: customer_care, max_backlog: 3, resume_below: 0.5}
  customer_care: {}
"""


@pytest.fixture(scope="module")
def policy_pipeline(kafka_bootstrap: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("policy"), customers=200,
                       table=TABLE, extra_env={"LOAD_SAMPLE_SECONDS": "0.3",
                                               "ESCALATION_CHECK_SECONDS": "0.3"}) as running:
        yield running


class RouterClient(httpx.AsyncClient):
    """The router's API as an admin, and as a support platform for posting tickets."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(base_url=pipeline.url("router"), timeout=20,
                         headers=pipeline.headers("admin"))
        self.platform = pipeline.headers("platform")


@pytest.fixture
async def router(policy_pipeline: Pipeline) -> AsyncIterator[RouterClient]:
    async with RouterClient(policy_pipeline) as client:
        yield client


async def post(router: httpx.AsyncClient, customer: str, *, correlation_id: str | None = None,
               **fields: Any) -> str:
    assert isinstance(router, RouterClient)
    correlation = {"X-Correlation-ID": correlation_id} if correlation_id else {}
    response = await router.post("/v1/tickets", headers={**router.platform, **correlation}, json={
        "customer_id": customer, "subject": "s", "body": "b", "channel": "web", **fields})
    assert response.status_code == 202, response.text
    ticket_id: str = response.json()["ticket_id"]
    return ticket_id


async def queued(pipeline: Pipeline, ticket_id: str, *departments: str,
                 count: int = 1) -> list[tuple[Any, Any]]:
    return await read_topic(pipeline.bootstrap, *department_lanes(*departments), until=count,
                            keep=lambda e: e.ticket_id == ticket_id)


class TestLanesAndDeadlines:
    async def test_a_key_account_complaint_goes_first(self, router: httpx.AsyncClient,
                                                      policy_pipeline: Pipeline) -> None:
        ticket_id = await post(router, "ind-vip-1", kind="complaint")
        [(event, record)] = await queued(policy_pipeline, ticket_id, "key_accounts")
        routing = event.data["routing"]
        assert record.topic == "dept.key_accounts.high"
        assert (routing["reason"], routing["entry"], routing["priority"]) == (
            "refinement", "key-complaints", 1)
        received = datetime.fromisoformat(event.data["received_at"])
        deadline = datetime.fromisoformat(routing["first_response_deadline"])
        assert 29 * 60 <= (deadline - received).total_seconds() <= 31 * 60

    async def test_a_question_keeps_the_route_priority(self, router: httpx.AsyncClient,
                                                       policy_pipeline: Pipeline) -> None:
        ticket_id = await post(router, "ind-vip-1", kind="question")
        [(event, record)] = await queued(policy_pipeline, ticket_id, "key_accounts")
        assert (record.topic, event.data["routing"]["priority"]) == ("dept.key_accounts.high", 2)

    async def test_fallback_for_an_unrouted_segment(self, router: httpx.AsyncClient,
                                                    policy_pipeline: Pipeline) -> None:
        ticket_id = await post(router, "ind-loyal-1")  # segment general: no route
        [(event, record)] = await queued(policy_pipeline, ticket_id, "customer_care")
        assert event.data["routing"]["reason"] == "fallback"
        assert record.topic == "dept.customer_care.low"  # default priority 4


class TestTraceAndState:
    async def test_the_whole_trace_is_answered(self, router: httpx.AsyncClient,
                                               policy_pipeline: Pipeline) -> None:
        ticket_id = await post(router, "gov-ministry-1")
        await queued(policy_pipeline, ticket_id, "public_sector")
        state = (await router.get(f"/v1/tickets/{ticket_id}")).json()
        assert (state["department"], state["status"], state["priority"]) == (
            "public_sector", "routed", 2)
        steps = [step["step"] for step in state["trace"]]
        assert steps[:3] == ["received", "segmented", "routed"]
        segmented, routed = state["trace"][1], state["trace"][2]
        assert (segmented["rule"], segmented["segment"]) == ("public-sector", "government")
        assert segmented["rules_version"].startswith("demo-2+")
        assert routed["table_version"].startswith("policy-tests-1+")
        assert routed["entry"] == "government"

        await router.post(f"/v1/tickets/{ticket_id}/events", json={"type": "responded"})
        for _ in range(50):
            state = (await router.get(f"/v1/tickets/{ticket_id}")).json()
            if state["status"] == "responded":
                break
            await asyncio.sleep(0.1)
        assert state["status"] == "responded"
        assert state["first_response_at"] is not None

    async def test_unknown_ticket_is_404(self, router: httpx.AsyncClient) -> None:
        assert (await router.get("/v1/tickets/no-such-ticket")).status_code == 404


class TestTransfers:
    async def test_transfer_moves_the_ticket_and_keeps_the_clock(
            self, router: httpx.AsyncClient, policy_pipeline: Pipeline) -> None:
        correlation_id = unique("corr")
        ticket_id = await post(router, "gov-ministry-1", correlation_id=correlation_id)
        [(original, _record)] = await queued(policy_pipeline, ticket_id, "public_sector")
        before = (await router.get(f"/v1/tickets/{ticket_id}")).json()
        response = await router.post(f"/v1/tickets/{ticket_id}/transfer", json={
            "to_department": "key_accounts", "reason": "needs the account manager",
            "from_department": "public_sector"})
        assert response.status_code == 202, response.text
        [(event, _record)] = await queued(policy_pipeline, ticket_id, "key_accounts")
        assert event.data["routing"]["reason"] == "transfer"
        # The same ticket, received when it was: the response clock keeps running.
        assert event.data["received_at"] == original.data["received_at"]
        after = (await router.get(f"/v1/tickets/{ticket_id}")).json()
        assert after["department"] == "key_accounts"
        assert after["first_response_deadline"] == before["first_response_deadline"]
        assert after["trace"][-1]["step"] == "transferred"
        transferred = await read_topic(policy_pipeline.bootstrap, topics.EVENTS, until=1,
                                       keep=lambda e: e.ticket_id == ticket_id
                                       and e.type == "ticket.transferred")
        assert transferred[0][0].data["from_department"] == "public_sector"
        # The correlation id the platform gave travels on through the handover.
        assert event.correlation_id == transferred[0][0].correlation_id == correlation_id

    async def test_transfer_to_an_unknown_department_is_refused(
            self, router: httpx.AsyncClient, policy_pipeline: Pipeline) -> None:
        ticket_id = await post(router, "gov-ministry-1")
        await queued(policy_pipeline, ticket_id, "public_sector")
        response = await router.post(f"/v1/tickets/{ticket_id}/transfer", json={
            "to_department": "nowhere", "reason": "x"})
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "body.to_department"


class TestEscalation:
    async def test_no_first_response_by_the_deadline_escalates_once(
            self, router: httpx.AsyncClient, policy_pipeline: Pipeline) -> None:
        correlation_id = unique("corr")
        late = await post(router, "ind-rising-1", correlation_id=correlation_id)  # target 3s
        answered = await post(router, "ind-rising-1")
        await queued(policy_pipeline, answered, "account_development")
        await router.post(f"/v1/tickets/{answered}/events", json={"type": "responded"})
        [(event, _record)] = await read_topic(
            policy_pipeline.bootstrap, *department_lanes("key_accounts"), until=1, within=30,
            settle=2.0, keep=lambda e: e.ticket_id == late)
        assert event.data["routing"]["reason"] == "escalation"
        # The escalation is published first, then recorded (at least once): the state may
        # follow its record by a moment.
        for _ in range(300):
            state = (await router.get(f"/v1/tickets/{late}")).json()
            if state["escalated"]:
                break
            await asyncio.sleep(0.1)
        assert (state["escalated"], state["department"]) == (True, "key_accounts")
        escalations = await read_topic(policy_pipeline.bootstrap, topics.EVENTS, until=2,
                                       within=3, keep=lambda e: e.type == "ticket.escalated"
                                       and e.ticket_id in (late, answered))
        assert [e.ticket_id for e, _ in escalations] == [late]  # once, and only the late one
        # The correlation id the platform gave travels on through the escalation.
        assert event.correlation_id == escalations[0][0].correlation_id == correlation_id


class TestOverflow:
    async def test_a_swamped_department_overflows_and_recovers(
            self, router: httpx.AsyncClient, policy_pipeline: Pipeline) -> None:
        first = [await post(router, unique("prospect")) for _ in range(4)]
        for ticket_id in first:
            await queued(policy_pipeline, ticket_id, "sales_support")
        gauge = 'routing_department_overflowing{department="sales_support"}'
        for _ in range(100):  # a load sample sees the backlog of 4 > 3
            if f"{gauge} 1.0" in (await router.get("/metrics")).text:
                break
            await asyncio.sleep(0.1)
        overflowed = await post(router, unique("prospect"))
        [(event, _record)] = await queued(policy_pipeline, overflowed, "customer_care")
        routing = event.data["routing"]
        assert (routing["reason"], routing["overflowed_from"]) == ("overflow", "sales_support")
        state = (await router.get(f"/v1/tickets/{overflowed}")).json()
        assert state["trace"][2]["overflowed_from"] == "sales_support"

        for ticket_id in first:  # the backlog drains below 3 * 0.5
            await router.post(f"/v1/tickets/{ticket_id}/events", json={"type": "resolved"})
        gauge = 'routing_department_overflowing{department="sales_support"}'
        for _ in range(100):
            if f"{gauge} 0.0" in (await router.get("/metrics")).text:
                break
            await asyncio.sleep(0.1)
        assert f"{gauge} 0.0" in (await router.get("/metrics")).text
        back = await post(router, unique("prospect"))
        [(event, _record)] = await queued(policy_pipeline, back, "sales_support")
        assert event.data["routing"]["reason"] == "route"


class TestIdempotentIntake:
    async def test_a_retried_post_gets_the_same_ticket_once(
            self, router: httpx.AsyncClient, policy_pipeline: Pipeline) -> None:
        key = unique("key")
        body = {"customer_id": "gov-ministry-1", "subject": "s", "body": "b", "channel": "web"}
        headers = {"Idempotency-Key": key, **policy_pipeline.headers()}
        answers = [await router.post("/v1/tickets", json=body, headers=headers)
                   for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 202]
        ticket_ids = {a.json()["ticket_id"] for a in answers}
        assert len(ticket_ids) == 1
        found = await read_topic(policy_pipeline.bootstrap, topics.INCOMING, until=1,
                                 settle=2.0, keep=lambda e: e.ticket_id in ticket_ids)
        assert len(found) == 1

    async def test_the_same_key_for_another_ticket_is_refused(
            self, router: httpx.AsyncClient, policy_pipeline: Pipeline) -> None:
        key = unique("key")
        headers = {"Idempotency-Key": key, **policy_pipeline.headers()}
        body = {"customer_id": "gov-ministry-1", "subject": "s", "body": "b", "channel": "web"}
        assert (await router.post("/v1/tickets", json=body,
                                  headers=headers)).status_code == 202
        other = await router.post("/v1/tickets", json={**body, "subject": "other"},
                                  headers=headers)
        assert other.status_code == 422
        assert other.json()["fields"][0]["field"] == "header.Idempotency-Key"


class TestTableReload:
    async def test_a_bad_table_is_refused_and_the_old_one_serves(
            self, router: httpx.AsyncClient) -> None:
        before = (await router.get("/v1/routing-table")).json()["version"]
        bad = TABLE.replace("department: public_sector", "department: Public Sector!")
        response = await router.put("/v1/routing-table", content=bad,
                                    headers={"content-type": "application/yaml"})
        assert response.status_code == 422
        error = response.json()
        bad_line = next(number for number, line in enumerate(bad.splitlines(), start=1)
                        if "Public Sector!" in line)
        assert error["line"] == bad_line
        assert error["file"] == "routing.yaml (upload)"  # not the server's directory
        assert "department" in error["problem"]
        in_force = (await router.get("/v1/routing-table")).json()
        assert in_force["version"] == before
        assert in_force["last_rejection"] is not None


class TestADepartmentGoneFromTheTable:
    async def test_its_waiting_ticket_escalates_to_the_fallback_department(
            self, router: httpx.AsyncClient, policy_pipeline: Pipeline) -> None:
        """A table without public_sector is put in force while a ticket waits there; at
        its breach the clock watch hands it to the fallback department, saying why. (A
        priority whose target is 1s brings the breach at once, whatever the time.)"""
        ticket_id = await post(router, "gov-ministry-1")
        await queued(policy_pipeline, ticket_id, "public_sector")
        without = TABLE.replace("version: policy-tests-1", "version: policy-tests-gone") \
            .replace("  - {segment: government, department: public_sector, priority: 2,"
                     " first_response_target: 4h}\n", "") \
            .replace("  public_sector: {}\n", "") \
            + "priority_targets: {1: {first_response_target: 1s}}\n"
        # The department holds the ticket: the removal is confirmed (force), as an admin
        # told so by the 409 would (tests/integration/test_routing_table_removals.py).
        put = await router.put("/v1/routing-table", content=without, params={"force": "true"},
                               headers={"content-type": "application/yaml"})
        assert put.status_code == 200, put.text
        assert "public_sector" not in put.json()["departments"]
        try:
            changed = await router.post(f"/v1/tickets/{ticket_id}/priority",
                                        json={"priority": 1, "reason": "urgent now"})
            assert changed.status_code == 200, changed.text
            [(event, record)] = await queued(policy_pipeline, ticket_id, "customer_care")
            assert event.data["routing"]["reason"] == "escalation"
            assert record.topic == "dept.customer_care.high"
            for _ in range(300):  # published first, then recorded
                state = (await router.get(f"/v1/tickets/{ticket_id}")).json()
                if state["department"] == "customer_care":
                    break
                await asyncio.sleep(0.1)
            step = state["trace"][-1]
            assert (state["department"], step["step"], step["from"], step["to"]) == (
                "customer_care", "escalated", "public_sector", "customer_care")
            assert f"public_sector is no longer in the routing table (version" \
                   f" {put.json()['version']}): to the fallback department customer_care" \
                   in step["reason"]
        finally:
            restored = await router.put("/v1/routing-table", content=TABLE,
                                        headers={"content-type": "application/yaml"})
            assert restored.status_code == 200, restored.text
