"""The department lanes the router could not make: a ticket routed to one is refused
(dead-lettered by the stage), the gauge on call reads names the department
(services/router/missing_lanes.py)."""

from __future__ import annotations

import pytest
from aiokafka.errors import InvalidReplicationFactorError, NotControllerError
from prometheus_client import REGISTRY

from services.core import envelope, faults, kafka, topics
from services.router import missing_lanes

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
