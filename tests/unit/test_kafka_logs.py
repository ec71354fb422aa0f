"""Reading Kafka's own log dumps to tell a ticket the broker lost from one the pipeline
lost (tests/faults/kafka_logs.py). The dumps in `kafka_dumps/` are trimmed from the
broker of a broker-kill fault test run in which the broker lost one ticket: the intake
answered 202 for the ticket on `tickets.incoming-2` offset 38 after its transaction was
prepared to commit (12:27:39.616); the broker was killed before the markers were
written, and on restart the coordinator completed the commit without them. The ABORT
marker of the producer's next transaction (offset 43) then took offset 38 with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.faults import kafka_logs

DUMPS = Path(__file__).parent / "kafka_dumps"
PARTITION = "tickets.incoming-2"
LOST = 38, 1796128059437  # offset, CreateTime (ms): the ticket the broker lost
ABORTED = 40, 1796128059630  # the producer's next transaction, aborted at the restart
PREPARED_TO_COMMIT_AT = 1796128059616


def batches() -> list[kafka_logs.Batch]:
    return kafka_logs.batches((DUMPS / f"{PARTITION}.txt").read_text())


def states() -> list[kafka_logs.TransactionState]:
    return kafka_logs.transaction_states((DUMPS / "transaction_state.txt").read_text())


def committed(offset: int, created_ms: int, partition: str = PARTITION) -> bool:
    return kafka_logs.committed_by_the_coordinator(partition, offset, created_ms,
                                                   batches(), states())


def test_batches_name_their_partition_producer_and_markers() -> None:
    by_offset = {batch.first: batch for batch in batches()}
    assert by_offset[38] == kafka_logs.Batch(PARTITION, 38, 38, 13, 0, control=False,
                                             created_ms=LOST[1])
    assert by_offset[43] == kafka_logs.Batch(PARTITION, 43, 43, 13, 0, control=True,
                                             created_ms=1796128078790)
    assert sorted(by_offset) == list(range(34, 46))


def test_transaction_states_read_the_coordinator_s_decoded_log() -> None:
    prepared = [state for state in states() if state.status == kafka_logs.PREPARE_COMMIT
                and state.updated_ms == PREPARED_TO_COMMIT_AT]
    assert prepared == [kafka_logs.TransactionState(
        13, 0, "PrepareCommit", frozenset({"tickets.events-1", PARTITION}),
        PREPARED_TO_COMMIT_AT)]
    assert {state.status for state in states()} == {
        "Empty", "Ongoing", "PrepareCommit", "CompleteCommit", "PrepareAbort", "CompleteAbort"}


def test_a_record_whose_transaction_the_coordinator_took_to_commit_is_told_apart() -> None:
    assert committed(*LOST)


def test_a_record_written_after_the_marker_of_its_producer_s_commit_is_not() -> None:
    """As if the intake had sent its commit before its records were acknowledged: the
    record, made before the prepare, reached the partition after that commit's marker
    (here the producer's marker at offset 35, made as if written after the prepare)."""
    late = [dataclasses.replace(batch, created_ms=PREPARED_TO_COMMIT_AT + 5)
            if batch.first == 35 else batch for batch in batches()]
    assert late[1].first == 35 and late[1].control and late[1].producer_id == 13
    assert not kafka_logs.committed_by_the_coordinator(PARTITION, *LOST, late, states())


def test_a_record_of_a_transaction_prepared_to_abort_is_not() -> None:
    assert not committed(*ABORTED)


def test_a_record_made_in_the_millisecond_of_a_prepare_is_not_decided() -> None:
    assert not committed(LOST[0], PREPARED_TO_COMMIT_AT)


def test_records_the_dumps_do_not_account_for_are_not() -> None:
    assert not committed(43, LOST[1])  # a marker, not a record
    assert not committed(36, 1796128059416)  # another producer: its states are not here
    assert not committed(LOST[0], LOST[1], partition="tickets.incoming-1")
    assert not committed(10_000, LOST[1])


def test_older_tools_number_the_states() -> None:
    line = ('| offset: 9 key: {"type":"0","data":{"transactionalId":"intake-0-0"}} payload: '
            '{"version":"1","data":{"producerId":13,"producerEpoch":0,"transactionStatus":2,'
            '"transactionPartitions":[{"topic":"tickets.incoming","partitionIds":[2]}],'
            '"transactionLastUpdateTimestampMs":5}}')
    assert kafka_logs.transaction_states(line) == [kafka_logs.TransactionState(
        13, 0, "PrepareCommit", frozenset({PARTITION}), 5)]
