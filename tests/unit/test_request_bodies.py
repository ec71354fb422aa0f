"""A request body is refused at once when it is far too large in count (more fields than
any body of ours has, more attributes than a ticket takes), before its entries are
read, and a 422 names at most MAX_FIELD_ERRORS problems: a body of 70,000 bad entries,
under the 1 MiB limit, was answered with megabytes after a second of the event loop. A
body that is not JSON is told why, and how to send one. The app is the services' shared
HTTP edge (http.install) with the intake's and a transfer's models, called as ASGI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from services.core import http, language_tags, request_bodies, tickets
from services.router.intake import TicketSubmission
from services.router.tickets_api import Transfer

TICKET = {"customer_id": "c-1", "subject": "s", "body": "b", "channel": "email"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()

    @app.post("/tickets")
    async def post_ticket(ticket: TicketSubmission) -> dict[str, str]:
        return {"customer_id": ticket.customer_id}

    @app.post("/tickets/language")
    async def language_of(ticket: TicketSubmission) -> dict[str, str | None]:
        return {"language": ticket.language}

    @app.post("/transfer")
    async def transfer(body: Transfer) -> dict[str, str]:
        return {"to": body.to_department}

    http.install(app, ready=lambda: True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as calling:
        yield calling


async def posted(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    return await client.post(path, content=orjson.dumps(body),
                             headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("path", ["/tickets", "/transfer"])
async def test_a_body_of_very_many_fields_is_refused_whole(client: httpx.AsyncClient,
                                                           path: str) -> None:
    body = {**TICKET, "to_department": "a", "reason": "r",
            **{f"f{n}": [] for n in range(70_000)}}
    answer = await posted(client, path, body)
    assert answer.status_code == 422
    [problem] = answer.json()["fields"]
    assert problem["field"] == "body"
    assert problem["problem"].startswith(
        f"at most {request_bodies.MAX_FIELDS} fields, not 70")
    assert len(answer.content) < 1_000


async def test_unknown_fields_up_to_the_bound_are_each_named(client: httpx.AsyncClient
                                                             ) -> None:
    unknown = {f"f{n}": 1 for n in range(request_bodies.MAX_FIELDS - len(TICKET))}
    answer = await posted(client, "/tickets", {**TICKET, **unknown})
    assert answer.status_code == 422
    assert {problem["field"] for problem in answer.json()["fields"]} == {
        f"body.{name}" for name in unknown}


async def test_attributes_past_the_most_are_refused_before_any_is_read(
        client: httpx.AsyncClient) -> None:
    body = {**TICKET, "attributes": {f"\u0000{n}": [] for n in range(60_000)}}
    answer = await posted(client, "/tickets", body)
    assert answer.status_code == 422
    assert answer.json()["fields"] == [{
        "field": "body.attributes", "type": "value_error",
        "problem": f"at most {tickets.MAX_ATTRIBUTES} entries, not 60000"}]
    at_most = {**TICKET, "attributes": {f"a{n}": n for n in range(tickets.MAX_ATTRIBUTES)}}
    assert (await posted(client, "/tickets", at_most)).status_code == 200


async def test_a_422_names_the_first_problems_and_counts_the_rest(
        client: httpx.AsyncClient) -> None:
    # 50 attributes, each with a bad name and a bad value, and 40 unknown fields: 140.
    body = {**TICKET, "attributes": {f"\u0000{n}": [] for n in range(50)},
            **{f"f{n}": 1 for n in range(40)}}
    answer = await posted(client, "/tickets", body)
    assert answer.status_code == 422
    problems = answer.json()["fields"]
    assert len(problems) == http.MAX_FIELD_ERRORS + 1
    assert problems[-1] == {"field": "body", "type": "too_many_errors",
                            "problem": "40 more problems not named here: mend these first"}


@pytest.mark.parametrize(("content", "content_type", "says"), [
    (b'{"customer_id": "c-1",}', "application/json", "not valid JSON: Expecting property"
                                                     " name enclosed in double quotes"),
    (orjson.dumps(TICKET), "text/plain", "Content-Type: application/json"),
])
async def test_a_body_that_is_not_json_is_told_how_to_send_one(
        client: httpx.AsyncClient, content: bytes, content_type: str, says: str) -> None:
    answer = await client.post("/tickets", content=content,
                               headers={"Content-Type": content_type})
    assert answer.status_code == 422
    [problem] = answer.json()["fields"]
    assert says in problem["problem"] and "UTF-8" in problem["problem"]


@pytest.mark.parametrize(("subject", "problem"), [
    ("x" * 600, "Text should have at most 500 characters, not 600"),
    ("", "Text should have at least 1 character")])
async def test_a_text_of_the_wrong_length_is_counted_in_characters(
        client: httpx.AsyncClient, subject: str, problem: str) -> None:
    """Text checked by its own rules (no NUL, valid Unicode) before its length: pydantic
    would say "items"."""
    answer = await posted(client, "/tickets", {**TICKET, "subject": subject})
    assert answer.status_code == 422
    assert answer.json()["fields"] == [
        {"field": "body.subject", "type": "too_long" if subject else "too_short",
         "problem": problem}]


class TestASubjectSaysSomething:
    """A new ticket's subject of only spaces tells a department nothing: refused at the
    intake, as its schema says (the records' contract still reads one: test_contracts)."""

    @pytest.mark.parametrize("subject", [" ", "   ", "\t\n", "\u00a0\u3000\ufeff", "\u0085",
                                         "\u200b\u200c\u200d\u2060", "\u180e "])
    async def test_only_spaces_is_refused_naming_the_subject(self, client: httpx.AsyncClient,
                                                            subject: str) -> None:
        answer = await posted(client, "/tickets", {**TICKET, "subject": subject})
        assert answer.status_code == 422
        assert answer.json()["fields"] == [{
            "field": "body.subject", "type": "value_error",
            "problem": "must say something: it holds only spaces"}]

    @pytest.mark.parametrize("subject", ["x", "  Invoice  ", "\u200bx", "\u3000?"])
    async def test_text_among_spaces_is_taken(self, client: httpx.AsyncClient,
                                              subject: str) -> None:
        answer = await posted(client, "/tickets", {**TICKET, "subject": subject})
        assert answer.status_code == 200

    def test_the_schema_says_it_with_the_validators_pattern(self) -> None:
        schema = TicketSubmission.model_json_schema()["properties"]["subject"]
        assert schema["pattern"] == tickets.NOT_ONLY_SPACES
        assert (schema["minLength"], schema["maxLength"]) == (1, tickets.MAX_SUBJECT)
        pattern = re.compile(tickets.NOT_ONLY_SPACES)
        for spaces in (" ", "\t\n", "\u00a0\u3000\ufeff", "\u0085\u200b"):
            assert not pattern.search(spaces)
        assert pattern.search(" x ")


class TestALanguageIsABcp47Tag:
    """A ticket's `language` is any well-formed BCP 47 tag (RFC 5646), in any case, kept
    in the case BCP 47 recommends so that rules comparing it hold whatever case came;
    the intake refused "zh-Hant-TW" and "EN" as not matching `^[a-z]{2,3}(-...)?$`."""

    @pytest.mark.parametrize(("sent", "kept"), [
        ("en", "en"), ("EN", "en"), ("nl-BE", "nl-BE"), ("nl-be", "nl-BE"),
        ("zh-Hant-TW", "zh-Hant-TW"), ("ZH-hant-tw", "zh-Hant-TW"), ("es-419", "es-419"),
        ("sr-Latn-RS", "sr-Latn-RS"), ("de-CH-1901", "de-CH-1901"),
        ("sl-rozaj-biske", "sl-rozaj-biske"), ("zh-yue-HK", "zh-yue-HK"),
        ("en-US-u-ca-gregory", "en-US-u-ca-gregory"), ("en-a-BB-x-CC", "en-a-bb-x-cc"),
        ("gsw", "gsw")])
    async def test_a_well_formed_tag_is_taken_in_its_canonical_case(
            self, client: httpx.AsyncClient, sent: str, kept: str) -> None:
        answer = await posted(client, "/tickets/language", {**TICKET, "language": sent})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"language": kept}

    async def test_underscores_are_told_to_be_hyphens(self, client: httpx.AsyncClient
                                                      ) -> None:
        answer = await posted(client, "/tickets", {**TICKET, "language": "pt_BR"})
        assert answer.status_code == 422
        assert answer.json()["fields"] == [{
            "field": "body.language", "type": "value_error",
            "problem": "a language tag's parts are joined by hyphens, not underscores"
                       " (e.g. 'pt-BR', not 'pt_BR')"}]

    @pytest.mark.parametrize("sent", ["e", "english", "en-", "en--US", "x-private",
                                      "i-klingon", "en-GB-oed", "en-12", "en US", "en\n",
                                      "én", "", "en-" + "a" * 9, "en-" + "-".join(
                                          ["abcde"] * 11)])
    async def test_anything_else_is_refused_saying_what_is_accepted(
            self, client: httpx.AsyncClient, sent: str) -> None:
        answer = await posted(client, "/tickets", {**TICKET, "language": sent})
        assert answer.status_code == 422
        [problem] = answer.json()["fields"]
        assert problem["field"] == "body.language"
        assert "a language of 2 or 3 letters" in problem["problem"]
        assert "'zh-Hant-TW'" in problem["problem"]

    def test_the_schema_says_it_with_the_validators_pattern(self) -> None:
        schema = TicketSubmission.model_json_schema()["properties"]["language"]["anyOf"][0]
        assert schema["pattern"] == language_tags.PATTERN
        assert schema["maxLength"] == language_tags.MAX_LENGTH
        assert "BCP 47" in schema["description"] and "zh-Hant-TW" in schema["description"]
        pattern = re.compile(language_tags.PATTERN)
        for tag in ("zh-Hant-TW", "EN", "es-419", "en-US-u-ca-gregory"):
            assert pattern.search(tag)
        for not_a_tag in ("pt_BR", "x-private", "en-12", "english"):
            assert not pattern.search(not_a_tag)
