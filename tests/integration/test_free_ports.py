"""Ports for a pipeline's processes are distinct: probed one after another, the system
may hand out the same port twice, and the second process cannot bind (a fault test once
had its intake's port served by the metrics service, which answered 404). And they lie
outside the kernel's ephemeral range, where an outgoing connection may take one first."""

from __future__ import annotations

import socket

from devtools import ports


def test_ports_chosen_together_are_distinct_and_free() -> None:
    chosen = ports.free_ports(64)
    assert len(set(chosen)) == 64
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
        first.bind(("127.0.0.1", chosen[0]))  # free once chosen


def test_ports_by_name() -> None:
    by_name = ports.free_ports_by_name(["router", "segmenter", "metrics", "router-stage"])
    assert list(by_name) == ["router", "segmenter", "metrics", "router-stage"]
    assert len(set(by_name.values())) == 4


def test_ports_are_chosen_outside_the_ephemeral_range() -> None:
    first, last = ports.ephemeral_range()
    assert not [port for port in ports.free_ports(64) if first <= port <= last]
