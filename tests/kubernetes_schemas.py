"""Kubernetes JSON schemas for kubeconform, without the network.

kubeconform downloads its schemas from GitHub, which our machines cannot reach. The PyPI
package kubernetes-validate ships the same OpenAPI-derived schemas for each Kubernetes
release (`bin/setup --test` unpacks it into .cache/), as one file per kind whose `$ref`s
point at a shared `/api/_definitions.json`. kubeconform wants one self-contained file per
kind, so `standalone` copies the definitions a kind uses into it, under `$defs`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from services.core.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / ".cache" / "kubernetes-validate-1.37.0" / "kubernetes_validate"
SCHEMAS = PACKAGE / "kubernetes-json-schema"
SHARED_REF = "/api/_definitions.json#/$defs/"
# kubeconform's names for a schema file: <version>-standalone-strict/<kind><suffix>.json
LOCATION = ("{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/"
            "{{ .ResourceKind }}{{ .KindSuffix }}.json")


def source(version: str) -> Path:
    """kubernetes-validate's strict schemas of a Kubernetes version such as 1.33.0."""
    return SCHEMAS / f"v{version}-local-strict"


def standalone(version: str, schema_files: list[str], out: Path) -> Path:
    """Self-contained copies of the named schema files (e.g. deployment-apps-v1.json)
    under out/v<version>-standalone-strict/; returns `out`."""
    definitions = json.loads((source(version) / "_definitions.json").read_text("utf-8"))["$defs"]
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    for name in schema_files:
        schema = json.loads((source(version) / name).read_text("utf-8"))
        text = json.dumps(schema).replace(f'"{SHARED_REF}', '"#/$defs/')
        used = _closure(text, definitions)
        merged: dict[str, Any] = json.loads(text)
        merged.pop("$id", None)
        merged["$defs"] = {key: definitions[key] for key in sorted(used)}
        (target / name).write_text(json.dumps(merged), encoding="utf-8")
    return out


def _closure(text: str, definitions: dict[str, Any]) -> set[str]:
    """The definitions a schema refers to, directly or through other definitions."""
    used: set[str] = set()
    pending = set(_refs(text))
    while pending:
        key = pending.pop()
        if key in used:
            continue
        used.add(key)
        pending |= _refs(json.dumps(definitions[key])) - used
    return used


def _refs(text: str) -> set[str]:
    return set(re.findall(r'"#/\$defs/([^"]+)"', text))
