"""The departments in a replay: the service time measured for each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.router import table_file
from services.simulator import engine, rates, service
from tests import simulated_history


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

