"""A generated week of tickets where the truth is known: arrivals, the routing table in
force, and departments whose agents take known mean service times. Routed by the real
routing decision with the true backlog; each department answers first come, first
served, while its calendar is open, with exponential service times drawn here (another
draw than the simulator's)."""

from __future__ import annotations

import heapq
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.router import calendars, overflow, routing, table_file
from services.simulator import engine, report, service

TABLE_TEXT = """\
version: simulated-1
fallback_department: care
defaults: {priority: 4, first_response_target: 2h}
routes:
  - {segment: business, department: business_desk, priority: 3, first_response_target: 1h}
  - {segment: consumer, department: care, first_response_target: 2h}
  - {segment: government, department: public_sector, first_response_target: 4h}
departments:
  business_desk:
    calendar: {time_zone: Europe/Amsterdam, hours: {mon-fri: "08:00-18:00"}}
    after_hours: pause
  care:
    overflow: {to: care_overflow, max_backlog: 4}
  care_overflow: {}
  public_sector: {escalation_to: care}
"""
# The candidate of the tests: government moves to care, whose load then grows.
CANDIDATE_TEXT = TABLE_TEXT.replace("simulated-1", "simulated-2").replace(
    "segment: government, department: public_sector", "segment: government, department: care")
TRUE_MEAN_SERVICE = {"business_desk": 300.0, "care": 420.0, "care_overflow": 480.0,
                     "public_sector": 1500.0}
SEGMENTS = (("business", 0.35), ("consumer", 0.5), ("government", 0.1), ("retail", 0.05))
AGE_BANDS = ("18-34", "35-54", "55+")
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
DAYS = 7
VIEW = {"kind": "question", "channel": "web", "language": "en", "attributes": {}}


@dataclass(frozen=True)
class History:
    table: routing.RoutingTable
    tickets: list[engine.HistoricTicket]
    start: datetime
    end: datetime

    @property
    def as_of(self) -> datetime:
        """Every response of the window is known by then."""
        return self.end + timedelta(days=30)


def arrivals_per_hour(at: datetime) -> float:
    return 9.0 if 7 <= at.hour < 19 else 2.5


def generate(seed: int = 1, days: int = DAYS) -> History:
    table = table_file.parse(TABLE_TEXT, "simulated history")
    draw = random.Random(seed)
    end = START + timedelta(days=days)
    agents: dict[str, list[datetime]] = {department: [] for department in table.departments}
    free_at: dict[str, datetime] = {}
    states: dict[str, overflow.OverflowState] = {}
    tickets: list[engine.HistoricTicket] = []
    now = START
    while True:
        now += timedelta(hours=draw.expovariate(arrivals_per_hour(now)))
        if now >= end:
            break
        for answers in agents.values():
            while answers and answers[0] <= now:
                heapq.heappop(answers)
        loads = {department: overflow.DepartmentLoad(backlog=len(answers))
                 for department, answers in agents.items()}
        states, _ = overflow.advance(states, loads, table.overflow_policies, now=now)
        segment = draw.choices([s for s, _ in SEGMENTS], [w for _, w in SEGMENTS])[0]
        decision = routing.decide(segment, "existing", VIEW, table, now=now, load=loads,
                                  overflow_state=states)
        department = decision.department
        start = max(now, free_at.get(department, now))
        service = timedelta(seconds=draw.expovariate(1 / TRUE_MEAN_SERVICE[department]))
        answer = calendars.deadline(start, service, table.policy(department).calendar)
        free_at[department] = answer
        heapq.heappush(agents[department], answer)
        groups = {"age_band": draw.choice(AGE_BANDS)}
        ticket_id = f"t{len(tickets):05d}"
        actual = engine.Served(
            ticket_id, department, segment, now, answer, decision.first_response_deadline,
            overflowed_from=decision.overflowed_from,
            escalated=answer > decision.first_response_deadline, groups=groups)
        tickets.append(engine.HistoricTicket(ticket_id, now, segment, "existing", VIEW,
                                             None, actual, groups))
    return History(table, tickets, START, end)


def draw(out: Path, *, days: int = 28) -> Path:
    """The README's picture: the candidate (government to care) over a generated month.

        .venv/bin/python -m tests.simulated_history docs/simulation.png
    """
    history = generate(seed=1, days=days)
    candidate = engine.Candidate(table_file.parse(CANDIDATE_TEXT, "candidate"))
    result = {"window": {"start": history.start.isoformat(), "end": history.end.isoformat()},
              "held": 0, "without_state": 0,  # every ticket has its state
              **service.replay(history.tickets, baseline=history.table, candidate=candidate,
                               replications=5, as_of=history.as_of)}
    return report.render(result, out=out)


if __name__ == "__main__":
    draw(Path(sys.argv[1]))
