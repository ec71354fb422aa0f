"""The segmenter's customer cache holds at most its size, whatever the number of
customers looked up (a base of millions must not fill the segmenter's memory)."""

from services.segmenter.cache import CustomerCache
from services.segmenter.profiles import NO_FEATURES, Customer, Tier


def customer(n: int) -> Customer:
    return Customer(f"c-{n}", None, NO_FEATURES, Tier.POTENTIAL)


class TestBound:
    def test_never_holds_more_than_its_size(self) -> None:
        cache = CustomerCache(max_customers=100, ttl_seconds=3600)
        for n in range(10_000):
            cache.put(customer(n))
            assert len(cache) <= 100
        assert len(cache) == 100

    def test_the_newest_customers_stay(self) -> None:
        cache = CustomerCache(max_customers=100, ttl_seconds=3600)
        for n in range(1_000):
            cache.put(customer(n))
        assert cache.holds("c-999")
        assert not cache.holds("c-0")

    def test_a_size_of_zero_holds_nobody(self) -> None:
        cache = CustomerCache(max_customers=0, ttl_seconds=3600)
        cache.put(customer(1))
        assert (len(cache), cache.holds("c-1"), cache.enabled) == (0, False, False)
