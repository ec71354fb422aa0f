"""The segment rules: uploads and file edits reloaded while a bad upload never replaces
the rules in force, and a candidate analysed over the customer base (shadowed rules,
protected reads, a rule standing in for age, the protected attributes in force whatever a
file lists)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.integration.segmenter_service.service import Segmenter, segment_of

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
            assert error["file"] == "segments.yaml (upload)"  # not the server's directory
            in_force = (await client.get("/v1/segment-rules")).json()
            assert in_force["version"] == version
            assert "prospects" in in_force["last_rejection"]["error"]
            assert (await segment_of(client, "ind-vip-1"))["rules_version"] == version
        finally:
            await client.put("/v1/segment-rules", content=original,
                             headers={"content-type": "application/yaml"})

    @pytest.mark.parametrize("when", [
        # Fails on a null channel (no startsWith on null).
        "ticket.channel.startsWith('e')",
        # Does not hold on a null kind, with no error: it would on a complaint.
        "ticket.kind == 'complaint'",
    ])
    async def test_a_segment_that_depends_on_the_ticket_is_answered_409_naming_the_rule(
            self, client: httpx.AsyncClient, segmenter: Segmenter, when: str) -> None:
        """A rule on the ticket's fields first: it holds on some real tickets (the
        upload's probes have one), so a customer's segment asked without a ticket cannot
        get past it, whether it failed or did not hold on the null fields."""
        original = segmenter.rules_file.read_text()
        by_channel = original.replace("version: demo-2", "version: by-channel-1").replace(
            "rules:\n", "rules:\n  - name: email-first\n    segment: general\n"
                        f"    when: {when}\n", 1)
        try:
            uploaded = await client.put("/v1/segment-rules", content=by_channel,
                                        headers={"content-type": "application/yaml"})
            assert uploaded.status_code == 200, uploaded.text
            answer = await client.get("/v1/customers/ind-vip-1/segment")
            assert answer.status_code == 409, answer.text
            refused = answer.json()
            assert (refused["error"], refused["rule"]) == ("needs_a_ticket", "email-first")
            assert "depends on the ticket" in refused["detail"]
        finally:
            await client.put("/v1/segment-rules", content=original,
                             headers={"content-type": "application/yaml"})

    async def test_a_rule_failing_on_the_customers_data_does_not_hold_and_is_named(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        """The probes have Dutch customers with a gender, and none without: this rule
        passes them, and fails on ind-vip-1 (Dutch, no gender). It does not hold for them,
        as on their tickets: the next rules decide, and the answer names it."""
        original = segmenter.rules_file.read_text()
        before = await segment_of(client, "ind-vip-1")
        by_gender = original.replace("version: demo-2", "version: by-gender-1").replace(
            "rules:\n", "rules:\n  - name: dutch-women\n    segment: general\n"
                        "    when: customer.country == 'NL' && customer.gender.startsWith('f')\n",
            1)
        try:
            uploaded = await client.put("/v1/segment-rules", content=by_gender,
                                        headers={"content-type": "application/yaml"})
            assert uploaded.status_code == 200, uploaded.text
            answer = await segment_of(client, "ind-vip-1")
            assert (answer["segment"], answer["rule"]) == (before["segment"], before["rule"])
            # Each with CEL's status code (startsWith on a null gender), never its message.
            assert answer["rules_failed"] == [{"rule": "dutch-women", "kind": "UNKNOWN"}]
            assert before["rules_failed"] == []
        finally:
            await client.put("/v1/segment-rules", content=original,
                             headers={"content-type": "application/yaml"})

    async def test_the_explanation_gives_an_admin_the_values_read_protected_ones_too(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        """An admin's answer, not a ticket: the values the deciding rule read, a
        protected one (gender) and a free-form attribute too, where a ticket carries
        their paths only."""
        customer_id = unique("explained")
        created = await client.put(f"/v1/customers/{customer_id}", json={
            "customer_type": "individual", "gender": "female", "country": "SE",
            "attributes": {"club": "chess"}})
        assert created.status_code == 201, created.text
        original = segmenter.rules_file.read_text()
        by_club = original.replace("version: demo-2", "version: by-club-1").replace(
            "rules:\n", "rules:\n  - name: women-in-clubs\n    segment: care_plus\n"
                        "    when: customer.gender == 'female'"
                        " && has(customer.attributes.club)\n", 1)
        try:
            uploaded = await client.put("/v1/segment-rules", content=by_club,
                                        headers={"content-type": "application/yaml"})
            assert uploaded.status_code == 200, uploaded.text
            answer = await segment_of(client, customer_id)
            assert (answer["segment"], answer["rule"]) == ("care_plus", "women-in-clubs")
            assert answer["explanation"]["decided_by"] == {
                "customer.gender": "female", "customer.attributes.club": "chess"}
        finally:
            await client.put("/v1/segment-rules", content=original,
                             headers={"content-type": "application/yaml"})

    async def test_a_rule_cel_raises_on_is_a_422_naming_it_wherever_it_is_sent(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        """A map built with a key twice: CEL raises on it rather than answer an error
        value. An upload, a dry run and an analysis are each answered 422 naming the
        rule, never 500; the rules in force stand."""
        for error in await refused_wherever_sent(client, segmenter,
                                                 "{'k': 1, 'k': 2}.size() == 1"):
            assert "ALREADY_EXISTS" in error["detail"]

    async def test_a_misspelt_field_behind_has_is_a_422_naming_it_wherever_it_is_sent(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        """CEL takes the customer and features as maps of any keys: a misspelt field
        behind has() passed every check and never held. An upload, a dry run and an
        analysis are each answered 422 naming the rule, its line, the field and those
        accepted; the rules in force stand."""
        for when, field, accepted in (
                ("has(customer.agee_years) && customer.agee_years >= 75",
                 "customer.agee_years", "customer.age_years, customer.socio_economic_band"),
                ("has(features.frequencyy) && features.frequencyy >= 4",
                 "features.frequencyy", "features.frequency, features.monetary")):
            for error in await refused_wherever_sent(client, segmenter, when):
                problem = error["problem"]
                assert problem.startswith(f"{field} is not a field rules can read")
                assert accepted in problem.partition("accepted: ")[2]

    async def test_a_rule_whose_reads_cannot_be_told_is_a_422_naming_it_wherever_it_is_sent(
            self, client: httpx.AsyncClient, segmenter: Segmenter) -> None:
        """CEL compiles a list with a comma after its last item and a field in backquotes;
        the grammar the fields a rule reads are told with does not take them. An upload, a
        dry run and an analysis are each answered 422 naming the rule, its line and what
        to write, never 500; the rules in force stand."""
        for when in ("customer.country in ['NL', 'BE',]", "customer.`gender` == 'female'"):
            for error in await refused_wherever_sent(client, segmenter, when):
                problem = error["problem"]
                assert problem.startswith("the fields this rule reads cannot be told")
                assert "without a comma after its last item" in problem
                assert "without backquotes" in problem

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
            # The original text was in force before: the file put back is not imported
            # again, the upload puts it back in force.
            segmenter.rules_file.write_text(original)
            await client.put("/v1/segment-rules", content=original,
                             headers={"content-type": "application/yaml"})


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

    async def test_a_dry_run_listing_no_protected_attributes_still_flags_and_checks_them(
            self, client: httpx.AsyncClient) -> None:
        """`protected_attributes: []` adds nothing to the defaults and takes none away: the
        rule on gender is flagged, and every rule else checked for standing in for age,
        gender and socio-economic band."""
        candidate = CANDIDATE.replace("rules:\n", "protected_attributes: []\nrules:\n", 1)
        response = await client.post("/v1/segment-rules/dry-run", content=candidate,
                                     headers={"content-type": "application/yaml"})
        assert response.status_code == 200, response.text
        report = response.json()["analysis"]
        assert report["protected_rules"] == ["women"]
        rules = {rule["name"]: rule for rule in report["rules"]}
        assert rules["women"]["protected_reads"] == ["customer.gender"]
        detection = report["proxy_detection"]
        assert detection["attributes"] == ["age_band", "gender", "socio_economic_band"]
        assert "women" not in detection["rules_checked"]
        assert "public-sector" in detection["rules_checked"]

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


async def refused_wherever_sent(client: httpx.AsyncClient, segmenter: Segmenter,
                                when: str) -> list[dict[str, Any]]:
    """The errors an upload, a dry run and an analysis of the rules in force with a rule
    `added` (`when`) first are answered, each a 422 naming the rule and its line; the
    rules in force stand."""
    original = segmenter.rules_file.read_text()
    in_force = (await client.get("/v1/segment-rules")).json()["version"]
    refused = original.replace("version: demo-2", "version: refused-1").replace(
        "rules:\n", f"rules:\n  - name: added\n    segment: general\n    when: \"{when}\"\n", 1)
    line = refused.splitlines().index("  - name: added") + 1
    errors = []
    try:
        for path, send in (("/v1/segment-rules", client.put),
                           ("/v1/segment-rules/dry-run", client.post),
                           ("/v1/segment-rules/analysis", client.post)):
            answer = await send(path, content=refused,
                                headers={"content-type": "application/yaml"})
            assert answer.status_code == 422, (path, answer.text)
            assert (answer.json()["rule"], answer.json()["line"]) == ("added", line), path
            errors.append(answer.json())
        assert (await client.get("/v1/segment-rules")).json()["version"] == in_force
    finally:  # had the set been put in force, the tests after would read it
        await client.put("/v1/segment-rules", content=original,
                         headers={"content-type": "application/yaml"})
    return errors
