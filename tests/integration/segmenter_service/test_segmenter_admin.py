"""The segmenter's admin API: customers created, read and erased, bad input named by
field, and customers and purchases imported over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from services.core import db
from services.segmenter.models import CustomerRow
from tests.conftest import unique
from tests.integration.segmenter_service.service import Segmenter, segment_of


class TestAdmin:
    async def test_create_read_delete(self, client: httpx.AsyncClient) -> None:
        customer_id = unique("admin")
        body = {"customer_type": "organisation", "country": "NL", "attributes": {"vip": True}}
        assert (await client.put(f"/v1/customers/{customer_id}", json=body)).status_code == 201
        assert (await client.put(f"/v1/customers/{customer_id}", json=body)).status_code == 200
        read = (await client.get(f"/v1/customers/{customer_id}")).json()
        assert read["profile"]["attributes"] == {"vip": True}
        assert read["tier"] == "potential"
        erased = await client.delete(f"/v1/customers/{customer_id}")
        assert erased.status_code == 200
        assert erased.json()["erased"] == {"customer": True, "purchases": 0, "tickets": 0,
                                           "idempotency_keys": 0}
        assert {item["topic"] for item in erased.json()["kafka_until_retention"]} >= {
            "tickets.incoming", "tickets.segmented", "tickets.events"}
        assert (await client.get(f"/v1/customers/{customer_id}")).status_code == 404
        assert (await client.delete(f"/v1/customers/{customer_id}")).status_code == 404

    async def test_bad_input_names_the_fields(self, client: httpx.AsyncClient) -> None:
        response = await client.put("/v1/customers/x-1", json={
            "customer_type": "alien", "country": "nl", "birth_date": "2999-01-01"})
        assert response.status_code == 422
        fields = {f["field"] for f in response.json()["fields"]}
        assert fields == {"body.customer_type", "body.country"}
        future = await client.put("/v1/customers/x-1", json={
            "customer_type": "individual", "birth_date": "2999-01-01"})
        assert future.status_code == 422
        assert future.json()["fields"][0]["field"] == "body.birth_date"

    async def test_values_no_store_can_hold_are_refused_by_field(
            self, client: httpx.AsyncClient) -> None:
        customer_id = unique("hostile")
        named = await client.put(f"/v1/customers/{customer_id}", json={
            "customer_type": "individual", "name": "a\u0000b"})
        assert named.status_code == 422, named.text
        assert [f["field"] for f in named.json()["fields"]] == ["body.name"]
        # The import's definition of a country: a code ISO assigned, not any two letters.
        nowhere = await client.put(f"/v1/customers/{customer_id}", json={
            "customer_type": "individual", "country": "XX"})
        assert nowhere.status_code == 422, nowhere.text
        assert [f["field"] for f in nowhere.json()["fields"]] == ["body.country"]
        assert (await client.put(f"/v1/customers/{customer_id}",
                                 json={"customer_type": "individual"})).status_code == 201
        for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
            bought = await client.post(f"/v1/customers/{customer_id}/purchases", json={
                "amount": "1.00", "currency": "EUR", "purchased_at": moment})
            assert bought.status_code == 422, bought.text
            [problem] = bought.json()["fields"]
            assert problem["field"] == "body.purchased_at"
            assert "once converted to UTC" in problem["problem"]
        # A number past any sum (its cents overflowed to infinity: a 500 before).
        for amount in (1e308, "1e5"):
            priced = await client.post(f"/v1/customers/{customer_id}/purchases", json={
                "amount": amount, "currency": "EUR"})
            assert priced.status_code == 422, priced.text
            assert [f["field"] for f in priced.json()["fields"]] == ["body.amount"]

    async def test_a_profile_stored_under_older_rules_is_still_read(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        """An import once stored nested attributes, which CustomerIn does not take: the
        stored profile is shown as it is, not refused with a 500."""
        customer_id = unique("older")
        engine = db.engine(segmenter.database_url)
        try:
            async with db.sessions(engine)() as session, session.begin():
                session.add(CustomerRow(customer_id=customer_id, customer_type="individual",
                                        attributes={"club": {"name": "chess"}}))
        finally:
            await engine.dispose()
        read = await client.get(f"/v1/customers/{customer_id}")
        assert read.status_code == 200, read.text
        assert read.json()["profile"]["attributes"] == {"club": {"name": "chess"}}

    async def test_purchase_for_unknown_customer_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/customers/nobody-here/purchases",
                                     json={"amount": "1.00", "currency": "EUR"})
        assert response.status_code == 404


class TestBulkImportOverHttp:
    async def test_good_rows_kept_bad_rows_reported_by_line(
            self, client: httpx.AsyncClient) -> None:
        prefix = unique("imp")
        csv = (f"customer_id,customer_type,country\n"
               f"{prefix}-1,individual,NL\n"
               f"{prefix}-2,martian,NL\n"
               f"{prefix}-3,government,SE\n").encode()

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(csv), 7):  # arrives in small pieces
                yield csv[start:start + 7]

        response = await client.post("/v1/customers/import", content=body(),
                                     headers={"content-type": "text/csv"})
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["rows_read"], report["rows_imported"], report["error_count"]) == (3, 2, 1)
        assert report["errors"][0]["line"] == 3
        assert "customer_type" in report["errors"][0]["reason"]
        # The import ran the tier recompute it announces: the new customers are counted.
        recompute = report["tier_recompute"]
        assert recompute["sizes"] == (await client.get("/v1/tiers")).json()["sizes"]
        assert recompute["cutoffs"] == (await client.get("/v1/tiers")).json()["cutoffs"]
        assert (await segment_of(client, f"{prefix}-3"))["segment"] == "government"
        assert (await client.get(f"/v1/customers/{prefix}-2")).status_code == 404

    async def test_purchases_update_tiers(self, client: httpx.AsyncClient) -> None:
        customer_id = unique("imp-buyer")
        await client.put(f"/v1/customers/{customer_id}", json={"customer_type": "individual"})
        lines = (f'{{"customer_id": "{customer_id}", "amount": "500000.00", "currency": "EUR",'
                 f' "purchased_at": "2026-11-01T10:00:00+00:00"}}\n'
                 f'{{"customer_id": "nobody-{customer_id}", "amount": "1.00",'
                 f' "currency": "EUR", "purchased_at": "2026-11-01T10:00:00+00:00"}}\n')
        response = await client.post("/v1/purchases/import", content=lines.encode(),
                                     headers={"content-type": "application/x-ndjson"})
        report = response.json()
        assert (report["rows_imported"], report["error_count"]) == (1, 1)
        assert report["errors"][0]["line"] == 2
        assert (await segment_of(client, customer_id))["tier"] == "most_valuable"

    async def test_rows_no_store_can_hold_are_reported_by_line(
            self, client: httpx.AsyncClient) -> None:
        prefix = unique("imp-hostile")
        deep: object = 1
        for _ in range(600):
            deep = {"a": deep}
        customers = [{"customer_id": f"{prefix}-1", "customer_type": "individual"},
                     {"customer_id": f"{prefix}-2", "customer_type": "individual",
                      "attributes": {"nested": deep}},
                     {"customer_id": f"{prefix}-3", "customer_type": "individual",
                      "attributes": {"big": 2 ** 64}},
                     {"customer_id": f"{prefix}-4", "customer_type": "individual",
                      "name": "a\u0000b"}]
        response = await client.post(
            "/v1/customers/import", headers={"content-type": "application/x-ndjson"},
            content="".join(json.dumps(row) + "\n" for row in customers).encode())
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["rows_imported"], report["error_count"]) == (1, 3)
        assert [(e["line"], e["reason"].split(" (")[0]) for e in report["errors"]] == [
            (2, "invalid attributes"), (3, "invalid attributes"), (4, "invalid name")]
        purchases = "".join(json.dumps({
            "customer_id": f"{prefix}-1", "amount": "1.00", "currency": "EUR",
            "purchased_at": moment}) + "\n" for moment in (
                "2026-11-01T10:00:00+00:00", "0001-01-01T00:00:00+01:00"))
        response = await client.post("/v1/purchases/import", content=purchases.encode(),
                                     headers={"content-type": "application/x-ndjson"})
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["rows_imported"], report["error_count"]) == (1, 1)
        assert report["errors"][0]["line"] == 2
        assert "invalid purchased_at" in report["errors"][0]["reason"]

    async def test_unsupported_media_type(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/customers/import", content=b"<xml/>",
                                     headers={"content-type": "application/xml"})
        assert response.status_code == 415
