"""What the benches read from others' output: wrk's total whatever unit wrk prints its
duration in (bench/closed_loop.py), a bench ticket's subject from a record of any hop
(bench/e2e_load.py), and the sends a pipeline's processes had refused and sent again
(bench/e2e_pipelines.py), how full the project's transactions were from its processes'
/metrics (bench/e2e_probes.py); and that a machine without wrk is told where it comes
from."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench import closed_loop
from bench.closed_loop import wrk_total
from bench.e2e_load import subject_of
from bench.e2e_pipelines import refused_sends
from bench.e2e_probes import per_transaction, transaction_totals
from services.core import envelope


@pytest.mark.parametrize(("line", "expected"), [
    ("  1000 requests in 5.00s, 1.2MB read", (1000, 5.0)),
    ("  15064 requests in 1.00m, 3.74MB read", (15064, 60.0)),
    ("  12 requests in 950.00ms, 3KB read", (12, 0.95)),
])
def test_the_total_and_its_duration_in_seconds(line: str, expected: tuple[int, float]) -> None:
    requests, seconds = wrk_total(f"Running 1m test\n{line}\nRequests/sec: 1\n")
    assert (requests, seconds) == (expected[0], pytest.approx(expected[1]))


def test_output_without_a_total_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no total"):
        wrk_total("unable to connect to 127.0.0.1:1 Connection refused")


def test_a_subject_is_found_in_the_ticket_or_in_data_holding_it() -> None:
    """Records carry an event's data as their value (its attributes are headers): the
    ticket itself, or data holding it as `ticket`."""
    ticket = {"customer_id": "c-1", "subject": "e2e-project-1 7", "body": "b"}
    event = envelope.Event(type="ticket.received", source="bench", ticket_id="t-1",
                           correlation_id="t-1", data=ticket)
    nested = envelope.Event(type="ticket.segmented", source="bench", ticket_id="t-1",
                            correlation_id="t-1", data={"ticket": ticket, "segment": "vip"})
    for value in (orjson.dumps(ticket), envelope.to_value(event), envelope.to_value(nested),
                  orjson.dumps({"data": ticket})):
        assert subject_of(value) == "e2e-project-1 7"
    assert subject_of(b"not json") is None
    assert subject_of(orjson.dumps({"data": {"other": 1}})) is None


def test_refused_sends_are_counted_from_the_processes_logs(tmp_path: Path) -> None:
    """bench/e2e.py counts aiokafka's warnings for sends the broker refused (each sent
    again after retry_backoff_ms), in every log of a pipeline, missing ones as none."""
    retried = ('{"message": "Got error produce response on topic-partition TopicPartition('
               "topic='tickets.events', partition=0), retrying. Error: <class "
               "'aiokafka.errors.NotEnoughReplicasError'>\"}")
    (tmp_path / "segmenter.log").write_text(f"{retried}\nstarted\n{retried}\n")
    (tmp_path / "router.log").write_text(f"ready\n{retried}\n")
    logs = [tmp_path / "segmenter.log", tmp_path / "router.log", tmp_path / "metrics.log"]
    assert refused_sends(logs) == 3
    assert refused_sends([tmp_path / "router.log"]) == 1


def test_refused_sends_held_back_by_the_services_logging_are_counted(
        tmp_path: Path) -> None:
    """The services write a library's repeated line once an interval, saying how many of
    its kind they held back (services/core/library_lines.py): those count too."""
    line = ('{"level":"WARNING","logger":"aiokafka.producer.sender","message":"Got error'
            " produce response on topic-partition TopicPartition(topic='tickets.events',"
            " partition=0), retrying. Error: <class 'aiokafka.errors.NotEnoughReplicasError'>\""
            ',"repeated":41}')
    (tmp_path / "router.log").write_text(f"{line}\n")
    assert refused_sends([tmp_path / "router.log"]) == 42


def test_a_machine_without_wrk_is_told_where_it_comes_from(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(closed_loop.shutil, "which", lambda _name: None)
    with pytest.raises(SystemExit, match="Debian's `wrk` package"):
        closed_loop.wrk(1, 16, 1.0, None, ["C-1"], "tag")


def test_requests_and_records_a_transaction_from_metrics_read_twice() -> None:
    registry = CollectorRegistry()
    intake = Histogram("routing_intake_transaction_requests", "", registry=registry)
    shares = Histogram("routing_stage_share_records", "", ["stage"], registry=registry)
    Histogram("routing_other_records", "", registry=registry).observe(99)  # not read
    intake.observe(3)
    shares.labels("router").observe(2)
    before = transaction_totals(generate_latest(registry).decode())
    for held in (4, 6, 8):
        intake.observe(held)
    shares.labels("router").observe(1)
    shares.labels("segmenter").observe(5)
    after = transaction_totals(generate_latest(registry).decode())
    assert per_transaction(before, after) == {"intake": 6.0, "router": 1.0, "segmenter": 5.0}
