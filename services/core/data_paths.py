"""Where in a record's data a check failed, as an error read in logs and dead-letter
headers names it. pydantic's `loc` holds the fields passed through, and also the keys of
a map the record's writer chose (a ticket's `attributes`, a segmentation's `decided_by`),
which may be personal data (`attributes.Jane Doe`). A part of the path is quoted only when
it is a field of the data the pipeline reads or a word its types allow by name (FIELD_NAMES:
a `deadlines` key such as `resolution`), the name pydantic gives a choice of a field's union
(UNION_CHOICES: a tier's `str-enum[Tier]`) or an index; any other is told by its length
alone. A service's own records that core does not import (a callback's `CallbackData`)
are made known by the module defining them (`know`), so their fields are named too. Pure
but for that list, which only grows by schemas' names."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails, SchemaError, SchemaValidator, ValidationError

from services.core import events, text_forms, tickets

# The marker pydantic puts after a map's key when the key itself is what failed.
_KEY_MARKER = "[key]"


def _field_names(*models: type[BaseModel]) -> frozenset[str]:
    """The names of the models' fields and of the fields of the models they hold."""
    names: set[str] = set()
    seen: set[type[BaseModel]] = set()
    waiting = list(models)
    while waiting:
        model = waiting.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            names.update(part for part in (name, field.alias) if part)
            names.update(_literals_in(field.annotation))
            waiting += _models_in(field.annotation)
    return frozenset(names)


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for argument in typing.get_args(annotation) for model in _models_in(argument)]


def _literals_in(annotation: object) -> list[str]:
    """The words a field's type allows by name (a `Literal`'s values), such as the clock
    targets keying `deadlines`: the schema's, never the writer's."""
    if typing.get_origin(annotation) is typing.Literal:
        return [value for value in typing.get_args(annotation) if isinstance(value, str)]
    return [word for argument in typing.get_args(annotation) for word in _literals_in(argument)]


# The fields of every record the pipeline reads: a ticket at its last stage (routed; the
# received and segmented one hold fewer) and a lifecycle event.
FIELD_NAMES = _field_names(tickets.RoutedTicket, events.TicketEvent)


def _union_choices(*models: type[BaseModel]) -> frozenset[str]:
    """The names pydantic gives the choices of the models' unions in an error's path (a
    tier's `str-enum[Tier]`, `literal['unknown']`), as it names them: each union refusing
    a value no choice takes. Its own words for our types, never a writer's."""
    unions: list[Any] = []
    waiting: list[Any] = [model.__pydantic_core_schema__ for model in models]
    while waiting:
        schema = waiting.pop()
        if isinstance(schema, dict):
            if schema.get("type") == "union":
                unions.append(schema)
            waiting += schema.values()
        elif isinstance(schema, list | tuple):
            waiting += schema
    names: set[str] = set()
    for union in unions:
        try:
            SchemaValidator(union).validate_python(object())
        except ValidationError as refused:
            names.update(str(error["loc"][0]) for error in refused.errors() if error["loc"])
        except SchemaError:  # a union of a model's own definitions: none here
            continue
    return frozenset(names)


UNION_CHOICES = _union_choices(tickets.RoutedTicket, events.TicketEvent)
# The names quoted: the pipeline's, and those of the models made known since (`know`).
_known: set[str] = set(FIELD_NAMES | UNION_CHOICES)


def know(*models: type[BaseModel]) -> None:
    """Name in errors the fields of `models` (and of the models they hold, their
    Literals' words and their unions' choices) as the pipeline's own are named: for a
    service's records that core does not import, called where they are defined."""
    _known.update(_field_names(*models) | _union_choices(*models))


def path_of(loc: Sequence[int | str], *, whole: str = "record") -> str:
    """`loc` as an error names it: its fields and indexes, `whole` if it is empty."""
    return ".".join(_shown(part) for part in loc) or whole


def _shown(part: int | str) -> str:
    if isinstance(part, int) or part in _known or part == _KEY_MARKER:
        return str(part)
    return f"(an unknown name: {len(part)} characters, not shown)"


def reasons(details: Iterable[ErrorDetails], *, whole: str = "record") -> str:
    """pydantic's errors (`errors(include_input=False, include_url=False)`), each as
    `path: message`."""
    return "; ".join(f"{path_of(detail['loc'], whole=whole)}: {text_forms.message(detail)}"
                     for detail in details)
