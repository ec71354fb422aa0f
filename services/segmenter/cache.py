"""A bounded cache of what segmentation reads about customers.

Tickets must not cost a database query each under load. Entries expire after a while
(so a change made behind the service's back is picked up in time) and are dropped at
once when a customer or purchase changes through any segmenter instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache
from prometheus_client import Counter

from services.segmenter.profiles import Customer

LOOKUPS = Counter("routing_segmenter_customer_lookups_total",
                  "Customer lookups by the segmenter, by whether the cache answered",
                  ["result"])
# The two children, looked up once (a label lookup each ticket costs more than the count).
_HITS, _MISSES = LOOKUPS.labels("hit"), LOOKUPS.labels("miss")


class CustomerCache:
    def __init__(self, *, max_customers: int, ttl_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: TTLCache[str, Customer] = TTLCache(max_customers, ttl_seconds,
                                                          timer=clock)

    @property
    def max_customers(self) -> int:
        return int(self._entries.maxsize)

    @property
    def ttl_seconds(self) -> float:
        return float(self._entries.ttl)

    def get(self, customer_id: str) -> Customer | None:
        found = self._entries.get(customer_id)
        (_HITS if found is not None else _MISSES).inc()
        return found

    @property
    def enabled(self) -> bool:
        return bool(self._entries.maxsize)

    def holds(self, customer_id: str) -> bool:
        return customer_id in self._entries

    def put(self, customer: Customer) -> None:
        if self._entries.maxsize:  # a size of 0 turns the cache off
            self._entries[customer.customer_id] = customer

    def forget(self, customer_id: str) -> None:
        self._entries.pop(customer_id, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
