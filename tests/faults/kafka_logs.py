"""Kafka's own account of a partition, read from `DumpLogSegments` output
(`LocalKafka.dump_log`): the record batches with the producer that wrote them, and the
states the transaction coordinator wrote for each transaction.

The broker-kill fault test uses it to tell a ticket the pipeline lost from one the
broker lost: a record aborted although the coordinator had taken its transaction's
commit (see `committed_by_the_coordinator`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The coordinator's transaction states (`transactionStatus`): the dump names them;
# older tools printed the number, the index here.
STATES = ("Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit",
          "CompleteAbort", "Dead", "PrepareEpochFence")
PREPARE_COMMIT = "PrepareCommit"
PREPARE_ABORT = "PrepareAbort"

_DUMPING = re.compile(r"^Dumping .*/([^/]+)/\d+\.log$")
_BATCH = re.compile(r"^baseOffset: (\d+) lastOffset: (\d+) .*\bproducerId: (-?\d+) "
                    r"producerEpoch: (-?\d+) .*\bisControl: (true|false)\b"
                    r".*\bCreateTime: (-?\d+)\b")


@dataclass(frozen=True)
class Batch:
    """A record batch in a partition's log (`partition` as Kafka names its folder,
    e.g. `tickets.incoming-2`)."""

    partition: str
    first: int
    last: int
    producer_id: int
    producer_epoch: int
    control: bool
    created_ms: int  # a marker's: when the broker wrote it


@dataclass(frozen=True)
class TransactionState:
    """One state of a transaction, as the coordinator wrote it to `__transaction_state`."""

    producer_id: int
    producer_epoch: int
    status: str
    partitions: frozenset[str]
    updated_ms: int


def batches(dump: str) -> list[Batch]:
    """The record batches of a dump of data partitions, in log order."""
    found: list[Batch] = []
    partition = ""
    for line in dump.splitlines():
        if dumping := _DUMPING.match(line):
            partition = dumping.group(1)
        elif batch := _BATCH.match(line):
            first, last, producer_id, epoch, control, created = batch.groups()
            found.append(Batch(partition, int(first), int(last), int(producer_id), int(epoch),
                               control == "true", int(created)))
    return found


def transaction_states(dump: str) -> list[TransactionState]:
    """The transaction states of a dump of `__transaction_state` partitions, read with
    its transaction log decoder, in log order (one transaction's states are all in one
    partition)."""
    found: list[TransactionState] = []
    for line in dump.splitlines():
        _, marker, payload = line.partition(" payload: ")
        if not marker:
            continue
        try:
            data = json.loads(payload).get("data")
        except (ValueError, AttributeError):
            continue  # a tombstone, or not a transaction's state
        if not isinstance(data, dict) or "transactionStatus" not in data:
            continue
        status = data["transactionStatus"]
        partitions = frozenset(f"{entry['topic']}-{number}"
                               for entry in data.get("transactionPartitions") or ()
                               for number in entry["partitionIds"])
        found.append(TransactionState(
            int(data["producerId"]), int(data["producerEpoch"]),
            STATES[status] if isinstance(status, int) else str(status),
            partitions, int(data["transactionLastUpdateTimestampMs"])))
    return found


def committed_by_the_coordinator(partition: str, offset: int, created_ms: int,
                                 batches: Sequence[Batch],
                                 states: Iterable[TransactionState]) -> bool:
    """Whether the transaction that wrote this record was prepared to commit by the
    coordinator: the coordinator took its commit, so the record should be readable.

    The record's transaction is its producer's first, among those holding the record's
    partition, prepared (to commit or abort) after the record was made: a producer sends
    a transaction's records after the previous transaction's end was prepared, and before
    its own. That is checked in the partition's own order too: the producer's last marker
    before the record must be older than that prepare. A record queued in one transaction
    and written in the next (a commit sent before its records were acknowledged) comes
    after its own transaction's marker, and is not taken for a loss by the broker.

    A record made in the same millisecond as a prepare is not decided: False, as is a
    record whose batch or transaction the dumps do not show."""
    holder = next((batch for batch in batches if batch.partition == partition
                   and batch.first <= offset <= batch.last and not batch.control), None)
    if holder is None:
        return False
    producer = holder.producer_id, holder.producer_epoch
    markers = [batch.created_ms for batch in batches
               if batch.partition == partition and batch.control and batch.last < offset
               and (batch.producer_id, batch.producer_epoch) == producer]
    prepared = sorted((state for state in states
                       if (state.producer_id, state.producer_epoch) == producer
                       and state.status in (PREPARE_COMMIT, PREPARE_ABORT)
                       and partition in state.partitions),
                      key=lambda state: state.updated_ms)
    for state in prepared:
        if state.updated_ms == created_ms:
            return False
        if state.updated_ms > created_ms:
            return state.status == PREPARE_COMMIT and not (
                markers and markers[-1] >= state.updated_ms)
    return False
