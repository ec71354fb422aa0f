"""No request field of the three services takes a lone surrogate (JSON's `"\\ud800"`, which
no stage can serialise nor any database store): each refuses it by name, in
text_forms.NOT_UNICODE's words, by its own checks or as a request_bodies.UnicodeText.
Every text a route's body holds is found by walking its model's schema, so that a field
added as a plain `str` is checked too; a route's query and header parameters cannot hold
one: the HTTP layer decodes them before they reach a field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Header, Query
from pydantic import TypeAdapter, ValidationError

from services.core import http, request_bodies, settings, text_forms
from tests.unit.test_text_forms import APPS, _routes

LONE = "\ud800"
Path = tuple[str | int, ...]
_KEY = "<key>"  # a map's key, in a path


def _texts(schema: dict[str, Any], definitions: dict[str, Any], path: Path = (),
           seen: frozenset[str] = frozenset()) -> Iterator[Path]:
    """The path of each text in a core schema (a `str`, or a value a plain function
    reads), a map's key written _KEY."""
    kind = schema["type"]
    if kind == "definitions":
        definitions = {**definitions, **{d["ref"]: d for d in schema["definitions"]}}
        yield from _texts(schema["schema"], definitions, path, seen)
    elif kind == "definition-ref":
        if schema["schema_ref"] not in seen:
            yield from _texts(definitions[schema["schema_ref"]], definitions, path,
                              seen | {schema["schema_ref"]})
    elif kind in ("str", "any", "function-plain"):
        yield path
    elif kind == "model-fields":
        for name, field in schema["fields"].items():
            alias = field.get("validation_alias")
            yield from _texts(field["schema"], definitions,
                              (*path, alias if isinstance(alias, str) else name), seen)
    elif kind in ("list", "set", "frozenset"):
        yield from _texts(schema.get("items_schema", {"type": "any"}), definitions,
                          (*path, 0), seen)
    elif kind == "dict":
        yield from _texts(schema.get("keys_schema", {"type": "any"}), definitions,
                          (*path, _KEY), seen)
        yield from _texts(schema.get("values_schema", {"type": "any"}), definitions,
                          (*path, "k"), seen)
    elif kind == "union":
        for choice in schema["choices"]:
            yield from _texts(choice[0] if isinstance(choice, tuple) else choice,
                              definitions, path, seen)
    elif kind == "tagged-union":
        for choice in schema["choices"].values():
            yield from _texts(choice, definitions, path, seen)
    elif isinstance(schema.get("schema"), dict):  # a model, a default, a validator...
        yield from _texts(schema["schema"], definitions, path, seen)


def _holding(path: Path, text: str) -> Any:
    """A value with `text` at `path`."""
    if not path:
        return text
    step, rest = path[0], path[1:]
    if step == _KEY:
        return {text: 1} if not rest else {text: _holding(rest, "x")}
    if isinstance(step, int):
        return [_holding(rest, text)]
    return {step: _holding(rest, text)}


def _refused_as_no_unicode(adapter: TypeAdapter[Any], path: Path) -> bool:
    try:
        adapter.validate_python(_holding(path, LONE))
    except ValidationError as refused:
        return any(error["loc"][:1] == path[:1]
                   and request_bodies.message_of(error) == text_forms.NOT_UNICODE
                   for error in refused.errors())
    return False


def _body_texts(app: FastAPI) -> Iterator[tuple[str, type[Any], Path]]:
    for route in _routes(app.routes):
        for parameter in route.dependant.body_params:
            model = parameter.field_info.annotation
            for path in _texts(TypeAdapter(model).core_schema, {}):
                yield route.path, model, path


class TestEveryBodyText:
    @pytest.mark.parametrize("service", list(APPS))
    def test_refuses_a_lone_surrogate_by_name_in_words(self, service: str) -> None:
        app: FastAPI = APPS[service].create_app(settings.Settings())
        texts = list(_body_texts(app))
        assert texts or service == "metrics"  # which reads no body
        taken = {(route, model.__qualname__, path) for route, model, path in texts
                 if not _refused_as_no_unicode(TypeAdapter(model), path)}
        assert not taken

    def test_finds_texts_in_lists_maps_and_under_other_checks(self) -> None:
        found = {(model.__qualname__, path) for service in APPS for _, model, path
                 in _body_texts(APPS[service].create_app(settings.Settings()))}
        assert {("ReplayRequest", ("ids", 0)), ("TicketSubmission", ("attributes", _KEY)),
                ("TicketSubmission", ("attributes", "k")), ("EndpointRequest", ("url",)),
                ("SimulationRequest", ("table",))} <= found


class TestWhereItIsNamed:
    def _errors(self, model: type[Any], body: dict[str, Any]) -> list[tuple[Any, str]]:
        with pytest.raises(ValidationError) as refused:
            model.model_validate(body)
        return [(error["loc"], request_bodies.message_of(error))
                for error in refused.value.errors()]

    def test_a_text_before_its_own_checks(self) -> None:
        """A URL's check would say it is no URL the sender can parse."""
        from services.webhooks import api

        assert self._errors(api.EndpointRequest, {
            "platform": "desk", "url": f"https://desk.example.com/hooks/{LONE}"}) == [
            (("url",), text_forms.NOT_UNICODE)]

    def test_one_in_a_list_where_its_item_is(self) -> None:
        from services.router import dead_letters_api

        assert self._errors(dead_letters_api.ReplayRequest, {"ids": ["0:1", LONE]}) == [
            (("ids", 1), text_forms.NOT_UNICODE)]


class TestParametersCannotHoldOne:
    """A query's percent-escapes are read as UTF-8 with each undecodable byte replaced
    (U+FFFD), a header as Latin-1: neither gives a lone surrogate to a field."""

    async def test_a_query_or_header_of_a_surrogates_bytes(self) -> None:
        service = FastAPI()

        @service.get("/things")
        async def get(window: Annotated[str, Query()],
                      if_match: Annotated[str, Header()]) -> dict[str, str]:
            return {"window": window, "if_match": if_match}

        http.install(service, ready=lambda: True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service),
                                     base_url="http://test") as client:
            answer = await client.get("/things?window=%ED%A0%80",
                                      headers={"if-match": b"\xed\xa0\x80"})
        assert answer.status_code == 200
        assert answer.json() == {"window": "\ufffd" * 3, "if_match": "\xed\xa0\x80"}
