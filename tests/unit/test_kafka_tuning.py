"""A transaction begun while the broker still writes the last one's markers is asked
for again after our short pause, not aiokafka's 20 ms (see services.core.kafka_tuning)."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.producer.transaction_manager import TransactionManager
from aiokafka.structs import TopicPartition

from services.core import kafka, kafka_tuning


async def test_concurrent_transactions_are_asked_again_after_the_short_pause() -> None:
    assert kafka.producer is not None  # importing the clients' module applies the tuning
    manager = TransactionManager("stage-tickets.incoming-0", 60_000)
    sender = SimpleNamespace(_txn_manager=manager, _retry_backoff=0.1)
    handler = AddPartitionsToTxnHandler(sender, [TopicPartition("tickets.segmented", 0)])
    response = SimpleNamespace(errors=[("tickets.segmented",
                                        [(0, ConcurrentTransactions.errno)])])
    assert handler.handle_response(response) == \
        kafka_tuning.CONCURRENT_TRANSACTIONS_RETRY_SECONDS < 0.02
