"""Overflow: a swamped department hands its new tickets to another. Pure decision code.

A department starts overflowing when any measured load crosses its maximum, and stops
only when every measure is back below `resume_below` of its maximum; in between it keeps
its state, so a load hovering around a maximum does not make routing flap. A measure
that is not reported (None), or has no maximum, is left out; with nothing measured the
state does not change.

One measure is a prediction: how long a ticket queued now would wait for its first
response (`predict_first_response`), from the department's open backlog and the rate at
which it reported first responses lately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from services.core import durations


@dataclass(frozen=True)
class DepartmentLoad:
    backlog: int | None = None  # tickets waiting for a first response
    lag: int | None = None  # tickets in the department's lanes its agents have not taken
    predicted_first_response: timedelta | None = None  # for a ticket queued now
    prediction_basis: str | None = None  # how it was predicted, for the routing trace


# How far back a department's first responses are counted to measure its rate.
RESPONSE_RATE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class RecentFirstResponses:
    """The first responses a department reported within the last `window`."""

    count: int
    window: timedelta


@dataclass(frozen=True)
class Prediction:
    wait: timedelta
    basis: str


def predict_first_response(backlog: int, recent: RecentFirstResponses, *,
                           oldest_open_since: datetime | None,
                           now: datetime) -> Prediction:
    """How long a ticket queued now would wait for its first response: every open ticket
    of the department is ahead of it, answered at the rate the department answered
    lately (first responses in the window / the window). With none answered in the
    window, the rate is unknown: the wait is at least as long as the longest-waiting
    open ticket has waited so far (`oldest_open_since`), as none of them was answered."""
    window = durations.format_duration(recent.window)
    if backlog <= 0:
        return Prediction(timedelta(0), "no open tickets ahead")
    if recent.count > 0:
        return Prediction(recent.window * backlog / recent.count,
                          f"{backlog} open ahead, {recent.count} first responses in the"
                          f" last {window}")
    waited = max(timedelta(0), now - oldest_open_since) if oldest_open_since else timedelta(0)
    return Prediction(waited, f"{backlog} open ahead, no first response in the last"
                              f" {window}: as long as the oldest has waited")


# The largest maximum backlog or lag a routing table may set: far past any real queue,
# and small enough that a fraction of it (resume_below) is computed without overflow.
LARGEST_MAXIMUM = 1_000_000_000


@dataclass(frozen=True)
class OverflowPolicy:
    to: str
    max_backlog: int | None = None
    max_lag: int | None = None
    max_predicted_first_response: timedelta | None = None
    resume_below: float = 0.8  # a fraction of each maximum


@dataclass(frozen=True)
class OverflowState:
    overflowing: bool = False
    since: datetime | None = None


NORMAL = OverflowState()


class Transition(NamedTuple):
    state: OverflowState
    changed: bool
    reason: str


class _Measure(NamedTuple):
    name: str
    value: float
    limit: float
    is_duration: bool

    def show(self, amount: float) -> str:
        if self.is_duration:
            return durations.format_duration(timedelta(seconds=amount))
        return f"{amount:g}"


def next_state(state: OverflowState, load: DepartmentLoad | None, policy: OverflowPolicy,
               *, now: datetime) -> Transition:
    measures = _measures(load, policy)
    if not measures:
        return Transition(state, False, "no load reported")
    if not state.overflowing:
        over = [m for m in measures if m.value > m.limit]
        if over:
            return Transition(OverflowState(True, now), True, "; ".join(
                f"{m.name} {m.show(m.value)} > {m.show(m.limit)}" for m in over))
        return Transition(state, False, "within limits")
    resume = policy.resume_below
    high = [m for m in measures if m.value >= m.limit * resume]
    if high:
        return Transition(state, False, "; ".join(
            f"{m.name} {m.show(m.value)} not yet below {m.show(m.limit * resume)}"
            for m in high))
    return Transition(NORMAL, True, "; ".join(
        f"{m.name} {m.show(m.value)} < {m.show(m.limit * resume)}" for m in measures))


def _measures(load: DepartmentLoad | None, policy: OverflowPolicy) -> list[_Measure]:
    if load is None:
        return []
    found = []
    if load.backlog is not None and policy.max_backlog is not None:
        found.append(_Measure("backlog", load.backlog, policy.max_backlog, False))
    if load.lag is not None and policy.max_lag is not None:
        found.append(_Measure("lag", load.lag, policy.max_lag, False))
    if load.predicted_first_response is not None \
            and policy.max_predicted_first_response is not None:
        found.append(_Measure("predicted first response",
                              load.predicted_first_response.total_seconds(),
                              policy.max_predicted_first_response.total_seconds(), True))
    return found


@dataclass(frozen=True)
class Change:
    department: str
    state: OverflowState
    reason: str


def advance(states: Mapping[str, OverflowState], loads: Mapping[str, DepartmentLoad],
            policies: Mapping[str, OverflowPolicy], *,
            now: datetime) -> tuple[dict[str, OverflowState], list[Change]]:
    """Every department's next state after new load figures, and the ones that changed."""
    updated = dict(states)
    changes = []
    for department, policy in policies.items():
        transition = next_state(states.get(department, NORMAL), loads.get(department),
                                policy, now=now)
        updated[department] = transition.state
        if transition.changed:
            changes.append(Change(department, transition.state, transition.reason))
    return updated, changes


def find_cycle(targets: Mapping[str, str]) -> list[str] | None:
    """A cycle in department -> overflow target, e.g. ['a', 'b', 'a'], or None."""
    for start in targets:
        path = [start]
        while path[-1] in targets:
            following = targets[path[-1]]
            if following in path:
                return [*path[path.index(following):], following]
            path.append(following)
    return None
