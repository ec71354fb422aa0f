"""A transaction begun while the broker still writes the last one's markers is asked
for again after our short pause, not aiokafka's 20 ms (see services.core.kafka_tuning)."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.producer.transaction_manager import TransactionManager
from aiokafka.structs import TopicPartition

from services.core import kafka, kafka_tuning
from services.core.settings import Settings


async def test_concurrent_transactions_are_asked_again_after_the_short_pause() -> None:
    assert kafka.producer is not None  # importing the clients' module applies the tuning
    manager = TransactionManager("stage-tickets.incoming-0", 60_000)
    sender = SimpleNamespace(_txn_manager=manager, _retry_backoff=0.1)
    handler = AddPartitionsToTxnHandler(sender, [TopicPartition("tickets.segmented", 0)])
    response = SimpleNamespace(errors=[("tickets.segmented",
                                        [(0, ConcurrentTransactions.errno)])])
    assert handler.handle_response(response) == \
        kafka_tuning.CONCURRENT_TRANSACTIONS_RETRY_SECONDS < 0.02


async def test_transactional_producers_send_without_lingering() -> None:
    """Their records wait for the partitions' adding anyway; a plain producer lingers, so
    that concurrent callers' records share a request."""
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    transactional = kafka.producer(settings, client_id="t", transactional_id="intake-0-0")
    plain = kafka.producer(settings, client_id="p")
    try:
        # The pinned aiokafka keeps the setting on its accumulator, in seconds.
        assert transactional._message_accumulator._linger_time == 0
        assert plain._message_accumulator._linger_time == kafka_tuning.LINGER_MS / 1000 > 0
    finally:
        await transactional.stop()  # never started: nothing to send, no socket
        await plain.stop()
