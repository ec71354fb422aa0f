"""The routing simulator's stated error, measured: generated months whose truth is known
(tests/simulated_history.py), each replayed with the table in force and the service
times measured from its history, as the simulator replays a real one. Prints, per month,
the worst department's error (tickets received, first-response p50 and p90, share of
targets met in points) and, over the months, the worst and the median of each.

    .venv/bin/python -m bench.replay_accuracy [--months 10] [--replications 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

from services.simulator import engine, rates, summary
from tests import simulated_history

RATE_WINDOW = timedelta(hours=1)  # as the simulator measures rates
DAYS = 28  # a month: four weeks, as TestReplayOfTheVersionInForce replays one


def month_error(seed: int, replications: int) -> tuple[summary.ReplayError, int]:
    history = simulated_history.generate(seed=seed, days=DAYS)
    actual = [ticket.actual for ticket in history.tickets]
    measured = rates.mean_service_seconds(
        actual, lambda department: history.table.policy(department).calendar)
    runs = engine.simulate(history.tickets, engine.Candidate(history.table),
                           mean_service=measured, rate_window=RATE_WINDOW,
                           replications=replications)
    comparison = summary.compare(actual, [run.served for run in runs], as_of=history.as_of)
    return summary.replay_error(comparison.departments), len(history.tickets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", type=int, default=10)
    parser.add_argument("--replications", type=int, default=5)
    options = parser.parse_args()
    errors = []
    for seed in range(1, options.months + 1):
        started = time.perf_counter()
        error, tickets = month_error(seed, options.replications)
        errors.append(error)
        print(f"month {seed}: {tickets:,} tickets; worst department: received"
              f" {error.received:.1%}, p50 {_share(error.p50)}, p90 {_share(error.p90)},"
              f" targets met {_points(error.attainment_points)}"
              f" ({time.perf_counter() - started:.1f} s)")
    for name, values in (("received", [e.received for e in errors]),
                         ("p50", [e.p50 for e in errors if e.p50 is not None]),
                         ("p90", [e.p90 for e in errors if e.p90 is not None])):
        print(f"{name}: worst {max(values):.1%}, median {statistics.median(values):.1%}")
    points = [e.attainment_points for e in errors if e.attainment_points is not None]
    print(f"targets met: worst {max(points):.1f} points,"
          f" median {statistics.median(points):.1f} points")
    print("stated error: received 2%, p50 and p90 20%, targets met 3 points: "
          + ("every month within it" if all(e.within(relative=0.20, points=3.0)
                                            and e.received <= 0.02 for e in errors)
             else "NOT every month within it"))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} points"


if __name__ == "__main__":
    main()
