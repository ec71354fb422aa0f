"""Prometheus metrics of response times, labelled by department and segment only."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.metrics import timeline

# Bucket edges in seconds: minutes for chat, hours and days for e-mail.
RESPONSE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800,
                    86400, 172800)
PIPELINE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

LABELS = ("department", "segment")

HISTOGRAMS = {
    "first_response": Histogram(
        "routing_first_response_seconds",
        "Time from a ticket's receipt to the department's first response",
        LABELS, buckets=RESPONSE_BUCKETS),
    "queue_wait": Histogram(
        "routing_queue_wait_seconds",
        "Time a routed ticket waited in its department's queue before pick-up",
        LABELS, buckets=RESPONSE_BUCKETS),
    "resolution": Histogram(
        "routing_resolution_seconds", "Time from a ticket's receipt to its resolution",
        LABELS, buckets=RESPONSE_BUCKETS),
    "pipeline_latency": Histogram(
        "routing_pipeline_latency_seconds",
        "Time from a ticket's receipt to its arrival in a department queue",
        LABELS, buckets=PIPELINE_BUCKETS),
}

TICKETS_ROUTED = Counter(
    "routing_tickets_routed_total", "Tickets routed to a department queue",
    (*LABELS, "reason"))


def record(observations: list[timeline.Observation]) -> None:
    for observation in observations:
        if isinstance(observation, timeline.Routed):
            TICKETS_ROUTED.labels(observation.department, observation.segment,
                                  observation.reason).inc()
        else:
            HISTOGRAMS[observation.measure].labels(
                observation.department, observation.segment).observe(observation.seconds)
