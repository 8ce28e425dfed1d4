"""A job's metrics stream, ``{ns}:job:{id}:metrics`` (Redis STREAM): its entry format, in one place.

Entries are ``{"m": line}``, one line of the job's ``metrics.jsonl`` as it was written (the agent
copies them, capped: ``metric_stream/follower.py``), and, when the stream hit its cap, one
``{"truncated": why}``. Readers: ``launchbay metrics`` and the job page (``metric_stream/reader.py``), a
sweep's driver (``sweeps/driver.py``).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

from launchbay.text import as_text

FIELD = "m"
TRUNCATED = "truncated"


def step_of(fields: Mapping[Any, Any]) -> Optional[Dict[str, Any]]:
    """The logged step of one entry (str or bytes keys), or None for a truncation marker or a line that
    is not a JSON object."""
    raw = next((value for key, value in fields.items() if as_text(key) == FIELD), None)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def truncated_of(fields: Mapping[Any, Any]) -> Optional[str]:
    """Why the stream stopped, when this entry is its truncation marker."""
    raw = next((value for key, value in fields.items() if as_text(key) == TRUNCATED), None)
    return None if raw is None else as_text(raw)
