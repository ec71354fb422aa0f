"""What a support platform integrating over HTTP meets at the intake (the router, a
process, on a real broker): language tags as BCP 47 writes them, and the other input
mistakes it is told of by name (README, "Hostile input")."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import orjson
import pytest

from services.core import topics
from tests import intake_process
from tests.conftest import read_topic, unique
from tests.intake_process import Intake

TICKET = {"subject": "Invoice question", "body": "Where is my invoice?", "channel": "email"}


@pytest.fixture(scope="module")
def intake(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    with intake_process.running(kafka_bootstrap,
                                tmp_path_factory.mktemp("intake_input")) as running:
        yield running


async def post(intake: Intake, content: bytes | None = None, *, json: object = None,
               headers: dict[str, str] | list[tuple[str, str]] | None = None,
               ) -> httpx.Response:
    sent = httpx.Headers(headers or {})
    sent.update(intake.headers())
    if content is not None:
        sent.setdefault("Content-Type", "application/json")
    async with httpx.AsyncClient() as client:
        return await client.post(f"{intake.url()}/v1/tickets", content=content, json=json,
                                 headers=sent)


class TestLanguage:
    async def test_a_bcp47_tag_in_any_case_reaches_the_stages_in_its_canonical_case(
            self, intake: Intake) -> None:
        sent = {"zh-hant-TW": "zh-Hant-TW", "EN": "en", "es-419": "es-419"}
        ids = {}
        for tag, canonical in sent.items():
            answer = await post(intake, json={**TICKET, "customer_id": unique("c"),
                                              "language": tag})
            assert answer.status_code == 202, answer.text
            ids[answer.json()["ticket_id"]] = canonical
        found = await read_topic(intake.bootstrap, topics.INCOMING, until=len(ids),
                                 keep=lambda event: event.ticket_id in ids)
        assert {event.ticket_id: event.data["language"] for event, _ in found} == ids

    async def test_an_underscore_is_told_to_be_a_hyphen(self, intake: Intake) -> None:
        answer = await post(intake, json={**TICKET, "customer_id": unique("c"),
                                          "language": "pt_BR"})
        assert answer.status_code == 422
        assert answer.json()["fields"] == [{
            "field": "body.language", "type": "value_error",
            "problem": "a language tag's parts are joined by hyphens, not underscores"
                       " (e.g. 'pt-BR', not 'pt_BR')"}]


class TestErrorShape:
    async def test_a_json_syntax_error_is_named_body_with_its_line_and_column(
            self, intake: Intake) -> None:
        """FastAPI named it `body.<character>`, which reads like a path."""
        answer = await post(intake, b'{"customer_id": "c-1",\n "subject": "s",,}')
        assert answer.status_code == 422
        said = answer.json()
        [problem] = said["fields"]
        assert (problem["field"], problem["type"]) == ("body", "json_invalid")
        assert "at line 2, column 17 (character 40 of the body)" in problem["problem"]
        assert said["detail"] == f"body: {problem['problem']}"

    async def test_a_400_and_a_422_name_their_fields_alike(self, intake: Intake) -> None:
        unreadable = await post(intake, b'{"customer_id": "\xff"}')
        invalid = await post(intake, json={**TICKET, "customer_id": "c-1", "channel": "fax"})
        assert (unreadable.status_code, invalid.status_code) == (400, 422)
        for answer in (unreadable.json(), invalid.json()):
            assert set(answer) >= {"error", "detail", "fields"}
            assert all(set(problem) == {"field", "problem", "type"}
                       for problem in answer["fields"])
        assert unreadable.json()["field"] == "body"  # kept for the clients that read it
        assert [problem["field"] for problem in unreadable.json()["fields"]] == ["body"]
        assert [problem["field"] for problem in invalid.json()["fields"]] == ["body.channel"]


class TestCompressedBody:
    async def test_a_gzipped_ticket_is_a_415_naming_the_header(self, intake: Intake
                                                               ) -> None:
        """It was read as text: 400, "not UTF-8 text (byte 1 ...)"."""
        ticket = orjson.dumps({**TICKET, "customer_id": unique("c")})
        answer = await post(intake, gzip.compress(ticket),
                            headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 415
        assert answer.headers["Accept-Encoding"] == "identity"
        assert [problem["field"] for problem in answer.json()["fields"]] == [
            "header.Content-Encoding"]
        plain = await post(intake, ticket, headers={"Content-Encoding": "identity"})
        assert plain.status_code == 202, plain.text


class TestRepeatedKey:
    async def test_a_ticket_giving_a_key_twice_is_a_422_naming_it(self, intake: Intake
                                                                   ) -> None:
        """It was accepted, by the last one given (email)."""
        answer = await post(intake, b'{"customer_id": "c1", "subject": "s", "body": "b",'
                                    b' "channel": "fax", "channel": "email"}')
        assert answer.status_code == 422
        assert answer.json()["fields"] == [{
            "field": "body.channel", "type": "repeated_key",
            "problem": "the key 'channel' is given 2 times in one object: keys must be"
                       " unique in every JSON object (which one was meant is not for us to"
                       " guess); send it once"}]


class TestIdempotencyKey:
    async def test_a_retry_writing_1_as_1_0_gets_the_same_ticket(self, intake: Intake
                                                                  ) -> None:
        """One number in JSON: the retry was a 422 `idempotency_key_reused`."""
        ticket = {**TICKET, "customer_id": unique("c")}
        key = {"Idempotency-Key": unique("key")}
        first = await post(intake, orjson.dumps({**ticket, "attributes": {"a": 1}}),
                           headers=key)
        retry = await post(intake, orjson.dumps({**ticket, "attributes": {"a": 1.0}}),
                           headers=key)
        assert (first.status_code, retry.status_code) == (202, 202), retry.text
        assert retry.json()["ticket_id"] == first.json()["ticket_id"]
        other = await post(intake, orjson.dumps({**ticket, "attributes": {"a": 1.5}}),
                           headers=key)
        assert other.status_code == 422
        assert other.json()["fields"][0]["type"] == "idempotency_key_reused"

    @pytest.mark.parametrize("header", ["Idempotency-Key", "X-Correlation-ID"])
    async def test_one_sent_twice_is_a_422_naming_it(self, intake: Intake, header: str
                                                      ) -> None:
        """The first was used, the second dropped silently."""
        twice = [(header, unique("a")), (header, unique("b"))]
        answer = await post(intake, json={**TICKET, "customer_id": unique("c")},
                            headers=twice)
        assert answer.status_code == 422, answer.text
        assert answer.json()["fields"] == [{
            "field": f"header.{header}", "type": "value_error",
            "problem": "sent 2 times: send it once (which one was meant is not for us to"
                       " guess)"}]

    @pytest.mark.parametrize("header", ["Idempotency-Key", "X-Correlation-ID"])
    @pytest.mark.parametrize(("path", "role", "body"), [
        ("/v1/tickets/t-1/events", "admin", {"type": "picked_up"}),
        ("/v1/tickets/t-1/customer-replies", "platform", {})])
    async def test_a_report_sent_with_two_keys_is_a_422_naming_it(
            self, intake: Intake, path: str, role: str, body: dict[str, str], header: str
    ) -> None:
        """As on a ticket: a key or a correlation id sent twice, on a department's report
        or a platform's customer reply."""
        headers = httpx.Headers([(header, "k-1"), (header, "k-2")])
        headers.update(intake.headers(role))
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{intake.url()}{path}", json=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert [problem["field"] for problem in answer.json()["fields"]] == [
            f"header.{header}"]
