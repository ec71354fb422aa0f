"""The department lanes the brokers did not make (the router's Kafka user may not create
topics, a create-topic policy refused them), as the router's last try found them: a
ticket routed to one of them is dead-lettered with a reason naming the department and
its lanes, to be replayed once they exist, rather than held, its partition with it, as
if the broker were down. A hand-over there (a transfer, an escalation: `Refusing`, the
use cases' publisher) is refused so too, nothing published: the ticket stays where it
is. Lanes not tried yet (a table just put in force) are waited for as usual: the check
that follows the table (lane_check, run by every router instance) makes them."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import Gauge

from services.core import faults, kafka
from services.router import ports

logger = logging.getLogger(__name__)

LANES_MISSING = Gauge("routing_router_department_lanes_missing",
                      "1 while a department's lanes are missing and the router could not"
                      " make them: tickets routed to it are dead-lettered, hand-overs to it"
                      " refused", ["department"])


# What follows for a ticket the router stage refuses: the stage dead-letters it.
DEAD_LETTERED = "replay this dead letter once they do"
# What follows for a hand-over refused (a transfer, an escalation): nothing is published.
NOT_HANDED_ON = "nothing is handed on to it until they do"


def not_made(refused: kafka.TopicsNotMade) -> set[str]:
    """The lanes the brokers refused for good: not those refused for a moment (a
    controller moving, a timeout), which the stage waits for as for a broker down."""
    return {lane for lane, error in refused.refused.items() if not error.retriable}


class MissingLanes:
    """The lanes found missing at the last try, by department."""

    def __init__(self) -> None:
        self._departments: dict[str, tuple[str, ...]] = {}  # its missing lanes
        self._lanes: dict[str, str] = {}  # a missing lane -> its department

    def found(self, missing: Iterable[str], lanes_of: Mapping[str, Sequence[str]]) -> None:
        """What the last try left missing (`missing`), of the departments' lanes
        (`lanes_of`: each department of the table in force, its lanes)."""
        gone = set(missing)
        before = set(self._departments)
        self._departments = {department: tuple(lane for lane in lanes if lane in gone)
                             for department, lanes in lanes_of.items()
                             if gone.intersection(lanes)}
        self._lanes = {lane: department for department, lanes in self._departments.items()
                       for lane in lanes}
        for department in before - set(self._departments):
            LANES_MISSING.labels(department).set(0)
        for department in self._departments:
            LANES_MISSING.labels(department).set(1)

    @property
    def departments(self) -> dict[str, tuple[str, ...]]:
        return dict(self._departments)

    def refuse(self, outputs: Iterable[kafka.Publishable], *,
               then: str = DEAD_LETTERED) -> None:
        """LanesMissing if one of the outputs goes to a missing lane, its reason ending
        with `then` (what follows for the ticket)."""
        if not self._lanes:
            return
        for output in outputs:
            department = self._lanes.get(output.topic)
            if department is not None:
                raise LanesMissing(department, self._departments[department], then=then)


class LanesMissing(faults.Unprocessable):
    """Outputs for the lanes of a department the router could not make (MissingLanes):
    a ticket the stage routes there is dead-lettered with this reason; a transfer there
    is refused (409), an escalation there is checked again later."""

    def __init__(self, department: str, lanes: Sequence[str], *, then: str) -> None:
        self.department, self.lanes = department, tuple(lanes)
        super().__init__(f"department {department}'s lanes do not exist and the router could"
                         f" not make them ({', '.join(lanes)}): {then}")


class Refusing:
    """The router's use cases' publisher (ports.Publisher), refusing as the stage does
    what goes to a department whose lanes the router could not make: LanesMissing,
    nothing published. Else a transfer or an escalation there waited for the lane as for
    a broker down, until the publish gave up (503, the escalation check ended, the
    tickets due after it held with it), and failed the intake's tickets its transaction
    shared."""

    def __init__(self, publisher: ports.Publisher, lanes: MissingLanes) -> None:
        self._publisher, self._lanes = publisher, lanes

    async def publish(self, outputs: Sequence[kafka.Publishable]) -> None:
        self._lanes.refuse(outputs, then=NOT_HANDED_ON)
        await self._publisher.publish(outputs)


class Waiting:
    """The escalations one check of the clock watch found refused (LanesMissing), by the
    department whose lanes are missing, logged at its end: one ERROR a department with how
    many tickets wait, where a line a ticket every CHECK_AGAIN_AFTER_FAILURE flooded the
    log (10,000 tickets waiting for one department). No ticket is named: the counter of
    failed checks counts each, by the department holding it."""

    def __init__(self) -> None:
        self._tickets: Counter[str] = Counter()
        self._reasons: dict[str, str] = {}

    def add(self, refused: LanesMissing) -> None:
        self._tickets[refused.department] += 1
        self._reasons.setdefault(refused.department, str(refused))

    def log(self, **extra: str) -> None:
        for department, tickets in sorted(self._tickets.items()):
            logger.error("escalations to a department whose lanes are missing wait; their"
                         " tickets are checked again later", extra={
                             "escalated_to": department, "tickets": tickets,
                             "reason": self._reasons[department], **extra})
