"""HTTP's optimistic concurrency (RFC 9110) over a configuration in force (segment rules,
routing table), one definition for both: the configuration's GET answers an `ETag`
naming the version it shows, a strong validator (`"8"`: the version id); a change (the
PUT, a rollback) sent with `If-Match` is put in force only while a version it names is
still in force, checked in the store's transaction that writes it
(config_store.ConfigVersions.put_in_force), else 412 naming the version in force, so
that of two admins who read one version the second does not silently undo the first.
`If-Match: *` takes any version in force; a change without If-Match is put in force as
before."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.responses import JSONResponse

from services.core import config_store, http

ETAG = "ETag"
# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc is any visible character but DQUOTE,
# or obs-text (a header is read as Latin-1).
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_LIST_SPACE = re.compile(r"[ \t,]*")
_OWS = re.compile(r"[ \t]*")
_ACCEPTED = ('If-Match takes the ETag a GET answered, quoted as it came ("8"), several'
             ' of them separated by commas, or * for any version in force')


def etag(version_id: int) -> str:
    """The strong validator of a version: its id, quoted."""
    return f'"{version_id}"'


def versions_matched(value: str) -> frozenset[int] | None:
    """The version ids an If-Match value names (None: `*`, any version in force);
    ValueError saying what is wrong when it is neither `*` nor a list of entity tags.
    If-Match compares strongly: a weak tag (W/"8"), or one naming no version, matches
    none."""
    if value.strip(" \t") == "*":
        return None
    named: set[int] = set()
    position, tags = _past(_LIST_SPACE, value, 0), 0
    while position < len(value):
        tag = _ENTITY_TAG.match(value, position)
        if tag is None:
            raise ValueError(f"{value[position:position + 20]!r} is not an entity tag;"
                             f" {_ACCEPTED}")
        weak, opaque = tag.groups()
        if weak is None and opaque.isascii() and opaque.isdigit() \
                and str(int(opaque)) == opaque:
            named.add(int(opaque))
        tags += 1
        position = _past(_OWS, value, tag.end())
        if position < len(value) and value[position] != ",":
            raise ValueError(f"{value[position:position + 20]!r} follows an entity tag"
                             f" where a comma or the end was due; {_ACCEPTED}")
        position = _past(_LIST_SPACE, value, position)
    if not tags:
        raise ValueError(f"empty; {_ACCEPTED}")
    return frozenset(named)


def _past(spaces: re.Pattern[str], value: str, position: int) -> int:
    found = spaces.match(value, position)
    return position if found is None else found.end()


# What versions_matched takes, for the OpenAPI (not enforced by it: versions_matched
# says what is wrong in a 422), ASCII only.
_TAG = r'(W/)?"[!#-~]*"'
_IF_MATCH = rf"^([ \t]*\*[ \t]*|[ \t,]*{_TAG}([ \t]*,[ \t,]*{_TAG})*[ \t,]*)$"


def _if_match_schema(schema: dict[str, Any]) -> None:
    """A text (when sent: the parameter is optional, never `null`) of that pattern."""
    schema.pop("anyOf", None)
    schema.update(type="string", pattern=_IF_MATCH)


async def _if_match(request: Request, _if_match: Annotated[str | None, Header(
        alias="If-Match", json_schema_extra=_if_match_schema,
        description="The ETag of the version the change was made on (as its GET answered"
                    " it): put in force only while that version is in force, else 412;"
                    " * for any version. Without it the change is put in force whatever"
                    " is in force, overwriting a change made meanwhile: send it")] = None,
                    ) -> frozenset[int] | None:
    values = request.headers.getlist("if-match")  # several fields are one list
    if not values:
        return None
    try:
        return versions_matched(", ".join(values))
    except ValueError as exc:
        raise http.InvalidField("header.If-Match", str(exc)) from exc


# The versions a change is conditional on (config_store's `if_in_force`): None, any.
IfMatch = Annotated[frozenset[int] | None, Depends(_if_match)]


def show_version(response: Response, version_id: int | None) -> None:
    """The ETag of the version an answer shows (none before the store was read)."""
    if version_id is not None:
        response.headers[ETAG] = etag(version_id)


def precondition_failed(refused: config_store.NotInForce, *, what: str) -> JSONResponse:
    """412: the version If-Match names is not in force (another admin changed it)."""
    in_force = refused.in_force
    if in_force is None:
        return JSONResponse(status_code=412, content={
            "error": "precondition_failed", "version_id_in_force": None,
            "detail": f"no version of the {what} is in force: send the change without"
                      " If-Match"})
    tag = etag(in_force.version_id)
    return JSONResponse(status_code=412, headers={ETAG: tag}, content={
        "error": "precondition_failed", "version_id_in_force": in_force.version_id,
        "version_in_force": in_force.version, "etag": tag,
        "detail": f"If-Match names no version of the {what} in force: #{in_force.version_id}"
                  f" ({in_force.version}) was put in force since by {in_force.author}."
                  " Nothing was changed. GET it again, merge your change into it, and"
                  f" send that with If-Match: {tag}"})


# OpenAPI: the ETag of an answer showing a version, and the 412 of a change.
_ETAG_DOCS = {ETAG: {"description": "The version in force, as If-Match takes it: its id,"
                                    " quoted (a strong validator)",
                     "schema": {"type": "string"}}}
ETAG_HEADER: dict[int | str, dict[str, Any]] = {200: {"headers": _ETAG_DOCS}}
PRECONDITION_FAILED: dict[int | str, dict[str, Any]] = {412: {
    "description": "`precondition_failed`: If-Match names no version in force (another"
                   " change came first); nothing changed. `version_id_in_force` and the"
                   " ETag name the one in force: GET it again, merge, and retry with its"
                   " ETag", "headers": _ETAG_DOCS}}
