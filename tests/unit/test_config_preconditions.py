"""If-Match over a configuration in force (services/core/config_preconditions.py): what a
header value names, and what the routing table's and the segment rules' OpenAPI say of
the ETag, the If-Match header and the 412."""

from __future__ import annotations

from typing import Any

import pytest

from services.core import config_preconditions
from services.core.settings import Settings
from services.router import app as router_app
from services.segmenter import app as segmenter_app


class TestIfMatchValues:
    @pytest.mark.parametrize(("value", "named"), [
        ('"8"', {8}),
        ('"8", "9"', {8, 9}),
        (' "8" ,, "9" ', {8, 9}),
        ('W/"8"', set()),  # If-Match compares strongly: a weak tag matches nothing
        ('"08"', set()),  # nor a tag that is not the version's own
        ('"a,b"', set()),  # a comma inside a tag is the tag's
        ('"8", W/"9"', {8}),
    ])
    def test_the_versions_a_list_of_tags_names(self, value: str, named: set[int]) -> None:
        assert config_preconditions.versions_matched(value) == named

    @pytest.mark.parametrize("value", ["*", " * "])
    def test_a_star_takes_any_version(self, value: str) -> None:
        assert config_preconditions.versions_matched(value) is None

    @pytest.mark.parametrize("value", ["8", "", ", ,", '"8" "9"', '"8', "*, \"8\""])
    def test_what_is_not_a_list_of_tags_is_refused_saying_what_is_taken(
            self, value: str) -> None:
        with pytest.raises(ValueError, match="If-Match takes the ETag a GET answered"):
            config_preconditions.versions_matched(value)

    def test_an_etag_is_the_version_id_quoted(self) -> None:
        assert config_preconditions.etag(8) == '"8"'
        assert config_preconditions.versions_matched(config_preconditions.etag(8)) == {8}


def _operations() -> list[tuple[str, dict[str, Any]]]:
    router = router_app.create_app(Settings()).openapi()["paths"]
    segmenter = segmenter_app.create_app(Settings()).openapi()["paths"]
    return [(f"{method.upper()} {path}", paths[path][method])
            for paths, prefix in ((router, "/v1/routing-table"),
                                  (segmenter, "/v1/segment-rules"))
            for path, method in ((prefix, "put"),
                                 (f"{prefix}/versions/{{version_id}}/rollback", "post"))]


class TestOpenApi:
    @pytest.mark.parametrize(("name", "operation"), _operations())
    def test_a_change_documents_if_match_the_412_and_the_etag(
            self, name: str, operation: dict[str, Any]) -> None:
        [header] = [parameter for parameter in operation["parameters"]
                    if parameter["in"] == "header"]
        assert header["name"] == "If-Match" and not header.get("required")
        assert "412" in header["description"]
        assert "precondition_failed" in operation["responses"]["412"]["description"]
        assert "ETag" in operation["responses"]["200"]["headers"]

    @pytest.mark.parametrize("create_app", [router_app.create_app,
                                            segmenter_app.create_app])
    def test_the_get_documents_the_etag(self, create_app: Any) -> None:
        paths = create_app(Settings()).openapi()["paths"]
        [path] = [p for p in ("/v1/routing-table", "/v1/segment-rules") if p in paths]
        assert "ETag" in paths[path]["get"]["responses"]["200"]["headers"]
