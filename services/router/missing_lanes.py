"""The department lanes the brokers did not make (the router's Kafka user may not create
topics, a create-topic policy refused them), as the router's last try found them: a
ticket routed to one of them is dead-lettered with a reason naming the department and
its lanes, to be replayed once they exist, rather than held, its partition with it, as
if the broker were down. Lanes not tried yet (a table just put in force) are waited for
as usual: the next load sample makes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import Gauge

from services.core import faults, kafka

LANES_MISSING = Gauge("routing_router_department_lanes_missing",
                      "1 while a department's lanes are missing and the router could not"
                      " make them: tickets routed to it are dead-lettered", ["department"])


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

    def refuse(self, outputs: Iterable[kafka.Output]) -> None:
        """faults.Unprocessable if one of the outputs goes to a missing lane."""
        for output in outputs:
            department = self._lanes.get(output.topic)
            if department is not None:
                lanes = ", ".join(self._departments[department])
                raise faults.Unprocessable(
                    f"department {department}'s lanes do not exist and the router could"
                    f" not make them ({lanes}): replay this dead letter once they do")
