"""The intake's own metrics, as Prometheus reads them."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.core import tickets
from services.router import intake


def test_accepted_tickets_are_counted_per_channel_from_zero() -> None:
    """Every channel's series exists before its first ticket (a rate over it is 0, not
    absent), and the children are the ones the endpoint counts on."""
    for channel in tickets.Channel:
        value = REGISTRY.get_sample_value("routing_intake_tickets_accepted_total",
                                          {"channel": channel.value})
        assert value is not None, channel
    before = REGISTRY.get_sample_value("routing_intake_tickets_accepted_total",
                                       {"channel": "social"})
    intake._ACCEPTED_ON[tickets.Channel.SOCIAL].inc()
    assert REGISTRY.get_sample_value("routing_intake_tickets_accepted_total",
                                     {"channel": "social"}) == (before or 0) + 1
