"""Prometheus metrics of response times and operations.

Response metrics are labelled by department and segment only, never by ticket or
customer. Gauges that the service measures periodically (backlog, consumer lag, dead
letters) are `Snapshot`s: each poll replaces the whole set at once, so a scrape never
sees half of one poll, and a department or group that went away leaves no stale series.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar, get_args

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from services.core import events
from services.metrics import parity, service_levels, timeline, waiting_dead_letters

logger = logging.getLogger(__name__)

# From receipt to a department queue: milliseconds when the stages keep up, up to an hour
# behind a backlog (a stage waiting for an outage), where edges ending at 30 s read a flat
# 30 s for any quantile.
PIPELINE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                    60, 120, 300, 900, 1800, 3600)
LABELS = ("department", "segment")

# measure -> (metric name, help); the bucket edges are set by `use_response_buckets`.
RESPONSE_MEASURES = {
    "first_response": ("routing_first_response_seconds",
                       "Time from a ticket's receipt to the department's first response"),
    "queue_wait": ("routing_queue_wait_seconds",
                   "Time a routed ticket waited in its department's queue before pick-up"),
    "resolution": ("routing_resolution_seconds",
                   "Time from a ticket's receipt to its resolution"),
}


def _response_histograms(buckets: Sequence[float]) -> dict[str, Histogram]:
    return {measure: Histogram(name, documentation, LABELS, buckets=buckets)
            for measure, (name, documentation) in RESPONSE_MEASURES.items()}


response_buckets: tuple[float, ...] = service_levels.DEFAULT_RESPONSE_BUCKETS
HISTOGRAMS: dict[str, Histogram] = {
    **_response_histograms(response_buckets),
    "pipeline_latency": Histogram(
        "routing_pipeline_latency_seconds",
        "Time from a ticket's receipt to its arrival in a department queue",
        LABELS, buckets=PIPELINE_BUCKETS),
}

TICKETS_ROUTED = Counter(
    "routing_tickets_routed_total",
    "Tickets put in a department queue: first routing, escalation or transfer",
    (*LABELS, "reason"))
# A hand-over's labels, an escalation's and a transfer's alike: where the ticket went is
# its `department`, as in every other metric of a department's queue.
HANDED_OVER_LABELS = ("from_department", "department")
TICKETS_ESCALATED = Counter(
    "routing_tickets_escalated_total",
    "Tickets escalated from one department (from_department) to another (department) on a"
    " breached target (first response, next response or resolution); one flagged where"
    " it is counts in routing_target_escalations_total only",
    HANDED_OVER_LABELS)
TICKETS_TRANSFERRED = Counter(
    "routing_tickets_transferred_total",
    "Tickets one department (from_department) handed to another (department)",
    HANDED_OVER_LABELS)
FIRST_RESPONSE_TARGET = Counter(
    "routing_first_response_target_total",
    "First-response targets decided: met (answered by the deadline) or missed",
    (*LABELS, "outcome"))
SERVICE_TARGET = Counter(
    "routing_service_target_total",
    "Service-level clocks decided by the router, per target (first_response,"
    " next_response, resolution): met, or missed (breached or answered late)",
    (*LABELS, "target", "outcome"))
TARGET_WARNINGS = Counter(
    "routing_target_warnings_total",
    "Warnings at a share of a service-level target, the ticket still unanswered",
    (*LABELS, "target"))
TARGET_ESCALATIONS = Counter(
    "routing_target_escalations_total",
    "Escalations of breached targets by level: 1 on breach, 2 still unanswered later",
    (*LABELS, "target", "level"))
PAUSED = Histogram(
    "routing_paused_seconds",
    "Time a ticket's clocks were paused, waiting on the customer (per pause)",
    LABELS, buckets=service_levels.DEFAULT_RESPONSE_BUCKETS)


class Snapshot(Collector):
    """A gauge whose whole set of series is replaced by each measurement. What it measures
    is the store's or the broker's, so every instance exports the same figures: dashboards
    and rules read them with max, never adding instances up."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self._documentation, self.labelnames = name, documentation, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        with self._lock:
            self._values = dict(values)

    def values(self) -> dict[tuple[str, ...], float]:
        with self._lock:
            return dict(self._values)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self._documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self._documentation, labels=self.labelnames)
        for labels, value in sorted(self.values().items()):
            family.add_metric(list(labels), value)
        yield family


OPEN_TICKETS = Snapshot(
    "routing_open_tickets", "Tickets routed and not yet resolved, per department holding them",
    ("department",))
BACKLOG = Snapshot(
    "routing_backlog_tickets",
    "A department's backlog (lifecycle.py): its open tickets awaiting a first response",
    ("department",))
CONSUMER_LAG = Snapshot(
    "routing_consumer_lag",
    "Records of a topic not yet consumed by a consumer group (end offset minus committed)",
    ("group", "topic"))
CONSUMER_COMMITTED_OFFSET = Snapshot(
    "routing_consumer_committed_offset",
    "Sum over partitions of a consumer group's committed offsets on a topic; a group that"
    " stopped consuming keeps it flat", ("group", "topic"))
DEAD_LETTERS = Snapshot(
    "routing_dead_letters",
    "Records held in the dead-letter topic tickets.dlq (read, not estimated from offsets;"
    " less those its retention deleted, looked for every 10 minutes)",
    ())
DEAD_LETTERS_READ = Counter(
    "routing_dead_letters_read_total",
    "Dead letters read from tickets.dlq since the service started, past those it held then,"
    " each once (services/metrics/dead_letters_read.py): new dead letters, though the"
    " retention deletes others meanwhile")
