"""The whole pipeline on a real broker: HTTP intake -> segmenter -> router -> department
queues -> response-time metrics, with customers of several segments."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx

from services.departments import queue
from tests.conftest import Pipeline, department_lanes, read_topic

# customer -> (segment, department), from config/segments.yaml, config/routing.yaml and
# the demo store's well-known customers: every tier, and the fallback department.
EXPECTED = {
    "gov-ministry-1": ("government", "public_sector"),
    "org-acme-1": ("business", "business_desk"),
    "ind-vip-1": ("key_accounts", "key_accounts"),  # most_valuable
    "ind-rising-1": ("growth", "account_development"),  # most_growable
    "ind-loyal-1": ("general", "customer_care"),  # existing; no route: the fallback
    "ind-new-1": ("potential", "sales_support"),  # potential: known, never bought
    "never-seen-42": ("potential", "sales_support"),  # potential: unknown to the store
}
TIERS = {"ind-vip-1": "most_valuable", "ind-rising-1": "most_growable",
         "ind-loyal-1": "existing", "ind-new-1": "potential", "never-seen-42": "potential"}


def histogram_count(metrics_text: str, name: str, department: str, segment: str) -> float:
    pattern = re.compile(
        rf'^{name}_count{{department="{department}",segment="{segment}"}} (\S+)$', re.M)
    match = pattern.search(metrics_text)
    return float(match.group(1)) if match else 0.0


async def test_tickets_reach_their_department_once_and_responses_are_measured(
        pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        before = (await client.get(f"{pipeline.url('metrics')}/metrics")).text
        posted: dict[str, str] = {}
        for customer in EXPECTED:
            for n in range(2):
                response = await client.post(f"{pipeline.url('router')}/v1/tickets", json={
                    "customer_id": customer, "subject": f"Question {n}", "body": "Hello",
                    "channel": "web", "kind": "question"}, headers=pipeline.headers())
                assert response.status_code == 202, response.text
                posted[response.json()["ticket_id"]] = customer

        # Read every department queue with an independent client.
        departments = sorted({department for _, department in EXPECTED.values()})
        found = await read_topic(pipeline.bootstrap, *department_lanes(*departments),
                                 until=len(posted), keep=lambda e: e.ticket_id in posted)
        arrived: Counter[tuple[str, str]] = Counter()
        for event, record in found:
            department = record.topic.split(".")[1]  # type: ignore[attr-defined]
            arrived[(event.ticket_id, department)] += 1
            assert event.data["segmentation"]["segment"] == EXPECTED[posted[event.ticket_id]][0]
            assert event.data["routing"]["department"] == department
            customer = posted[event.ticket_id]
            if customer in TIERS:
                assert event.data["segmentation"]["tier"] == TIERS[customer]
            expected_reason = "fallback" if department == "customer_care" else "route"
            assert event.data["routing"]["reason"] == expected_reason

        for ticket_id, customer in posted.items():
            department = EXPECTED[customer][1]
            assert arrived[(ticket_id, department)] == 1, (customer, department)
        assert sum(arrived.values()) == len(posted), "a ticket arrived in a wrong queue"

        # Departments respond through the department tool's library.
        for ticket_id, customer in posted.items():
            department = EXPECTED[customer][1]
            token = pipeline.headers("department", department)["Authorization"].split()[1]
            receipt = await asyncio.to_thread(queue.report, pipeline.url("router"), ticket_id,
                                              "responded", department=department, token=token)
            assert receipt["status"] == "accepted"

        expected_counts = Counter(EXPECTED[c] for c in posted.values())
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            after = (await client.get(f"{pipeline.url('metrics')}/metrics")).text
            grown = {
                (segment, department): histogram_count(after, "routing_first_response_seconds",
                                                       department, segment)
                - histogram_count(before, "routing_first_response_seconds", department, segment)
                for segment, department in expected_counts
            }
            if grown == dict(expected_counts) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.3)
        assert grown == dict(expected_counts)

        stats = (await client.get(
            f"{pipeline.url('metrics')}/v1/departments/public_sector/stats",
            params={"window": "1h"},
            headers=pipeline.headers("department", "public_sector"))).json()
        assert stats["responded"] >= 2
        assert stats["first_response_seconds"]["p50"] is not None


async def test_a_customer_reply_right_after_the_202_is_taken_once_the_ticket_is_routed(
        pipeline: Pipeline) -> None:
    """A platform reports a customer's reply at once on each ticket it posted: before the
    ticket is routed it is told to come again (409 `not_routed_yet` with Retry-After),
    never 404; sent again after the wait it asks, the reply is taken."""
    router, headers = pipeline.url("router"), pipeline.headers()
    async with httpx.AsyncClient(base_url=router, timeout=10) as client:
        for customer in ("gov-ministry-1", "org-acme-1", "never-seen-42"):
            posted = await client.post("/v1/tickets", headers=headers, json={
                "customer_id": customer, "subject": "Invoice", "body": "Where is it?",
                "channel": "email"})
            assert posted.status_code == 202, posted.text
            ticket_id = posted.json()["ticket_id"]
            answers: list[int] = []
            for _ in range(10):  # each try after the wait the router asks for
                answer = await client.post(f"/v1/tickets/{ticket_id}/customer-replies",
                                           json={}, headers=headers)
                answers.append(answer.status_code)
                if answer.status_code != 409:
                    break
                assert answer.json()["error"] == "not_routed_yet", answer.text
                await asyncio.sleep(int(answer.headers["Retry-After"]))
            assert answers[-1] == 202 and set(answers) <= {409, 202}, (answers, answer.text)


async def test_unknown_customer_is_potential_not_an_error(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = (await client.get(
            f"{pipeline.url('segmenter')}/v1/customers/nobody-knows-me/segment",
            params={"explain": "true"}, headers=pipeline.headers("admin"))).json()
    assert answer["segment"] == "potential"
    assert answer["customer_known"] is False
    assert answer["tier"] == "potential"


async def test_no_personal_data_in_logs_or_metric_labels(pipeline: Pipeline) -> None:
    """Tickets carry personal data in their text; the store holds names, e-mails, birth
    dates and gender. None of it may reach a log line or a metric label."""
    from devtools import demo

    secrets = {"name": "Henrietta Quaglione", "email": "henrietta.q@private.example",
               "phone": "+31 6 9876 5432", "birth": "1961-07-04",
               "gender": "two-spirit"}  # as the customer put it: a text no log holds else
    async with httpx.AsyncClient(timeout=10) as client:
        segmenter = pipeline.url("segmenter")
        assert (await client.put(f"{segmenter}/v1/customers/pii-probe-1", json={
            "customer_type": "individual", "name": secrets["name"], "email": secrets["email"],
            "birth_date": secrets["birth"], "gender": secrets["gender"]},
            headers=pipeline.headers("admin"))).status_code == 201
        posted = []
        for kind in ("question", "complaint"):
            response = await client.post(f"{pipeline.url('router')}/v1/tickets", json={
                "customer_id": "pii-probe-1", "channel": "email", "kind": kind,
                "subject": f"From {secrets['name']}",
                "body": f"Call me on {secrets['phone']} or mail {secrets['email']};"
                        f" born {secrets['birth']}.",
                "attributes": {"contact": secrets["email"]}}, headers=pipeline.headers())
            assert response.status_code == 202
            posted.append(response.json()["ticket_id"])
        await client.post(f"{pipeline.url('router')}/v1/tickets", content=b'{"broken',
                          headers={"content-type": "application/json", **pipeline.headers()})
        found = await read_topic(pipeline.bootstrap, *department_lanes("sales_support"),
                                 until=2, keep=lambda e: e.ticket_id in posted)
        assert len(found) == 2  # the tickets went through, text and all
        metrics = "".join([(await client.get(f"{pipeline.url(name)}/metrics")).text
                           for name in ("router", "segmenter", "metrics")])
    logs = pipeline.logs()
    assert "ticket accepted" in logs  # the logs are there to be searched
    demo_names = [g.customer["name"] for g in demo.generate(20)]
    for label, value in [*secrets.items(), *(("demo name", n) for n in demo_names)]:
        assert value not in logs, f"{label} found in the logs"
        assert value not in metrics, f"{label} found in the metrics"
