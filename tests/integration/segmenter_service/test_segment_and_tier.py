"""A customer's tier and segment, explained, and segmented afresh after a change: tiers
of the seeded customers, a purchase that changes the tier, the cache dropped."""

from __future__ import annotations

import httpx
import pytest

from services.core import topics
from tests.conftest import read_topic, unique
from tests.integration.segmenter_service.service import Segmenter, segment_of


class TestTiers:
    @pytest.mark.parametrize(("customer_id", "tier", "segment"), [
        ("ind-vip-1", "most_valuable", "key_accounts"),
        ("ind-rising-1", "most_growable", "growth"),
        ("ind-loyal-1", "existing", "general"),
        ("ind-new-1", "potential", "potential"),
        ("nobody-knows-me", "potential", "potential"),
    ])
    async def test_each_tier_and_its_segment(self, client: httpx.AsyncClient,
                                             customer_id: str, tier: str, segment: str) -> None:
        answer = await segment_of(client, customer_id)
        assert (answer["tier"], answer["segment"]) == (tier, segment)

    async def test_tier_sizes_add_up(self, client: httpx.AsyncClient) -> None:
        sizes = (await client.get("/v1/tiers")).json()["sizes"]
        assert set(sizes) == {"most_valuable", "most_growable", "existing", "potential"}
        assert sum(sizes.values()) == 300

    async def test_a_purchase_changes_the_tier_and_says_so(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        customer_id = unique("buyer")
        created = await client.put(f"/v1/customers/{customer_id}",
                                   json={"customer_type": "individual", "country": "SE"})
        assert created.status_code == 201
        assert (await segment_of(client, customer_id))["tier"] == "potential"
        bought = await client.post(f"/v1/customers/{customer_id}/purchases",
                                   json={"amount": "250000.00", "currency": "EUR"})
        assert bought.status_code == 201, bought.text
        assert bought.json()["tier_changed"] == {"previous": "potential",
                                                 "current": "most_valuable"}
        # The segment follows at once: the cache dropped the customer.
        assert (await segment_of(client, customer_id))["segment"] == "key_accounts"
        events = await read_topic(segmenter.process.env["KAFKA_BOOTSTRAP_SERVERS"],
                                  topics.CUSTOMER_EVENTS, until=1,
                                  keep=lambda e: e.type == "customer.tier_changed"
                                  and e.subject == customer_id)
        assert events[0][0].data["current"] == "most_valuable"


class TestExplain:
    async def test_known_customer(self, client: httpx.AsyncClient) -> None:
        answer = await segment_of(client, "gov-ministry-1")
        assert (answer["segment"], answer["rule"], answer["customer_known"]) == (
            "government", "public-sector", True)
        assert answer["explanation"]["decided_by"] == {"customer.type": "government"}
        assert answer["rules_version"].startswith("demo-2+")

    async def test_unknown_customer(self, client: httpx.AsyncClient) -> None:
        answer = await segment_of(client, "never-heard-of")
        assert answer["customer_known"] is False
        assert answer["explanation"]["decided_by"] == {"tier": "potential"}


class TestCache:
    async def test_a_changed_customer_is_segmented_on_fresh_data(
            self, client: httpx.AsyncClient) -> None:
        customer_id = unique("mover")
        await client.put(f"/v1/customers/{customer_id}", json={"customer_type": "individual"})
        assert (await segment_of(client, customer_id))["segment"] == "potential"
        await client.put(f"/v1/customers/{customer_id}", json={"customer_type": "government"})
        assert (await segment_of(client, customer_id))["segment"] == "government"
