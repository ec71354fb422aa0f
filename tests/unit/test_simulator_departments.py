"""The departments in a replay: the service time measured for each, and the lag an
overflow reads, as the router reads it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.router import priority, routing, table_file
from services.simulator import engine, lanes, rates, service
from tests import simulated_history

RATE_WINDOW = timedelta(hours=1)


def historic(ticket_id: str, department: str, received: datetime,
             answered: datetime) -> engine.HistoricTicket:
    actual = engine.Served(ticket_id, department, "consumer", received, answered,
                           received + timedelta(days=1), None, escalated=False)
    return engine.HistoricTicket(ticket_id, received, "consumer", "existing",
                                 simulated_history.VIEW, None, actual)


class TestDepartmentAnsweringInNoBusinessTime:
    """Three tickets received and answered on a Sunday morning by a department open on
    weekdays: it answered them in no business time at all."""

    TABLE = """\
version: weekdays
fallback_department: customer_care
defaults: {priority: 4, first_response_target: 2h}
routes:
  - {segment: consumer, department: customer_care}
departments:
  customer_care:
    calendar: {time_zone: UTC, hours: {mon-fri: "09:00-17:00"}}
"""
    SUNDAY = datetime(2026, 3, 1, 10, tzinfo=UTC)

    def sunday(self) -> list[engine.HistoricTicket]:
        return [historic(f"s{n}", "customer_care", self.SUNDAY + timedelta(minutes=10 * n),
                         self.SUNDAY + timedelta(minutes=10 * n + 10)) for n in range(3)]

    @pytest.mark.parametrize("weekdays", [True, False])
    def test_is_measured_at_a_second_per_first_response(self, weekdays: bool) -> None:
        table = table_file.parse(self.TABLE, "table")
        actual = [t.actual for t in self.sunday()]
        if not weekdays:  # open all hours, answering each ticket the instant it came
            actual = [historic(t.ticket_id, t.department, t.received_at,
                               t.received_at).actual for t in actual]
        measured = rates.mean_service_seconds(
            actual, lambda department: table.policy(department).calendar if weekdays
            else None)
        assert measured == {"customer_care": 1.0}

    def test_is_replayed_answering_its_tickets_once_open(self) -> None:
        table = table_file.parse(self.TABLE, "table")
        result = service.replay(self.sunday(), baseline=table,
                                candidate=engine.Candidate(table), replications=2,
                                as_of=self.SUNDAY + timedelta(days=7))
        assert result["mean_service_seconds"] == {"customer_care": 1.0}
        [care] = result["departments"]
        assert (care["simulated"]["met"], care["simulated"]["escalations"]) == (3, 0)


def all_lanes(*departments: str) -> dict[str, tuple[str, ...]]:
    """Every lane of each department missing, as the router's lane check finds them
    (missing_lanes.MissingLanes.departments) when none could be made."""
    return {department: tuple(priority.lane_topics(department)) for department in departments}


class TestDepartmentsWhoseLanesAreMissing:
    """The router could not make their lanes (services/router/missing_lanes.py): the
    replay hands them no ticket, after hours or overflowing, by the router's own rule
    (routing.decide's `lanes_missing`), as the router hands them none now; the answer
    names them, with the tickets they changed (lanes.py)."""

    TABLE = TestDepartmentAnsweringInNoBusinessTime.TABLE + (
        "    after_hours: {route_to: night_desk}\n  night_desk: {}\n")
    SUNDAY = TestDepartmentAnsweringInNoBusinessTime.SUNDAY

    def replay(self, lanes_missing: dict[str, tuple[str, ...]],
               replications: int = 1) -> dict[str, Any]:
        table = table_file.parse(self.TABLE, "table")
        return service.replay(TestDepartmentAnsweringInNoBusinessTime().sunday(),
                              baseline=table, candidate=engine.Candidate(table),
                              replications=replications,
                              as_of=self.SUNDAY + timedelta(days=7),
                              lanes_missing=lanes_missing)

    def departments(self, lanes_missing: dict[str, tuple[str, ...]]) -> set[str]:
        return {row["department"] for row in self.replay(lanes_missing)["departments"]
                if row["simulated"]["received"]}

    def test_a_closed_department_keeps_its_tickets_after_hours(self) -> None:
        assert self.departments(all_lanes("night_desk")) == {"customer_care"}

    def test_with_their_lanes_made_it_hands_them_on(self) -> None:
        assert self.departments({}) == {"night_desk"}

    def test_an_overflowing_department_keeps_its_tickets(self) -> None:
        table = TestLagOverflow().table("{to: care_overflow, max_lag: 5}")
        run = engine.replicate(
            TestLagOverflow().minute_apart(60, datetime(2026, 11, 2, 9, tzinfo=UTC)),
            engine.Candidate(table), mean_service={"care": 3600, "care_overflow": 3600},
            rate_window=RATE_WINDOW, seed=1, lanes_missing=all_lanes("care_overflow"))
        assert {t.department for t in run.served} == {"care"}
        kept = sum(t.department != "care" for t in engine.replicate(
            TestLagOverflow().minute_apart(60, datetime(2026, 11, 2, 9, tzinfo=UTC)),
            engine.Candidate(table), mean_service={"care": 3600, "care_overflow": 3600},
            rate_window=RATE_WINDOW, seed=1).served)
        assert kept > 0
        assert run.affected == (lanes.Affected("care_overflow", "not_overflowed"),) * kept


class TestTheAnswerAccountsForMissingLanes:
    """The answer's `lanes_missing`: the departments found missing lanes when the
    simulation ran, said to be applied to every replayed ticket, each with the tickets it
    changed, the mean per replication."""

    SIMULATION = TestDepartmentsWhoseLanesAreMissing()

    def test_none_missing_names_none(self) -> None:
        assert self.SIMULATION.replay({})["lanes_missing"] == {
            "found": lanes.FOUND, "departments": []}

    def test_the_found_say_when_and_to_which_tickets(self) -> None:
        assert "when the simulation ran" in lanes.FOUND
        assert "applied to every replayed ticket" in lanes.FOUND

    def test_tickets_kept_rather_than_handed_after_hours(self) -> None:
        missing = all_lanes("night_desk")
        answer = self.SIMULATION.replay(missing, replications=2)["lanes_missing"]
        assert answer["departments"] == [{
            "department": "night_desk", "lanes": missing["night_desk"],
            "not_handed_after_hours": 3.0, "not_overflowed": 0.0, "dead_lettered": 0.0}]

    def test_tickets_routed_to_a_missing_lane_are_counted_dead_lettered(self) -> None:
        """customer_care keeps its Sunday tickets, as night_desk's lanes are missing; its
        own are missing too: the router dead-letters them, so no department receives
        them, nor does their segment count them, in the replay."""
        answer = self.SIMULATION.replay(all_lanes("night_desk", "customer_care"))
        rows = {row["department"]: row for row in answer["lanes_missing"]["departments"]}
        assert (rows["customer_care"]["dead_lettered"],
                rows["night_desk"]["not_handed_after_hours"]) == (3.0, 3.0)
        assert {row["department"]: (row["actual"]["received"], row["simulated"]["received"])
                for row in answer["departments"]} == {"customer_care": (3, 0)}
        assert [(row["segment"], row["simulated"]["received"])
                for row in answer["segments"]] == [("consumer", 0)]
        assert answer["tickets"] == 3

    def test_only_the_lanes_missing_dead_letter(self) -> None:
        """A department missing some of its lanes: a ticket in another of them goes
        through, as the router's stage refuses only what goes to a missing lane."""
        table = table_file.parse(self.SIMULATION.TABLE, "table")
        lane = routing.decide("consumer", "existing", simulated_history.VIEW, table,
                              now=self.SIMULATION.SUNDAY,
                              lanes_missing={"night_desk"}).queue_topic
        others = tuple(topic for topic in priority.lane_topics("customer_care")
                       if topic != lane)
        for missing, dead_lettered in (((lane,), 3.0), (others, 0.0)):
            answer = self.SIMULATION.replay({**all_lanes("night_desk"),
                                             "customer_care": missing})
            rows = {row["department"]: row for row in answer["lanes_missing"]["departments"]}
            assert (rows["customer_care"]["lanes"], rows["customer_care"]["dead_lettered"]) \
                == (missing, dead_lettered)
            [care] = answer["departments"]
            assert care["simulated"]["received"] == 3 - dead_lettered


class TestLagOverflow:
    """The lag the router reads, of a department's lanes not yet taken by its agents, is
    in the replay the department's tickets not yet taken: not yet started."""

    def table(self, overflow: str, calendar: str | None = None) -> routing.RoutingTable:
        care = f"calendar: {calendar}\n    " if calendar else ""
        return table_file.parse(simulated_history.TABLE_TEXT.replace(
            "care:\n    overflow: {to: care_overflow, max_backlog: 4}",
            f"care:\n    {care}overflow: {overflow}"), "table")

    def minute_apart(self, count: int, start: datetime) -> list[engine.HistoricTicket]:
        return [historic(f"c{n:02d}", "care", start + timedelta(minutes=n),
                         start + timedelta(minutes=n + 1)) for n in range(count)]

    def test_an_overflow_on_lag_alone_hands_on_once_tickets_queue(self) -> None:
        # 60 tickets in an hour to a department answering one an hour: all but the first
        # wait to be taken, and past five waiting, care hands new ones on.
        table = self.table("{to: care_overflow, max_lag: 5}")
        run = engine.replicate(self.minute_apart(60, datetime(2026, 11, 2, 9, tzinfo=UTC)),
                               engine.Candidate(table),
                               mean_service={"care": 3600, "care_overflow": 3600},
                               rate_window=RATE_WINDOW, seed=1)
        handed = [t for t in run.served if t.overflowed_from == "care"]
        assert len(handed) > 40
        assert all(t.department == "care_overflow" for t in handed)
        assert not any(t.overflowed_from for t in run.served[:7])

    def test_tickets_waiting_for_the_calendar_to_open_are_not_taken(self) -> None:
        # A Sunday: care is closed, so none of its tickets is taken, however fast it is.
        table = self.table("{to: care_overflow, max_lag: 2}",
                           calendar='{time_zone: UTC, hours: {mon-fri: "09:00-17:00"}}')
        run = engine.replicate(self.minute_apart(5, datetime(2026, 11, 1, 10, tzinfo=UTC)),
                               engine.Candidate(table),
                               mean_service={"care": 60, "care_overflow": 60},
                               rate_window=RATE_WINDOW, seed=1)
        assert [t.ticket_id for t in run.served if t.overflowed_from == "care"] == [
            "c03", "c04"]


class TestServiceTimeFromTheRouting:
    def test_a_department_is_busy_from_the_routing_of_its_tickets_not_their_receipt(
            self) -> None:
        """What a department's backlog counts (Served.in_backlog): it could not answer
        before the router handed it the tickets, here half an hour late."""
        nine = datetime(2026, 11, 2, 9, tzinfo=UTC)
        actual = [replace(historic(f"t{n}", "care", nine + timedelta(minutes=10 * n),
                                   nine + timedelta(minutes=40 + 10 * n)).actual,
                          routed_at=nine + timedelta(minutes=30)) for n in range(2)]
        # Busy from 9:30 to 9:50, for two first responses.
        assert rates.mean_service_seconds(actual, lambda department: None) == {
            "care": 600.0}
