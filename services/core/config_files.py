"""Loading the YAML files people edit, with errors that name the file, line and entry."""

from __future__ import annotations

import asyncio
import datetime
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import yaml

from services.core import tickets, unicode_errors, versions


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message says where and why."""

    def __init__(self, path: Path | str, line: int | None, entry: str | None, problem: str):
        self.path = str(path)
        self.line = line
        self.entry = entry
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        subject = f" (entry {entry!r})" if entry else ""
        super().__init__(f"{where}{subject}: {problem}")


_MERGE = "tag:yaml.org,2002:merge"


_TOO_DEEP = "nested too deeply (a file people edit needs a few levels)"


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers, for every mapping, the line it starts on, and for
    every list the line of each item. A value written as a date or a time
    (`2025-12-25`) is read as the text written: the field that takes a date checks it,
    naming its entry (`2025-02-30` is no date, and a version label may look like one).
    A value its tag's type cannot hold (`!!int abc`, `!!timestamp 2025-02-30`, an
    integer of thousands of digits) is an error at its line, as is a key given twice in
    one mapping, and nesting past what Python's stack can follow (composed or built) at
    the line of the node it reached."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # The node's mark is taken first: near the stack's limit, the parser cannot be
        # asked again. Too deep to make the error here, the caller's node makes it.
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        try:
            return super().compose_node(parent, index)
        except RecursionError as exc:
            raise yaml.composer.ComposerError(None, None, _TOO_DEEP, mark) from exc

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except RecursionError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, _TOO_DEEP, node.start_mark) from exc
        except Exception as exc:  # each constructor fails its own way on a bad value
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"this {kind} cannot be read: {exc}", node.start_mark) from exc


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    first_on: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:  # `<<: *defaults`: keys given after it override
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = first_on.get(key)
        except TypeError:
            continue  # a key no mapping can hold (a list): construct_mapping says so
        if first is not None:
            same = "" if str(key) == key_node.value else f" ({key_node.value!r} is the same)"
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice in one mapping{same}, first on"
                f" line {first}", key_node.start_mark)
        first_on[key] = key_node.start_mark.line + 1
    mapping = _Mapping(loader.construct_mapping(node, deep=True), first_on)  # type: ignore[arg-type]
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


class _Mapping(dict[str, Any]):
    """A mapping as YAML gave it, knowing the line each of its keys is on (key_line)."""

    def __init__(self, items: Mapping[str, Any], key_lines: dict[Any, int]) -> None:
        super().__init__(items)
        self.key_lines = key_lines


def _list_with_lines(loader: _LineLoader, node: yaml.SequenceNode) -> list[Any]:
    return _List(loader.construct_sequence(node, deep=True),
                 [item.start_mark.line + 1 for item in node.value])


class _List(list[Any]):
    """A list as YAML gave it, knowing the line each of its items is on (item_line)."""

    def __init__(self, items: Iterable[Any], item_lines: list[int]) -> None:
        super().__init__(items)
        self.item_lines = item_lines


def _text(loader: _LineLoader, node: yaml.ScalarNode) -> str:
    """Text every service can serialise and store: a YAML escape can spell a lone
    surrogate or a NUL, which no JSON answer or database column can hold."""
    value = str(loader.construct_scalar(node))
    try:
        return tickets.valid_text(value)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(None, None, str(exc), node.start_mark) from exc


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _list_with_lines)
_LineLoader.add_constructor("tag:yaml.org,2002:str", _text)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


_P = ParamSpec("_P")
_T = TypeVar("_T")


async def parse_off_the_loop(parse: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
                             ) -> _T:
    """`parse(...)` on a worker thread, for a service that parses a configuration while
    it serves (an upload, a dry run, a version put in force elsewhere, a simulation):
    reading the YAML and compiling and probing the conditions of the largest file takes
    up to a second or two of CPU, which on the event loop would hold every request and
    record the service has in hand. The loop still runs between the parser's turns."""
    return await asyncio.to_thread(parse, *args, **kwargs)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, None, f"cannot read the file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, None, "cannot read the file: it is not UTF-8 text ("
                          + unicode_errors.problem(exc) + ")") from exc