# Labels from fixed sets (services/metrics/waiting_dead_letters.py), never a ticket's.
DEAD_LETTERS_WAITING = Snapshot(
    "routing_dead_letters_waiting",
    "Dead letters in tickets.dlq never replayed (no marker in tickets.dlq.replayed), by the"
    " stage that set each aside and the topic it was read from", ("stage", "source_topic"))
DEAD_LETTERS_WAITING_OLDEST = Snapshot(
    "routing_dead_letters_waiting_oldest_timestamp_seconds",
    "When the oldest dead letter still waiting was dead-lettered (its Kafka timestamp)",
    ("stage", "source_topic"))
# Service parity across protected groups (services/metrics/parity.py): labels are an
# attribute, a band of it and a measure, all from fixed lists; small groups have none.
PARITY_RATIO = Snapshot(
    "routing_service_parity_ratio",
    "A protected group's service relative to the best-served group of the same attribute"
    " (1: as well served), per measure, over the parity window",
    ("attribute", "group", "measure"))
PARITY_BELOW_THRESHOLD = Snapshot(
    "routing_service_parity_below_threshold",
    "1 when a group's ratio is below the threshold by more than chance, else 0",
    ("attribute", "group"))
PARITY_THRESHOLD = Snapshot(
    "routing_service_parity_threshold",
    "The parity ratio below which a group is flagged (PARITY_THRESHOLD)", ())


def record_open_tickets(per_department: Mapping[str, int], backlog: Mapping[str, int], *,
                        known: Iterable[str]) -> None:
    """routing_open_tickets and routing_backlog_tickets: every department known (or shown
    before) with none shows 0."""
    shown = set(known) | set(per_department) | {d for (d,) in OPEN_TICKETS.values()}
    OPEN_TICKETS.replace({(d,): float(per_department.get(d, 0)) for d in shown})
    BACKLOG.replace({(d,): float(backlog.get(d, 0)) for d in shown})


def record_dead_letters_waiting(figures: waiting_dead_letters.Figures) -> None:
    DEAD_LETTERS_WAITING.replace({labels: float(count)
                                  for labels, count in figures.waiting.items()})
    DEAD_LETTERS_WAITING_OLDEST.replace({labels: at for labels, at in figures.oldest.items()})


def record_parity(parities: Sequence[parity.AttributeParity], threshold: float) -> None:
    PARITY_RATIO.replace(parity.ratio_series(parities))
    PARITY_BELOW_THRESHOLD.replace(parity.flag_series(parities))
    PARITY_THRESHOLD.replace({(): threshold})


def use_response_buckets(buckets: Sequence[float]) -> None:
    """Re-create the response-time histograms with these edges (at service start, before
    anything is observed; counts observed under other edges are dropped)."""
    global response_buckets
    edges = tuple(float(edge) for edge in buckets)
    if edges == response_buckets:
        return
    for measure in RESPONSE_MEASURES:
        REGISTRY.unregister(HISTOGRAMS[measure])
    HISTOGRAMS.update(_response_histograms(edges))
    _children.clear()  # the former histograms' children among them
    response_buckets = edges
    logger.info("response-time bucket edges set", extra={"buckets": list(edges)})


_Metric = TypeVar("_Metric", bound=MetricWrapperBase)
# (metric, label values) -> its labelled child: prometheus_client checks and looks up the
# label values on each call, and every lifecycle event observes something.
_children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}


def _child(metric: _Metric, *labels: str) -> _Metric:
    child = _children.get((metric, labels))
    if child is None:
        child = _children[metric, labels] = metric.labels(*labels)
    return child  # type: ignore[return-value]  # what metric.labels returned


# The departments and segments whose escalation series are exported (at 0 from their
# first routed ticket): a series born at 1 is no increase to Prometheus, so the first
# second-level escalation of a department and segment would not raise its alert.
_escalation_series: set[tuple[str, str]] = set()


def _export_escalations(department: str, segment: str) -> None:
    if (department, segment) not in _escalation_series:
        _escalation_series.add((department, segment))
        for target in get_args(events.ClockTarget):
            for level in events.ESCALATION_LEVELS:
                _child(TARGET_ESCALATIONS, department, segment, target, str(level))


def record(observations: Iterable[timeline.Observation]) -> None:
    for observation in observations:
        if isinstance(observation, timeline.Routed):
            _child(TICKETS_ROUTED, observation.department, observation.segment,
                   observation.reason).inc()
            _export_escalations(observation.department, observation.segment)
        elif isinstance(observation, timeline.HandedOver):
            handed = TICKETS_ESCALATED if observation.kind == "escalated" \
                else TICKETS_TRANSFERRED
            _child(handed, observation.from_department, observation.department).inc()
        elif isinstance(observation, timeline.TargetDecided):
            _child(FIRST_RESPONSE_TARGET, observation.department, observation.segment,
                   observation.outcome).inc()
        elif isinstance(observation, timeline.ServiceTarget):
            _child(SERVICE_TARGET, observation.department, observation.segment,
                   observation.target, observation.outcome).inc()
        elif isinstance(observation, timeline.ClockWarning):
            _child(TARGET_WARNINGS, observation.department, observation.segment,
                   observation.target).inc()
        elif isinstance(observation, timeline.ClockEscalated):
            # Level 1 makes the level-2 series too, should this instance not have seen
            # the ticket routed (a restart, another instance's partition).
            _export_escalations(observation.department, observation.segment)
            _child(TARGET_ESCALATIONS, observation.department, observation.segment,
                   observation.target, str(observation.level)).inc()
        elif isinstance(observation, timeline.Paused):
            _child(PAUSED, observation.department, observation.segment).observe(
                observation.seconds)
        else:
            _child(HISTOGRAMS[observation.measure], observation.department,
                   observation.segment).observe(observation.seconds)
