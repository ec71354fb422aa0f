"""The segmenter service as a process, on SQLite and on PostgreSQL: tiers, tier events,
explain, cache invalidation, hot reload, the analysis report and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools import demo, ports, processes
from services.core import topics
from services.core.settings import PROJECT_ROOT
from tests import credentials
from tests.conftest import read_topic, unique
from tests.databases import BACKENDS, fresh_postgres_database

CANDIDATE = """
version: candidate-1
default_segment: general
rules:
  - name: public-sector
    segment: government
    when: customer.type == 'government'
  - name: all-organisations
    segment: business
    when: customer.type == 'organisation' || customer.type == 'government'
  - name: women
    segment: care_plus
    when: customer.gender == 'female'
  - name: never
    segment: nobody
    when: features.purchases < 0
"""


class Segmenter:
    def __init__(self, process: processes.ServiceProcess, rules_file: Path,
                 database_url: str) -> None:
        self.process = process
        self.rules_file = rules_file
        self.database_url = database_url
        self.url = process.url


@pytest.fixture(scope="module", params=BACKENDS)
async def segmenter(request: pytest.FixtureRequest, kafka_bootstrap: str,
                    tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Segmenter]:
    home = tmp_path_factory.mktemp(f"segmenter-{request.param}")
    rules_file = home / "segments.yaml"
    shutil.copy(PROJECT_ROOT / "config" / "segments.yaml", rules_file)
    async with _database(request, home) as database_url:
        await demo.seed_if_empty(database_url, count=300)
        service_ports = {name: ports.free_port() for name in processes.SERVICES}
        env = processes.service_env(bootstrap=kafka_bootstrap, database_url=database_url,
                                    ports=service_ports,
                                    extra={"SEGMENT_RULES_FILE": str(rules_file),
                                           "CUSTOMER_CACHE_TTL_SECONDS": "600"})
        process = processes.ServiceProcess("segmenter", service_ports["segmenter"], env,
                                           home / "segmenter.log")
        process.start()
        try:
            await asyncio.to_thread(process.wait_ready, 90)
            yield Segmenter(process, rules_file, database_url)
        finally:
            process.stop()


@contextlib.asynccontextmanager
async def _database(request: pytest.FixtureRequest, home: Path) -> AsyncIterator[str]:
    """A fresh database of the module's backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{home / 'store.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    async with fresh_postgres_database(server.url) as url:
        yield url


@pytest.fixture
async def client(segmenter: Segmenter) -> AsyncIterator[httpx.AsyncClient]:
    """The segmenter's API, as an admin."""
    token = await credentials.issue_token(segmenter.database_url, "admin")
    async with httpx.AsyncClient(base_url=segmenter.url, timeout=30,
                                 headers=credentials.bearer(token)) as http_client:
        yield http_client


async def segment_of(client: httpx.AsyncClient, customer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}/segment",
                                params={"explain": "true"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


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


class TestHotReload:
    async def test_upload_takes_effect_and_a_bad_one_never_replaces_it(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        original = segmenter.rules_file.read_text()
        try:
            good = original.replace("version: demo-2", "version: demo-3").replace(
                "segment: key_accounts", "segment: premium")
            uploaded = await client.put("/v1/segment-rules", content=good,
                                        headers={"content-type": "application/yaml"})
            assert uploaded.status_code == 200, uploaded.text
            version = uploaded.json()["version"]
            assert version.startswith("demo-3+")
            assert (await segment_of(client, "ind-vip-1"))["segment"] == "premium"

            bad = good.replace("when: tier == 'potential'", "when: tier = 'potential'")
            rejected = await client.put("/v1/segment-rules", content=bad,
                                        headers={"content-type": "application/yaml"})
            assert rejected.status_code == 422
            error = rejected.json()
            rule_line = bad.splitlines().index("  - name: prospects") + 1
            assert (error["rule"], error["line"]) == ("prospects", rule_line)
            assert error["file"].endswith("segments.yaml (upload)")
            in_force = (await client.get("/v1/segment-rules")).json()
            assert in_force["version"] == version
            assert "prospects" in in_force["last_rejection"]["error"]
            assert (await segment_of(client, "ind-vip-1"))["rules_version"] == version
        finally:
            await client.put("/v1/segment-rules", content=original,
                             headers={"content-type": "application/yaml"})

    async def test_editing_the_file_reloads_it(self, client: httpx.AsyncClient,
                                               segmenter: Segmenter) -> None:
        original = segmenter.rules_file.read_text()
        try:
            segmenter.rules_file.write_text(
                original.replace("version: demo-2", "version: edited-1"))
            for _ in range(100):
                version = (await client.get("/v1/segment-rules")).json()["version"]
                if version.startswith("edited-1+"):
                    break
                await asyncio.sleep(0.1)
            assert version.startswith("edited-1+")
        finally:
            segmenter.rules_file.write_text(original)


class TestAnalysis:
    async def test_candidate_over_the_customer_base(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/segment-rules/analysis", content=CANDIDATE,
                                     headers={"content-type": "application/yaml"})
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["customers"] >= 300
        assert sum(report["segment_sizes"].values()) == report["customers"]
        rules = {rule["name"]: rule for rule in report["rules"]}
        assert rules["never"]["never_matches"] is True
        assert rules["all-organisations"]["shadowed_by"] == ["public-sector"]
        assert report["protected_rules"] == ["women"]
        assert rules["women"]["protected_reads"] == ["customer.gender"]
        moves = {(m["from_segment"], m["to_segment"]) for m in report["moves"]["moves"]}
        assert ("key_accounts", "general") in moves or ("key_accounts", "care_plus") in moves
        assert report["default_only"]["count"] > 0

    async def test_invalid_candidate_is_a_422_naming_the_rule(
            self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/segment-rules/analysis",
                                     content=CANDIDATE.replace("< 0", "<"),
                                     headers={"content-type": "application/yaml"})
        assert response.status_code == 422
        assert response.json()["rule"] == "never"


    async def test_a_rule_standing_in_for_age_is_flagged_as_a_proxy(
            self, client: httpx.AsyncClient) -> None:
        # A club whose 40 members are all over 70: a rule on membership reads no age,
        # but selects by it. The demo base has no such association.
        for n in range(40):
            answer = await client.put(f"/v1/customers/{unique('senior')}", json={
                "customer_type": "individual", "birth_date": f"{1946 + n % 10}-02-01",
                "gender": ("female", "male")[n % 2], "attributes": {"club": "senior"}})
            assert answer.status_code == 201, answer.text
        candidate = CANDIDATE + """  - name: seniors-club
    segment: club
    when: "'club' in customer.attributes && customer.attributes.club == 'senior'"
"""
        response = await client.post("/v1/segment-rules/analysis", content=candidate,
                                     headers={"content-type": "application/yaml"})
        assert response.status_code == 200, response.text
        detection = response.json()["proxy_detection"]
        assert detection["policy"] == {"threshold": 0.3, "minimum_customers": 30}
        assert "women" not in detection["rules_checked"]  # read gender by name
        [proxy] = detection["proxies"]
        assert (proxy["rule"], proxy["attribute"], proxy["band"]) == (
            "seniors-club", "age_band", "65_plus")
        assert proxy["matched"] == 40 and proxy["share_of_matches"] == 1.0
        assert proxy["cramers_v"] >= 0.3


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

    async def test_unsupported_media_type(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/customers/import", content=b"<xml/>",
                                     headers={"content-type": "application/xml"})
        assert response.status_code == 415
