"""A department's lanes keep every copy of a ticket written to them; the department tool
(run as a department runs it, a process, against the real pipeline) gives out only the
copy where the ticket waits now, as the router says: not the copy of a ticket resolved
since, nor of one handed on since, and of a ticket handed back only its newer copy. Each
copy it skips is reported on stderr with its ticket and why, and committed past."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.router import lane_copies
from tests.conftest import Pipeline, demo_pipeline, department_lanes, read_topic, unique

# This module's tickets (an attribute of their own) go to home_desk; away_desk takes
# transfers. Any other ticket on the session's broker (other tests write to the
# pipeline's topics) goes elsewhere.
TABLE = """
version: lane-copies-1
fallback_department: elsewhere_desk
defaults: {priority: 3, first_response_target: 1d}
routes:
  - segment: potential
    department: elsewhere_desk
    refinements:
      - {name: this-module, when: '"lane_copies" in ticket.attributes', department: home_desk}
departments:
  home_desk: {}
  away_desk: {}
  elsewhere_desk: {}
"""
HOME, AWAY = "home_desk", "away_desk"


@pytest.fixture(scope="module")
def copies_pipeline(kafka_bootstrap: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with demo_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("lane-copies"), customers=20,
                       table=TABLE) as running:
        yield running


@dataclass
class Desk:
    pipeline: Pipeline
    client: httpx.AsyncClient

    def as_(self, department: str | None) -> dict[str, str]:
        return self.pipeline.headers("admin") if department is None \
            else self.pipeline.headers("department", department)

    async def routed_home(self) -> str:
        answer = await self.client.post("/v1/tickets", json={
            "customer_id": unique("prospect"), "subject": "s", "body": "b",
            "channel": "web", "attributes": {"lane_copies": True}},
            headers=self.pipeline.headers())
        assert answer.status_code == 202, answer.text
        ticket_id: str = answer.json()["ticket_id"]
        await self.copies(ticket_id, HOME, count=1)
        return ticket_id

    async def copies(self, ticket_id: str, department: str, *, count: int) -> list[str]:
        """Wait until `count` copies of the ticket are in the department's lanes; their
        `routed_at`."""
        found = await read_topic(self.pipeline.bootstrap, *department_lanes(department),
                                 until=count, within=60,
                                 keep=lambda event: event.ticket_id == ticket_id)
        assert len(found) == count, found
        return [event.data["routing"]["routed_at"] for event, _record in found]

    async def transfer(self, ticket_id: str, source: str, to: str) -> None:
        answer = await self.client.post(f"/v1/tickets/{ticket_id}/transfer", json={
            "to_department": to, "reason": "theirs"}, headers=self.as_(source))
        assert answer.status_code == 202, answer.text
        await self.copies(ticket_id, to, count=2 if to == HOME else 1)

    async def resolve(self, ticket_id: str) -> None:
        answer = await self.client.post(f"/v1/tickets/{ticket_id}/events",
                                        json={"type": "resolved"}, headers=self.as_(HOME))
        assert answer.status_code == 202, answer.text
        # The router's follower records the report; wait for it (bounded).
        for _ in range(300):
            state = await self.client.get(f"/v1/tickets/{ticket_id}", headers=self.as_(None))
            if state.json()["status"] == "resolved":
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"{ticket_id} not recorded resolved")

    async def lane_copy(self, ticket_id: str, department: str, routed_at: str,
                        caller: str | None) -> httpx.Response:
        return await self.client.get(
            f"/v1/tickets/{ticket_id}/lane-copy",
            params={"department": department, "routed_at": routed_at},
            headers=self.as_(caller))


@pytest.fixture
async def desk(copies_pipeline: Pipeline) -> AsyncIterator[Desk]:
    async with httpx.AsyncClient(base_url=copies_pipeline.url("router"),
                                 timeout=10) as client:
        yield Desk(copies_pipeline, client)


async def department_queue(pipeline: Pipeline, department: str) -> tuple[list[Any], str]:
    """The tickets the tool gives out (JSON), and its stderr."""
    token = pipeline.headers("department", department)["Authorization"].removeprefix(
        "Bearer ")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap,
           "ROUTER_URL": pipeline.url("router"), "LOG_FORMAT": "text", "API_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.departments.cli", "queue", department, "--json",
        "--max", "20", "--wait", "3", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line], err.decode()


async def test_the_tool_gives_out_only_the_copies_where_their_tickets_wait(
        desk: Desk) -> None:
    resolved, handed_on, handed_back, waiting = [await desk.routed_home() for _ in range(4)]
    await desk.resolve(resolved)
    await desk.transfer(handed_on, HOME, AWAY)
    await desk.transfer(handed_back, HOME, AWAY)
    await desk.transfer(handed_back, AWAY, HOME)
    first_copy, newer_copy = await desk.copies(handed_back, HOME, count=2)

    given, told = await department_queue(desk.pipeline, HOME)

    # The lanes have three partitions: the order between them is the fetch's.
    assert sorted((t["ticket_id"], t["routing"]["routed_at"]) for t in given) == sorted([
        (waiting, (await desk.copies(waiting, HOME, count=1))[0]),
        (handed_back, newer_copy)])
    skipped = [line for line in told.splitlines() if line.startswith("skipped")]
    assert sorted(line.split(": ", 1)[1] for line in skipped) == sorted([
        f"ticket {resolved} resolved since it was queued",
        f"ticket {handed_on} handed on to another department since it was queued",
        f"ticket {handed_back} queued again since: its newer copy comes later"]), told

    given, told = await department_queue(desk.pipeline, AWAY)
    assert [t["ticket_id"] for t in given] == [handed_on]
    assert f"ticket {handed_back} handed on to another department" in told
    assert first_copy != newer_copy


class TestTheRoutersWord:
    async def test_a_copy_s_state_for_the_department_whose_lane_has_it(
            self, desk: Desk) -> None:
        ticket_id = await desk.routed_home()
        await desk.transfer(ticket_id, HOME, AWAY)
        [home_copy] = await desk.copies(ticket_id, HOME, count=1)
        [away_copy] = await desk.copies(ticket_id, AWAY, count=1)

        for caller in (HOME, None):  # the department's own credential, an admin's
            answer = await desk.lane_copy(ticket_id, HOME, home_copy, caller)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"ticket_id": ticket_id, "department": HOME,
                                     "state": lane_copies.CopyState.HANDED_ON}
        answer = await desk.lane_copy(ticket_id, AWAY, away_copy, AWAY)
        assert answer.json()["state"] == lane_copies.CopyState.WAITING

    async def test_another_department_learns_nothing_and_bad_input_is_named(
            self, desk: Desk) -> None:
        ticket_id = await desk.routed_home()
        [copy] = await desk.copies(ticket_id, HOME, count=1)

        other = await desk.lane_copy(ticket_id, HOME, copy, AWAY)
        assert other.status_code == 403, other.text
        # Never queued for away_desk: as unknown as a ticket that does not exist.
        never = await desk.lane_copy(ticket_id, AWAY, copy, AWAY)
        unknown = await desk.lane_copy(unique("nothing"), AWAY, copy, AWAY)
        # Nor of a copy it never had (another moment): the ticket's later life stays its.
        other_moment = (datetime.fromisoformat(copy) - timedelta(seconds=1)).isoformat()
        another = await desk.lane_copy(ticket_id, HOME, other_moment, HOME)
        for answer in (never, unknown, another):
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"] == lane_copies.COPY_NOT_KNOWN

        without_offset = datetime.fromisoformat(copy).replace(tzinfo=None).isoformat()
        for routed_at in (without_offset, "0", "0001-01-01T00:00:00+01:00"):
            refused = await desk.lane_copy(ticket_id, HOME, routed_at, HOME)
            assert refused.status_code == 422, (routed_at, refused.text)
            assert "routed_at" in refused.text