# The most a configuration file may hold, written out as UTF-8. The files people edit
# are a few kilobytes (the demo's routing table 2.7 KB, with hundreds of departments and
# rules still tens); reading YAML costs about 6 seconds of CPU a megabyte, which every
# instance spends again when a version is put in force.
CONFIG_MAX_BYTES = 256 * 1024


def load_yaml(path: Path | str, text: str) -> dict[str, Any]:
    """Parse a YAML mapping; every mapping in it gets a `__line__` key, and knows the
    line of each of its keys (key_line). A text over CONFIG_MAX_BYTES is refused before
    it is read."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > CONFIG_MAX_BYTES:
        raise ConfigError(path, None, None, f"the file is {size:,} bytes, at most"
                                            f" {CONFIG_MAX_BYTES:,} (256 KiB)")
    try:
        document = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(path, line, None, f"not valid YAML: {exc.problem}") from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not take, anywhere
        raise _unreadable(path, text, exc) from exc
    except RecursionError as exc:  # not expected: _LineLoader names the line it reached
        raise ConfigError(path, None, None, f"not valid YAML: {_TOO_DEEP}") from exc
    if not isinstance(document, dict):
        raise ConfigError(path, 1, None, "the file must hold a YAML mapping at the top level")
    return document


def _unreadable(path: Path | str, text: str, error: yaml.reader.ReaderError) -> ConfigError:
    before = text[:error.position]
    line, column = before.count("\n") + 1, error.position - (before.rfind("\n") + 1) + 1
    character = error.character if isinstance(error.character, int) else ord(error.character)
    return ConfigError(path, line, None, f"not valid YAML: the character U+{character:04X} at"
                                         f" column {column} is not allowed (YAML takes"
                                         " printable characters, tabs and line breaks)")


def unknown_keys(mapping: Mapping[Any, Any], accepted: Iterable[str]) -> list[str]:
    """The keys of `mapping` that are not `accepted` (nor its `__line__`), as text, in
    order. YAML takes keys of other types too (`1:`, `true:`, a date), and such keys
    cannot be sorted among text ones."""
    known = {*accepted, "__line__"}
    return sorted(str(key) for key in mapping if key not in known)


def unknown_key_line(mapping: Any, accepted: Iterable[str]) -> int | None:
    """The line of the first key of `mapping`, in the file, that is not `accepted` (the
    mapping's own line when that key's is not known)."""
    known = {*accepted, "__line__"}
    lines = mapping.key_lines if isinstance(mapping, _Mapping) else {}
    return next((line for key, line in lines.items() if key not in known), line_of(mapping))


def file_version(source: Path | str, document: Mapping[str, Any], text: str) -> str:
    """The file's version: its `version:` label (text, a number or a date, of at most
    versions.MAX_LABEL characters) with a digest of its text, or the digest alone."""
    declared = document.get("version")
    if not _a_label(declared) or len(str(declared)) > versions.MAX_LABEL:
        raise ConfigError(source, key_line(document, "version"), "version",
                          "version is a label (text, a number or a date) of at most"
                          f" {versions.MAX_LABEL} characters")
    return versions.content_version(declared, text)


def _a_label(declared: object) -> bool:
    """What YAML reads a version written as a label into: not a mapping or a list, not
    true/false, nor a number that is no number (`.nan`, `.inf`)."""
    if declared is None or isinstance(declared, str | datetime.date):
        return True
    if isinstance(declared, bool):
        return False
    return isinstance(declared, int) or (isinstance(declared, float)
                                         and math.isfinite(declared))


def line_of(mapping: Any) -> int | None:
    return mapping.get("__line__") if isinstance(mapping, dict) else None


def key_line(mapping: Any, key: str) -> int | None:
    """The line `key` of `mapping` is on: the mapping's own line when it does not hold
    the key, a merge (`<<:`) brought it, or the mapping was not read from YAML."""
    lines = mapping.key_lines if isinstance(mapping, _Mapping) else {}
    return lines.get(key, line_of(mapping))


def item_line(items: Any, index: int, otherwise: int | None) -> int | None:
    """The line item `index` of a list is on (`otherwise` when it was not read from
    YAML)."""
    lines = items.item_lines if isinstance(items, _List) else []
    return lines[index] if 0 <= index < len(lines) else otherwise


def without_lines(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if key != "__line__"}
