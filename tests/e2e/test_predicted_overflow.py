"""Overflow on a predicted first-response breach, on the real pipeline: a department that
answers slowly hands its new tickets on before its backlog reaches its maximum, because
its backlog at the rate it has been answering would keep a new ticket waiting too long;
it takes them again once it has caught up. Its answers are reported over HTTP, as a
department reports them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Pipeline, demo_pipeline, department_lanes, read_topic, unique

# Unknown customers are potential customers: sales_support. With a backlog maximum far
# above what the test queues, only the prediction can make it overflow.
TABLE = """
version: predicted-overflow-1
fallback_department: customer_care
defaults: {priority: 4, first_response_target: 1d}
routes:
  - {segment: potential, department: sales_support, priority: 3, first_response_target: 4h}
departments:
  sales_support:
    overflow: {to: customer_care, max_backlog: 20, max_predicted_first_response: 2h,
               resume_below: 0.5}
  customer_care: {}
"""
GAUGE = 'routing_department_overflowing{department="sales_support"}'


@pytest.fixture(scope="module")
def slow_pipeline(kafka_bootstrap: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("predicted-overflow"),
                       customers=50, table=TABLE,
                       extra_env={"LOAD_SAMPLE_SECONDS": "0.3"}) as running:
        yield running


@pytest.fixture
async def router(slow_pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=slow_pipeline.url("router"), timeout=20,
                                 headers=slow_pipeline.headers("admin")) as client:
        yield client


async def post(router: httpx.AsyncClient, pipeline: Pipeline) -> str:
    response = await router.post("/v1/tickets", headers=pipeline.headers("platform"), json={
        "customer_id": unique("prospect"), "subject": "s", "body": "b", "channel": "web"})
    assert response.status_code == 202, response.text
    ticket_id: str = response.json()["ticket_id"]
    return ticket_id


async def routed(pipeline: Pipeline, ticket_id: str) -> dict[str, Any]:
    """The ticket's routing part, once it is in a lane of either department."""
    [(event, _record)] = await read_topic(
        pipeline.bootstrap, *department_lanes("sales_support", "customer_care"), until=1,
        keep=lambda e: e.ticket_id == ticket_id)
    routing: dict[str, Any] = event.data["routing"]
    return routing


async def respond(router: httpx.AsyncClient, ticket_id: str) -> None:
    response = await router.post(f"/v1/tickets/{ticket_id}/events",
                                 json={"type": "responded"})
    assert response.status_code == 202, response.text


async def all_responded(router: httpx.AsyncClient, tickets: list[str]) -> bool:
    for _ in range(100):
        states = [(await router.get(f"/v1/tickets/{ticket_id}")).json()["status"]
                  for ticket_id in tickets]
        if all(state == "responded" for state in states):
            return True
        await asyncio.sleep(0.2)
    return False


async def overflowing_becomes(router: httpx.AsyncClient, value: int) -> bool:
    for _ in range(300):  # the router samples the load every 0.3s
        if f"{GAUGE} {value:.1f}" in (await router.get("/metrics")).text:
            return True
        await asyncio.sleep(0.1)
    return False


class TestPredictedFirstResponseOverflow:
    async def test_a_slow_department_overflows_before_its_backlog_limit_and_recovers(
            self, router: httpx.AsyncClient, slow_pipeline: Pipeline) -> None:
        waiting = [await post(router, slow_pipeline) for _ in range(4)]
        for ticket_id in waiting:
            assert (await routed(slow_pipeline, ticket_id))["department"] == "sales_support"

        # One first response in the last hour, three still open: 3h predicted, over 2h,
        # with a backlog of 3 where the maximum is 20.
        await respond(router, waiting[0])
        assert await overflowing_becomes(router, 1)
        handed_on = await post(router, slow_pipeline)
        routing = await routed(slow_pipeline, handed_on)
        assert (routing["department"], routing["reason"], routing["overflowed_from"]) \
            == ("customer_care", "overflow", "sales_support")
        assert "sales_support: predicted first response 3h (3 open ahead, 1 first" \
            " responses in the last 1h)" in routing["explanation"]
        # Overflowing since the load sample that saw it, on the prediction alone.
        assert "sales_support still overflowing: predicted first response 3h not yet below" \
            " 1h: overflow to customer_care" in routing["explanation"]
        state = (await router.get(f"/v1/tickets/{handed_on}")).json()
        assert state["trace"][2]["overflowed_from"] == "sales_support"

        # Caught up: nothing open ahead, no wait predicted.
        for ticket_id in waiting[1:]:
            await respond(router, ticket_id)
        assert await overflowing_becomes(router, 0)
        # Overflow ends below 1h already; wait until the router holds every response
        # and has sampled the load since, so that nothing is open ahead.
        assert await all_responded(router, waiting)
        await asyncio.sleep(1.0)  # more than three load samples (0.3 s)
        back = await post(router, slow_pipeline)
        routing = await routed(slow_pipeline, back)
        assert (routing["department"], routing["reason"]) == ("sales_support", "route")
        assert "sales_support: predicted first response 0m (no open tickets ahead)" \
            in routing["explanation"]
