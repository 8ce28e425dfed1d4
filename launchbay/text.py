"""The one bytes-to-str helper: redis-py answers bytes, our code reads text."""

from __future__ import annotations

from typing import Any


def as_text(value: Any) -> str:
    """``value`` as text: bytes are decoded as UTF-8 (invalid bytes become U+FFFD), anything else ``str()``."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
