"""What every JSON request body of ours is: a field it does not know is refused by name,
and a body of very many fields is refused whole, before any is read (pydantic would give
one error each: 90,000 unknown fields cost the event loop most of a second, and an answer
of megabytes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

# Far more than any body of ours has (the most, a customer of an import, has 11).
MAX_FIELDS = 100


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _not_too_many_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > MAX_FIELDS:
            raise ValueError(f"at most {MAX_FIELDS} fields, not {len(data)}; the fields"
                             f" known: {', '.join(cls.model_fields)}")
        return data
