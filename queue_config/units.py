"""Sizes and durations as people write them, turned into integers with the unit in the name.

Sizes: ``512MiB``, ``16GiB``, ``8g``, ``1.5Gi``, ``500MB``. As in ``docker run -m``, every unit is
binary (``1GB`` = ``1GiB`` = 1024 MiB). A bare number has no unit and is refused, because docker reads it as bytes and people
mean MiB. Durations: ``90s``, ``30m``, ``2h``, ``1h30m``, ``1d``, or a bare number of seconds.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, Tuple

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_MIB = 1 << 20


def parse_size_bytes(value: object, *, what: str = "size") -> int:
    """Bytes in ``value``; raises ValueError with a hint when it is not a size with a unit."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} must be a size such as 512MiB or 16g, got {value!r}")
    text = str(value).strip()
    match = _SIZE_RE.match(text)
    if not match:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            raise ValueError(f"{what} {text!r} has no unit; write e.g. {text}MiB or {text}m")
        raise ValueError(f"{what} {text!r} is not a size such as 512MiB, 16GiB or 8g")
    number, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number):
        raise ValueError(f"{what} {text[:40]!r} is too large")
    if unit == "b":
        return int(number)
    if unit[0] not in _BINARY or unit[1:] not in ("", "b", "i", "ib"):
        raise ValueError(
            f"{what} {text!r} has an unknown unit {match.group(2)!r}; use KiB, MiB, GiB, TiB or k, m, g, t"
        )
    return int(number * _BINARY[unit[0]])


def parse_size_mib(value: object, *, what: str = "size") -> int:
    """``value`` in whole MiB (rounded up, so a request is never silently shrunk)."""
    size = parse_size_bytes(value, what=what)
    return -(-size // _MIB)


def format_mib(mib: int | float | None) -> str:
    if mib is None:
        return "-"
    if mib >= 1024 and mib % 1024 == 0:
        return f"{int(mib) // 1024}GiB"
    if mib >= 1024:
        return f"{mib / 1024:.1f}GiB"
    return f"{int(mib)}MiB"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
_DURATION_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration_s(value: object, *, what: str = "duration", allow_zero: bool = False) -> int:
    """Seconds in ``value`` (``2h``, ``1h30m``, ``45s``, ``90``). Zero (``0s``, ``0``) is refused unless
    ``allow_zero``: for a timeout it means nothing sensible, for "no minimum" or "no grace" it does."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} must be a duration such as 2h or 30m, got {value!r}")
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{what} {value!r} is not a duration such as 90s, 30m, 2h or 1h30m")
        seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds):  # a 400-digit number is infinity as a float
        raise ValueError(f"{what} {str(value)[:40]!r} is too long")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return round(seconds)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"


def rename_unit_keys(data: Any, units: Dict[str, Tuple[str, Callable[..., int]]]) -> Any:
    """``data`` with each human-unit key (``memory: 16GiB``) turned into its normalized field
    (``memory_mib: 16384``) by its parser; giving both forms is an error. Non-dicts pass through."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for human, (field, parse) in units.items():
        if human in data:
            if field in data:
                raise ValueError(f"give either {human} or {field}, not both")
            data[field] = parse(data.pop(human), what=human)
    return data


def describe_limits(limits: Any, *, terse: bool) -> str:
    """A queue's limits (``QueueConfig.limits``) for people; "none" when it sets none.

    ``terse``: ``cpus<=32 memory<=256GiB gpus<=8 ...`` (the CLI's table); else
    ``at most 32 CPUs, 256GiB, 8 GPUs, GPU model A100, runs up to 24h`` (the UI).
    """
    gpus = limits.gpus
    shown = [
        text
        for given, short, long in (
            (limits.cpus is not None, lambda: f"cpus<={limits.cpus:g}", lambda: f"{limits.cpus:g} CPUs"),
            (
                limits.memory_mib is not None,
                lambda: f"memory<={format_mib(limits.memory_mib)}",
                lambda: format_mib(limits.memory_mib),
            ),
            (
                gpus is not None,
                lambda: f"gpus<={gpus}",
                lambda: "0 GPUs (CPU only)" if gpus == 0 else f"{gpus} GPUs",
            ),
            (bool(limits.gpu_model), lambda: f"gpu_model={limits.gpu_model}", lambda: f"GPU model {limits.gpu_model}"),
            (
                limits.gpu_memory_mib is not None,
                lambda: f"gpu_memory<={format_mib(limits.gpu_memory_mib)}",
                lambda: f"{format_mib(limits.gpu_memory_mib)} per GPU",
            ),
            (
                limits.max_runtime_s is not None,
                lambda: f"runtime<={format_duration(limits.max_runtime_s)}",
                lambda: f"runs up to {format_duration(limits.max_runtime_s)}",
            ),
        )
        if given
        for text in [(short if terse else long)()]
    ]
    if not shown:
        return "none"
    return " ".join(shown) if terse else "at most " + ", ".join(shown)
