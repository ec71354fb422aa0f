"""The segmenter's customer cache holds at most its size, whatever the number of
customers looked up (a base of millions must not fill the segmenter's memory), and trusts
a customer for CUSTOMER_CACHE_TTL_SECONDS, not longer."""

from sqlalchemy.ext.asyncio import async_sessionmaker

from services.core.settings import Settings
from services.segmenter import bootstrap
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


class TestTrust:
    """README's Configuration: CUSTOMER_CACHE_TTL_SECONDS, how long a cached customer is
    trusted without a change event."""

    def test_a_customer_is_trusted_until_its_time_is_up_then_read_again(self) -> None:
        now = [1000.0]
        cache = CustomerCache(max_customers=10, ttl_seconds=300, clock=lambda: now[0])
        cache.put(customer(1))
        now[0] += 299.9
        assert cache.get("c-1") == customer(1)
        now[0] += 0.1
        assert (cache.get("c-1"), cache.holds("c-1")) == (None, False)

    def test_the_segmenters_store_caches_as_the_settings_say(self) -> None:
        settings = Settings(customer_cache_size=7, customer_cache_ttl_seconds=42)
        cache = bootstrap.customer_store(settings, async_sessionmaker()).cache
        assert (cache.max_customers, cache.ttl_seconds) == (7, 42.0)
