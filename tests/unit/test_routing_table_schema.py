"""The OpenAPI body schema of a routing table upload (`PUT /v1/routing-table`) and the
loader agree: the schema documents the table, not a string, and what it refuses the
loader refuses too (what only the loader can check is refused with 422 and a line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from services.core import config_files
from services.core.settings import PROJECT_ROOT, Settings
from services.router import app, table_file
from tests.conftest import TEST_ROUTING_TABLE

MEDIA_TYPES = ("application/yaml", "application/json")


def upload_schemas() -> dict[str, Any]:
    operation = app.create_app(Settings()).openapi()["paths"]["/v1/routing-table"]["put"]
    content: dict[str, Any] = operation["requestBody"]["content"]
    return {media_type: content[media_type]["schema"] for media_type in content}


SCHEMA = upload_schemas()["application/yaml"]
MINIMAL = {"fallback_department": "general", "routes": [{"segment": "a", "department": "b"}]}


def readme_example(section: str) -> str:
    """The first YAML block of a README section."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split(f"\n{section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split("```yaml\n", 1)[1].split("```", 1)[0]


def schema_accepts(document: object) -> bool:
    # Through JSON, as a client sends it: YAML dates become text.
    return bool(jsonschema_rs.is_valid(SCHEMA, json.loads(json.dumps(document, default=str))))


def loader_accepts(document: object) -> bool:
    try:
        table_file.parse(yaml.safe_dump(document), "upload")
    except config_files.ConfigError:
        return False
    return True


class TestDocumentedBody:
    def test_yaml_and_json_bodies_are_the_table_itself(self) -> None:
        schemas = upload_schemas()
        assert tuple(schemas) == MEDIA_TYPES
        for schema in schemas.values():
            assert schema["type"] == "object"
            assert set(schema["required"]) == {"fallback_department", "routes"}
            assert schema["additionalProperties"] is False

    @pytest.mark.parametrize("path", [PROJECT_ROOT / "config" / "routing.yaml",
                                      TEST_ROUTING_TABLE])
    def test_the_tables_in_use_match_it(self, path: Path) -> None:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert schema_accepts(document)
        assert loader_accepts(document)

    def test_readmes_example_table_loads(self) -> None:
        """README's Routing section shows a whole table: it is one the loader takes (every
        department it names defined under `departments:`, as README says it must be)."""
        document = yaml.safe_load(readme_example("## Routing"))
        assert schema_accepts(document)
        assert loader_accepts(document)

    def test_readmes_service_level_example_loads_in_a_table(self) -> None:
        """README's Service-level lifecycle section shows part of a table: with a fallback
        department and the departments it names, the loader takes it as written."""
        text = (f"fallback_department: general\n{readme_example('## Service-level lifecycle')}"
                "  general: {}\n  supervisors: {}\n")
        table = table_file.parse(text, "README.md")
        assert table.warning_share == 0.75
        assert table.priority_targets[2].resolution_target is not None

    def test_a_json_body_is_loaded_as_yaml(self) -> None:
        assert table_file.parse(json.dumps(MINIMAL), "upload").routes["a"].department == "b"


class TestSchemaAndLoaderAgree:
    """Schema-invalid is refused by the loader too (a fuzzer's negative cases)."""

    @pytest.mark.parametrize("change", [
        {"fallback_department": "Bad Name!"},
        {"routes": []},
        {"route": []},
        {"defaults": []},
        {"defaults": {"tiers": []}},
        {"defaults": {"priority": 6}},
        {"priority_aging": 15},
        {"priority_aging": "  "},
        {"routes": [{"segment": "a", "department": "b", "refinements": {}}]},
        {"routes": [{"segment": "a", "department": "b", "tiers": {"gold": {}}}]},
        {"routes": [{"segment": "", "department": "b"}]},
        {"routes": [{"segment": "a", "department": "b", "first_response_target": "4 hours"}]},
        {"routes": [{"segment": "a", "department": "b",
                     "refinements": [{"name": " ", "when": "true", "priority": 1}]}]},
        {"departments": []},
        {"departments": {"general": {}, "b": {"calendar": {
            "time_zone": "UTC", "hours": {"mon": "09:00-17:00"}, "holidays": "2025-12-25"}}}},
        {"departments": {"general": {}, "b": {"overflow": {"to": "general", "max_backlog": 0}}}},
        {"departments": {"general": {}, "b": {"overflow": {"to": "general",
                                                           "max_lag": 10 ** 310}}}},
        {"departments": {"general": {}, "b": {"overflow": {
            "to": "general", "max_backlog": 5, "resume_below": None}}}},
        {"departments": {"general": {}, "b": {"escalation_to": 5}}},
        {"priority_targets": []},
        {"priority_targets": {"6": {"resolution_target": "4h"}}},
        {"priority_targets": {"1": {"priority": 2}}},
        {"priority_targets": {"1": {"resolution_target": "soon"}}},
    ])
    def test_what_the_schema_refuses_the_loader_refuses(self, change: dict[str, Any]) -> None:
        document = {**MINIMAL, **change}
        assert not schema_accepts(document)
        assert not loader_accepts(document)

    @pytest.mark.parametrize("change", [
        {"defaults": None, "priority_aging": None, "departments": None, "version": 7},
        {"routes": [{"segment": "a", "department": "b", "tiers": None, "refinements": None,
                     "priority": None, "first_response_target": None}]},
        {"departments": {"general": None, "b": {"after_hours": None, "calendar": None}}},
        {"priority_targets": None},
        {"priority_targets": {"1": {"first_response_target": "15m",
                                    "resolution_target": None}, "5": {}}},
    ])
    def test_null_is_a_missing_entry_for_both(self, change: dict[str, Any]) -> None:
        document = {**MINIMAL, **change}
        assert schema_accepts(document)
        assert loader_accepts(document)
