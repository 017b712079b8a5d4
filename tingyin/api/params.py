"""Typed, bounded request parameters: one way to read a number, a flag or a string from a request.

Each helper raises ``InvalidRequest`` with the parameter's name; the adapters render it in their
vendor's dialect. A value of the wrong type is refused, never converted with ``str()`` or ``int()``
(an object is not a user id, 16000.7 is not a sample rate, 10**19 is not a count).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import StringConstraints

from tingyin.errors import InvalidRequest

# Control characters (NUL included) have no place in a name or a phrase; text may keep \t and \n.
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INT_TEXT = re.compile(r"^[+-]?[0-9]{1,18}$")


def bounded_text(max_length: int, *, min_length: int = 0) -> Any:
    """A pydantic string type: at most ``max_length`` characters, no control characters."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_CONTROL)]


Name = bounded_text(64, min_length=1)
Label = bounded_text(64, min_length=1)
Contact = bounded_text(128)
Text = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]


def integer(value: Any, name: str, *, low: int, high: int, digits_ok: bool = True) -> int:
    """An integer from ``low`` to ``high``: a JSON number without fraction, or (``digits_ok``) a
    string of digits as query strings and forms carry them. Booleans are not integers here."""
    if isinstance(value, bool):
        raise InvalidRequest(f"{name} must be an integer")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if isinstance(value, str) and digits_ok and INT_TEXT.match(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low} to {high}")
    return value


def number(value: Any, name: str, *, low: float, high: float) -> float:
    """A finite number from ``low`` to ``high`` (a JSON number, or a numeric string)."""
    if isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidRequest(f"{name} must be a number") from None
    if not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def string(value: Any, name: str, *, max_length: int, numbers_ok: bool = False) -> str:
    """A string of at most ``max_length`` characters without control characters (``numbers_ok``:
    an integer is taken as its digits, for ids that some clients send as numbers)."""
    if numbers_ok and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    if len(value) > max_length:
        raise InvalidRequest(f"{name} holds at most {max_length} characters")
    if LINE_CONTROL.search(value):
        raise InvalidRequest(f"{name} must not contain control characters")
    return value


def flag(value: Any, name: str, default: bool) -> bool:
    """true/false, 1/0, "true"/"false", "1"/"0" (any case); absent means ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidRequest(f"{name} must be true or false")


def json_object(value: Any, name: str) -> dict[str, Any]:
    """An optional JSON object member (absent or null: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be an object")
    return value
