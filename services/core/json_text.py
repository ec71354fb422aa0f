"""JSON text as every service reads it: as Python's reader does, but a key given twice
in one object is refused (RepeatedKeys), where that reader keeps the last one silently:
`{"channel": "fax", "channel": "email"}` is a mistake to report, not a choice to make
for the sender (RFC 8259 leaves the meaning of such an object to each reader, and
readers differ on which one they keep). Request bodies (json_bodies) and the rows of an
import read this way.

Checked as each object is built (a pairs hook: about a tenth of a microsecond on a
ticket); where the keys are is only worked out for a text that has a repeated one."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

Path = tuple[str | int, ...]


class RepeatedKeys(ValueError):
    """An object of the text gives a key more than once: each such key's path (from the
    text's top, the key last) and how many times it is given, in the order of the text.
    From `unique_object` alone, the path is the key's within its object."""

    def __init__(self, repeated: list[tuple[Path, int]]) -> None:
        path, count = repeated[0]
        super().__init__(f"the key {str(path[-1])!r} is given {count} times in one object")
        self.repeated = repeated


def unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON reader's `object_pairs_hook`: the object, or RepeatedKeys."""
    built = dict(pairs)
    if len(built) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        raise RepeatedKeys([((key,), count) for key, count in counts.items() if count > 1])
    return built


class _Marked(dict[str, Any]):
    """An object with repeated keys, and how many times each was given."""

    repeated: dict[str, int]


def _marking(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    built = dict(pairs)
    if len(built) == len(pairs):
        return built
    marked = _Marked(built)
    marked.repeated = {key: count for key, count in Counter(key for key, _ in pairs).items()
                       if count > 1}
    return marked


# Built once: json.loads with an option builds a decoder per call. NaN and Infinity
# are read as Python's reader reads them: the request models refuse them by field.
_UNIQUE = json.JSONDecoder(object_pairs_hook=unique_object)
_MARKING = json.JSONDecoder(object_pairs_hook=_marking)


def loads(body: bytes) -> Any:
    """The JSON value of `body`, as `json.loads` reads bytes (its encoding told from its
    first bytes, a UTF-8 byte order mark let through); RepeatedKeys, each key's path from
    the top, if objects in it give a key more than once. A syntax error is the reader's
    JSONDecodeError, as before, wherever it is."""
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    try:
        return _UNIQUE.decode(text)
    except RepeatedKeys:
        pass
    raise RepeatedKeys(list(_repeated_keys(_MARKING.decode(text))))


def _repeated_keys(value: Any) -> Iterator[tuple[Path, int]]:
    """Each repeated key's path and count, in the order of the text; without recursion,
    as deep as the reader went."""
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            if isinstance(value, _Marked):
                yield from (((*path, key), count) for key, count in value.repeated.items())
            stack.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in
                         reversed(list(enumerate(value))))
