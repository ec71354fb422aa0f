"""Live load of the departments, sampled periodically: the backlog of open tickets (from
the router's store), the consumer lag of each department's queue (from Kafka) and the
predicted first response of a ticket queued now (from the backlog and the first
responses the department gave in the last RESPONSE_RATE_WINDOW); the overflow state of each
department follows it, with hysteresis."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from services.core import group_lag, kafka, topics
from services.core.settings import Settings
from services.router import overflow, routing
from services.router.store import RoutedTickets

logger = logging.getLogger(__name__)

OVERFLOWING = Gauge("routing_department_overflowing",
                    "1 while a department's new tickets go to its overflow department",
                    ["department"])
OVERFLOW_CHANGES = Counter("routing_overflow_changes_total",
                           "Times a department started or stopped overflowing",
                           ["department", "state"])


RESPONSE_RATE_WINDOW = overflow.RESPONSE_RATE_WINDOW


class LoadWatch:
    def __init__(self, settings: Settings, routed: RoutedTickets,
                 current_table: Callable[[], routing.RoutingTable]) -> None:
        self._settings = settings
        self._routed = routed
        self._current_table = current_table
        self.loads: dict[str, overflow.DepartmentLoad] = {}
        self.states: dict[str, overflow.OverflowState] = {}

    def view(self) -> tuple[Mapping[str, overflow.DepartmentLoad],
                            Mapping[str, overflow.OverflowState]]:
        return self.loads, self.states

    async def sample(self) -> None:
        table = self._current_table()
        backlog = await self._routed.backlog()
        # Lag costs Kafka round trips: only for the departments whose overflow reads it.
        lag = await self._lag(tuple(department for department, policy
                                    in table.overflow_policies.items()
                                    if policy.max_lag is not None))
        now = datetime.now(UTC)
        predictions = await self._predictions(table, backlog, now)
        self.loads = {department: overflow.DepartmentLoad(
            backlog=backlog.get(department, 0), lag=lag.get(department),
            predicted_first_response=prediction.wait if prediction else None,
            prediction_basis=prediction.basis if prediction else None)
            for department in table.departments
            for prediction in [predictions.get(department)]}
        self.states, changes = overflow.advance(self.states, self.loads,
                                                table.overflow_policies, now=now)
        for change in changes:
            now_state = "overflowing" if change.state.overflowing else "normal"
            OVERFLOW_CHANGES.labels(change.department, now_state).inc()
            logger.warning("department overflow changed", extra={
                "department": change.department, "state": now_state,
                "reason": change.reason})
        for department, state in self.states.items():
            OVERFLOWING.labels(department).set(1 if state.overflowing else 0)

    async def _predictions(self, table: routing.RoutingTable, backlog: Mapping[str, int],
                           now: datetime) -> dict[str, overflow.Prediction]:
        """Only for the departments whose overflow reads a predicted first response."""
        departments = [department for department, policy in table.overflow_policies.items()
                       if policy.max_predicted_first_response is not None]
        if not departments:
            return {}
        answered = await self._routed.first_responses_since(now - RESPONSE_RATE_WINDOW)
        oldest = await self._routed.oldest_open()
        return {department: overflow.predict_first_response(
            backlog.get(department, 0),
            overflow.RecentFirstResponses(answered.get(department, 0), RESPONSE_RATE_WINDOW),
            oldest_open_since=oldest.get(department), now=now) for department in departments}

    async def _lag(self, departments: tuple[str, ...]) -> dict[str, int]:
        """Records in each department's lanes not yet taken by its agents; a department
        none of whose lanes the cluster describes is left out (its lag unknown, not 0:
        the lane check (lane_check.py) has just made its lanes)."""
        if not departments:
            return {}
        async with contextlib.AsyncExitStack() as clients:
            # Each client is closed whatever happens after it was made, its start too.
            admin = kafka.admin(self._settings, client_id="router-load")
            clients.push_async_callback(admin.close)
            await admin.start()
            probe = kafka.consumer(self._settings, group_id=None, client_id="router-load")
            clients.push_async_callback(probe.stop)
            await probe.start()
            lanes = {lane: department for department in departments
                     for lane in topics.lane_topics(department)}
            pairs = [(topics.department_group(department), lane)
                     for lane, department in lanes.items()]
            measured = await group_lag.positions(
                admin, probe, pairs, await kafka.described_partitions(admin))
        lag: dict[str, int] = {}
        for (_, lane), position in measured.items():
            lag[lanes[lane]] = lag.get(lanes[lane], 0) + position.lag
        return lag
