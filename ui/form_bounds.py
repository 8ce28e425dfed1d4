"""A schema's bounds as words for people and as the HTML ``min``/``max`` attributes of a field."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional, Tuple


def bounds_text(schema: Mapping[str, Any]) -> str:
    """``Must be greater than 0 and at most 1.`` from a schema's bounds ("" when it has none)."""
    words = (
        ("minimum", "at least"),
        ("exclusiveMinimum", "greater than"),
        ("maximum", "at most"),
        ("exclusiveMaximum", "less than"),
    )
    parts = [f"{phrase} {_show(schema[name])}" for name, phrase in words if _is_number(schema.get(name))]
    return f"Must be {' and '.join(parts)}." if parts else ""


def join_sentences(*parts: str) -> str:
    """``"Learning rate of the model. Must be greater than 0."``: parts end with a full stop."""
    sentences = [part.strip() for part in parts if part and part.strip()]
    return " ".join(part if part[-1] in ".!?" else part + "." for part in sentences)


def html_bounds(schema: Mapping[str, Any]) -> Tuple[str, str]:
    """The ``min``/``max`` attributes a number input can carry.

    Inclusive bounds map directly. An exclusive bound becomes an inclusive one only for integers
    (``> 0`` is ``>= 1``); for numbers the browser cannot say it, so only the helper text and the
    server's validation do.
    """
    integer = schema.get("type") == "integer"
    low = _tightest(schema.get("minimum"), schema.get("exclusiveMinimum"), integer, max, 1)
    high = _tightest(schema.get("maximum"), schema.get("exclusiveMaximum"), integer, min, -1)
    return ("" if low is None else _show(low)), ("" if high is None else _show(high))


def _tightest(inclusive: Any, exclusive: Any, integer: bool, pick: Any, direction: int) -> Optional[float]:
    candidates = [inclusive] if _is_number(inclusive) else []
    if integer and _is_number(exclusive):
        # The next whole number past the exclusive bound, in the bound's direction.
        candidates.append(math.floor(exclusive) + 1 if direction > 0 else math.ceil(exclusive) - 1)
    if integer:
        candidates = [math.ceil(c) if direction > 0 else math.floor(c) for c in candidates]
    return pick(candidates) if candidates else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value as people read it: ``1`` not ``1.0``, ``true`` not ``True``, strings without quotes."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value)
