"""What every service's OpenAPI says about its error answers, so that clients (and the
schemathesis fuzz tests) can rely on it: one error shape for every 4xx and 5xx, the
statuses the shared pieces answer documented on each operation they guard, and the
`Retry-After` of every 503 and 429 documented, wherever it is. A 503 declared with a
model of its own (a probe's: services/core/health.py) is a state, not an error: kept as
declared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "FieldProblem": {
        "type": "object",
        "required": ["field", "problem", "type"],
        "properties": {
            "field": {"type": "string", "description": "where, e.g. body.customer_id"},
            "problem": {"type": "string", "description": "what was wrong and what is accepted"},
            "type": {"type": "string", "description": "a stable code, e.g. missing"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "description": "Every error answer: a stable code and a `detail` in words; where"
                       " fields were refused (a 422, an unreadable body's 400, a compressed"
                       " body's 415), also the `fields`, `detail` then saying the first of"
                       " them. A refused configuration file also names its `file`, `line`"
                       " and `rule`.",
        "properties": {
            "error": {"type": "string", "description": "e.g. invalid_request, not_found"},
            "detail": {"type": "string"},
            "fields": {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}},
            "field": {"type": "string", "deprecated": True,
                      "description": "a 400's one field (`body`), as in `fields`: read"
                                     " `fields`"},
        },
    },
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_FRAMEWORK_SCHEMAS = ("HTTPValidationError", "ValidationError")

# Statuses the shared pieces answer, and on which operations.
UNAUTHENTICATED = "No credential, or one that is unknown, revoked or malformed"
FORBIDDEN = "The credential's role (or department) does not allow this"
NOT_FOUND = "Nothing of that name (the resource the path names, if it has to exist)"
UNREADABLE = "The body cannot be read as JSON text (e.g. it is not UTF-8)"
TOO_LARGE = "The request body is over the service's limit"
COMPRESSED = ("The body is sent compressed (a Content-Encoding other than identity): send"
              " it uncompressed")
INVALID = "The request was refused: the fields that were wrong, and why"

# The header of an answer that asks the caller to retry later: every 503 and 429 of ours
# sends it, and every one documented says so (document_errors).
RETRY_AFTER: dict[str, Any] = {"Retry-After": {
    "description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}}
_RETRY_LATER = ("429", "503")


def install(app: FastAPI) -> None:
    """Document the error answers in the app's OpenAPI, whenever it is generated."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    documented: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not documented or documented[0] is not schema:
            document_errors(schema, body_limit_exempt=("/import",))
            documented[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(schema: dict[str, Any], *, body_limit_exempt: tuple[str, ...]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _FRAMEWORK_SCHEMAS:
        components.pop(name, None)  # FastAPI's own 422 shape, which is not what we send
    components.update(ERROR_SCHEMAS)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("401", {"description": UNAUTHENTICATED})
                responses.setdefault("403", {"description": FORBIDDEN})
            if any(parameter.get("in") == "path" for parameter in operation.get("parameters", ())):
                responses.setdefault("404", {"description": NOT_FOUND})
            if "requestBody" in operation and not path.endswith(body_limit_exempt):
                responses.setdefault("413", {"description": TOO_LARGE})
            if "requestBody" in operation:
                responses.setdefault("415", {"description": COMPRESSED})
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                responses.setdefault("400", {"description": UNREADABLE})
            if "422" in responses or "requestBody" in operation or operation.get("parameters"):
                described = responses.get("422", {}).get("description", "Validation Error")
                responses["422"] = {
                    "description": INVALID if described == "Validation Error" else described}
            for status, response in responses.items():
                if status[0] in "45" and not _shaped_its_own(response):
                    response["content"] = _ERROR_CONTENT
                    if status in _RETRY_LATER:
                        response["headers"] = {**RETRY_AFTER, **response.get("headers", {})}


def _shaped_its_own(response: dict[str, Any]) -> bool:
    """An answer declared with a model of its own (a probe's 503: services/core/health.py),
    not an error: neither the framework's 422 shape nor none."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return "$ref" in schema and \
        schema["$ref"].rsplit("/", 1)[-1] not in _FRAMEWORK_SCHEMAS
