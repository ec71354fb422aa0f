"""The department lanes the router could not make: a ticket routed to one is refused
(dead-lettered by the stage), the gauge on call reads names the department
(services/router/missing_lanes.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from aiokafka.errors import InvalidReplicationFactorError, NotControllerError
from prometheus_client import REGISTRY

from services.core import envelope, faults, kafka, tickets, topics
from services.router import missing_lanes, overflow, worker
from tests.unit import routing_tables

LANES_OF = {"public_sector": topics.lane_topics("public_sector"),
            "ghost_desk": topics.lane_topics("ghost_desk")}


def output(topic: str) -> kafka.Output:
    return kafka.Output(topic, "c-1", envelope.Event(type="ticket.routed", source="/test",
                                                     ticket_id="t-1", correlation_id="t-1",
                                                     data={}))


def missing_gauge(department: str) -> float | None:
    return REGISTRY.get_sample_value("routing_router_department_lanes_missing",
                                     {"department": department})


class TestALaneNotMade:
    def test_a_ticket_for_its_department_is_refused_naming_it_and_its_lanes(self) -> None:
        lanes = missing_lanes.MissingLanes()
        lanes.found({"dept.ghost_desk.high", "dept.ghost_desk"}, LANES_OF)
        with pytest.raises(faults.Unprocessable) as refused:
            lanes.refuse([output(topics.EVENTS), output("dept.ghost_desk")])
        assert faults.reason(refused.value) == (
            "department ghost_desk's lanes do not exist and the router could not make them"
            " (dept.ghost_desk.high, dept.ghost_desk): replay this dead letter once they do")
        assert lanes.departments == {"ghost_desk": ("dept.ghost_desk.high", "dept.ghost_desk")}
        assert missing_gauge("ghost_desk") == 1

    def test_a_ticket_for_another_department_goes_on(self) -> None:
        lanes = missing_lanes.MissingLanes()
        lanes.found({"dept.ghost_desk.low"}, LANES_OF)
        lanes.refuse([output(topics.EVENTS), output("dept.public_sector.high")])

    def test_lanes_made_since_are_no_longer_refused(self) -> None:
        lanes = missing_lanes.MissingLanes()
        lanes.found({"dept.ghost_desk.low"}, LANES_OF)
        lanes.found(set(), LANES_OF)
        lanes.refuse([output("dept.ghost_desk.low")])
        assert lanes.departments == {}
        assert missing_gauge("ghost_desk") == 0


class TestLanesRefusedForAMoment:
    def test_are_not_taken_for_missing(self) -> None:
        """A controller moving: its tickets wait, as for a broker down, and are sent
        once the next load sample made their lanes; a replication factor the brokers
        cannot give is refused until someone acts."""
        refused = kafka.TopicsNotMade({"dept.a": NotControllerError,
                                       "dept.b": InvalidReplicationFactorError})
        assert missing_lanes.not_made(refused) == {"dept.b"}


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[list[kafka.Publishable]] = []

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        self.published.append(list(outputs))


class TestAHandOver:
    async def test_to_a_department_whose_lanes_are_missing_publishes_nothing(self) -> None:
        """A transfer (409) or an escalation (checked again later) there: refused before
        it is published, where it waited for the lane as for a broker down."""
        lanes, publisher = missing_lanes.MissingLanes(), FakePublisher()
        lanes.found({"dept.ghost_desk"}, LANES_OF)
        with pytest.raises(missing_lanes.LanesMissing) as refused:
            await missing_lanes.Refusing(publisher, lanes).publish(
                [output("dept.ghost_desk"), output(topics.EVENTS)])
        assert (refused.value.department, refused.value.lanes) == (
            "ghost_desk", ("dept.ghost_desk",))
        assert str(refused.value) == (
            "department ghost_desk's lanes do not exist and the router could not make them"
            " (dept.ghost_desk): nothing is handed on to it until they do")
        assert publisher.published == []

    async def test_to_another_department_is_published(self) -> None:
        lanes, publisher = missing_lanes.MissingLanes(), FakePublisher()
        lanes.found({"dept.ghost_desk"}, LANES_OF)
        outputs = [output("dept.public_sector.high"), output(topics.EVENTS)]
        await missing_lanes.Refusing(publisher, lanes).publish(outputs)
        assert publisher.published == [outputs]


OVERFLOWING = routing_tables.parse(
    "fallback_department: customer_care\nroutes:\n  - {segment: standard, department:"
    " customer_care}\ndepartments:\n  sales_support: {}\n"
    "  customer_care:\n    overflow: {to: sales_support, max_backlog: 100}\n")


class TestAnOverflow:
    async def test_hands_the_router_stages_ticket_to_no_department_whose_lanes_are_missing(
            self) -> None:
        """customer_care overflowing: its ticket stays there, where handed to
        sales_support it would be dead-lettered."""
        lanes = missing_lanes.MissingLanes()
        lanes.found(set(topics.lane_topics("sales_support")),
                    {"sales_support": topics.lane_topics("sales_support")})
        route = worker.RouteTicket(lambda: OVERFLOWING, lanes=lanes, load=lambda: (
            {"customer_care": overflow.DepartmentLoad(backlog=120)}, {}))
        ticket = tickets.SegmentedTicket(
            ticket_id="t-1", customer_id="c-1", subject="s", body="b", channel="email",
            received_at=datetime.now(UTC), segmentation=tickets.Segmentation(
                segment="standard", rule="r", rules_version="v", customer_known=True,
                tier="existing"))
        event = envelope.Event(type="ticket.segmented", source="/test", ticket_id="t-1",
                               correlation_id="t-1", data=ticket.model_dump(mode="json"))
        await route.prefetch([event])
        queued, _routed = await route(event)
        assert queued.topic in topics.lane_topics("customer_care")
