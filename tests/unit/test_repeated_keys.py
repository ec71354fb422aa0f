"""A key given twice in one object of a JSON body is refused, 422 naming `body.<path>`,
on every route of the three services that reads a JSON body: Python's reader (and so
FastAPI's) kept the last one silently, and `{"channel": "fax", "channel": "email"}` was
accepted by email. The services' apps as built (no lifespan: a body is read before the
route's credential is checked), called as ASGI, and the reader itself."""

from __future__ import annotations

import functools
import json

import httpx
import pytest
from fastapi import FastAPI

from services.core import json_text
from services.core.settings import Settings
from services.metrics import app as metrics_app
from services.router import app as router_app
from services.segmenter import app as segmenter_app

APPS = {"router": router_app, "segmenter": segmenter_app, "metrics": metrics_app}


@functools.cache
def app_of(service: str) -> FastAPI:
    built: FastAPI = APPS[service].create_app(Settings())
    return built


def json_operations() -> list[tuple[str, str, str]]:
    """(service, method, path) of every operation of the three that takes a JSON body.
    Not the configuration uploads, which take YAML (JSON being YAML), read by the YAML
    loader, which refuses a key given twice itself, naming its line
    (tests/unit/test_config_files.py)."""
    found = []
    for service in APPS:
        for path, operations in app_of(service).openapi()["paths"].items():
            for method, operation in operations.items():
                content = operation.get("requestBody", {}).get("content", {})
                if "application/json" in content and "application/yaml" not in content:
                    found.append((service, method.upper(), path))
    return found


OPERATIONS = json_operations()


def test_the_services_have_json_bodies_to_check() -> None:
    assert {service for service, _method, _path in OPERATIONS} >= {"router", "segmenter"}
    assert ("router", "POST", "/v1/tickets") in OPERATIONS
    assert len(OPERATIONS) > 10


@pytest.mark.parametrize(("service", "method", "path"), OPERATIONS)
async def test_every_json_route_refuses_a_repeated_key(service: str, method: str,
                                                       path: str) -> None:
    concrete = path.replace("{", "").replace("}", "")  # a value for each path parameter
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_of(service)),
                                 base_url="http://service") as client:
        answer = await client.request(method, concrete, content=b'{"a": 1, "a": 2}',
                                      headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    said = answer.json()
    assert said["error"] == "invalid_request"
    assert said["fields"] == [{
        "field": "body.a", "type": "repeated_key",
        "problem": "the key 'a' is given 2 times in one object: keys must be unique in"
                   " every JSON object (which one was meant is not for us to guess);"
                   " send it once"}]


class TestTheReader:
    def test_reads_what_pythons_reader_reads(self) -> None:
        for text in (b'{"a": [1, 2.5, {"b": null}], "c": "\\u00e9"}', b"[]", b'"x"',
                     b'{"n": NaN}', b'\xef\xbb\xbf{"a": 1}'):
            read, expected = json_text.loads(text), json.loads(text)
            assert json.dumps(read) == json.dumps(expected)

    def test_names_each_repeated_key_by_its_path_in_the_order_of_the_text(self) -> None:
        text = (b'{"channel": "fax", "attributes": {"a": 1, "b": 2, "a": 3},'
                b' "items": [{"x": 1}, {"x": 1, "x": 2, "x": 3}], "channel": "email"}')
        with pytest.raises(json_text.RepeatedKeys) as raised:
            json_text.loads(text)
        assert raised.value.repeated == [(("channel",), 2), (("attributes", "a"), 2),
                                         (("items", 1, "x"), 3)]

    def test_finds_one_as_deep_as_the_reader_goes(self) -> None:
        depth = 900
        text = b'[' * depth + b'{"k": 1, "k": 2}' + b']' * depth
        with pytest.raises(json_text.RepeatedKeys) as raised:
            json_text.loads(text)
        assert raised.value.repeated == [((*[0] * depth, "k"), 2)]

    def test_a_syntax_error_is_the_readers_error_wherever_it_is(self) -> None:
        with pytest.raises(json.JSONDecodeError):
            json_text.loads(b'{"a": 1, "a": 2} x')

    @pytest.mark.parametrize("text", [b'{"a": 1, "A": 2}', b'{"a": {"a": 1}}',
                                      b'[{"a": 1}, {"a": 2}]', b'{"\\u0061b": 1, "ab ": 2}'])
    def test_the_same_key_in_another_object_or_another_key_is_no_repetition(
            self, text: bytes) -> None:
        assert json_text.loads(text) == json.loads(text)
