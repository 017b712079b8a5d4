"""Typed, validated parameter objects: frozen pydantic models whose errors become ``InvalidRequest``."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from tingyin.errors import InvalidRequest


def invalid_request_from(error: ValidationError) -> InvalidRequest:
    """A pydantic validation error as the core's typed error: one clause per problem, no class names."""
    problems = []
    fields = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
        fields.append(where)
    return InvalidRequest(
        "; ".join(problems) or "invalid parameters", param=fields[0] if fields and fields[0] else None
    )


class FrozenModel(BaseModel):
    """Immutable, unknown fields refused, checked on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, data: Any = None, **fields: Any) -> Self:
        """Build from a mapping (and/or keyword fields), raising ``InvalidRequest`` on a bad value."""
        try:
            return cls.model_validate({**(data or {}), **fields})
        except ValidationError as exc:
            raise invalid_request_from(exc) from None


__all__ = ["FrozenModel", "invalid_request_from"]
