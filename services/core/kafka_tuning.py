"""How our producers are tuned, by measurement on this project's broker.

How soon aiokafka asks again to add partitions to a transaction begun while the broker
is still writing the markers of the producer's last one (CONCURRENT_TRANSACTIONS).

Every stage partition's producer begins its next transaction right after committing
the last, so it meets this on most transactions. aiokafka waits a fixed 20 ms before
asking again (`BACKOFF_OVERRIDE`, no client option); the broker's markers take far less
on our loopback broker. Measured alone (one producer, back-to-back transactions of three
records and an offset): 36 ms a transaction with 20 ms, 18 ms with 2 ms. Applied once
per process, by importing services.core.kafka.

How long a producer holds a record to send it with others (`linger_ms`). A plain
producer lingers 2 ms, so that concurrent callers' records share a request. A
transactional one does not: its records wait anyway until the broker has added their
partitions to the transaction (one request), and every caller's records of a
transaction are queued together before that answer comes. What is left of the linger
(counted from the first record) after that answer only delays them. Measured alone,
one transactional producer, back-to-back transactions of two records on two topics (a
ticket and its event, as the intake writes), median of 280 each: 5.57 ms a transaction
with 2 ms, 5.11 with 0; 4.06 and 3.79 in a second round; the same CPU (1.2-1.7 ms a
transaction).
"""

from __future__ import annotations

from aiokafka.producer import sender

CONCURRENT_TRANSACTIONS_RETRY_SECONDS = 0.002
LINGER_MS = 2
TRANSACTIONAL_LINGER_MS = 0


def linger_ms(*, transactional: bool) -> int:
    return TRANSACTIONAL_LINGER_MS if transactional else LINGER_MS


def apply() -> None:
    sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_RETRY_SECONDS
