"""The router's check of the department lanes of the table in force: made where missing,
what the brokers did not make kept in MissingLanes. Every router instance runs it, a
stage or not: one serving the intake alone hands tickets over too (transfers,
escalations: missing_lanes.Refusing), by its own MissingLanes. It runs at the start,
every LOAD_SAMPLE_SECONDS, and at once after each table put in force here."""

from __future__ import annotations

import asyncio
import logging

from services.core import background, kafka
from services.core.settings import Settings
from services.router import bootstrap, missing_lanes, priority, routing

logger = logging.getLogger(__name__)


class LaneCheck:
    """`ensure_lanes` of the table in force, run by `run` every LOAD_SAMPLE_SECONDS and at
    once after a table put in force."""

    def __init__(self, settings: Settings, live_table: bootstrap.LiveTable,
                 lanes: missing_lanes.MissingLanes) -> None:
        self._settings, self._table, self._lanes = settings, live_table, lanes
        self._table_changed = asyncio.Event()
        live_table.also_in_force(self._put_in_force)

    def _put_in_force(self, _table: routing.RoutingTable) -> None:
        self._table_changed.set()

    async def check(self) -> None:
        await ensure_lanes(self._settings, self._table, self._lanes)

    async def run(self, stop: asyncio.Event) -> None:
        await background.every(self._settings.load_sample_seconds, self.check, stop,
                               wait=self._pause)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Until `stop`, a table put in force, or `seconds` passed."""
        await background.until_either(stop, self._table_changed, seconds=seconds)
        self._table_changed.clear()


async def ensure_lanes(settings: Settings, live_table: bootstrap.LiveTable,
                       lanes: missing_lanes.MissingLanes) -> None:
    """The lanes of the table in force's departments, made where missing. Lanes the
    brokers answer for but do not make (kafka.TopicsNotMade: fewer brokers up than
    KAFKA_REPLICATION_FACTOR, a create-topic policy) or that the router's user may not
    create are a WARNING naming their departments, tried again at the next check:
    the router serves the departments whose lanes exist meanwhile (a start is not failed
    for them, nor the load sampling stopped); a ticket routed to one of those departments
    is dead-lettered with the reason (`lanes`), a hand-over there refused."""
    lanes_of = {department: priority.lane_topics(department)
                for department in live_table.current.departments}
    try:
        not_permitted = await kafka.ensure_topics(
            settings, [lane for department_lanes in lanes_of.values()
                       for lane in department_lanes])
    except kafka.TopicsNotMade as exc:
        lanes.found(missing_lanes.not_made(exc), lanes_of)
        logger.warning("department lanes not made; tried again at the next load sample,"
                       " tickets routed to them dead-lettered meanwhile",
                       extra={"error": str(exc), "departments": sorted(lanes.departments)})
        return
    lanes.found(not_permitted, lanes_of)
    if not_permitted:
        logger.warning("department lanes not made (the router's Kafka user may not create"
                       " them); tried again at the next load sample, tickets routed to them"
                       " dead-lettered meanwhile",
                       extra={"departments": sorted(lanes.departments)})
