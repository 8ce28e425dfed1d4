"""Dotted key paths: ``"trainer.learning_rate"`` names ``config["trainer"]["learning_rate"]``.

A backslash escapes a dot that belongs to a key (``r"trainer\\.private"`` is the top-level key
``"trainer.private"``). Any other backslash is an error: W&B's parser loops forever on one, and a
silent guess would make an exclude rule miss the key it was meant to hide.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Union

from .errors import ConfigPathError

KeyPath = tuple
PrefixArg = Union[None, str, Sequence[str]]


def split_path(path: str) -> tuple[str, ...]:
    """Split a dotted key path into its keys; ``\\.`` is a literal dot inside a key.

    Raises :class:`ConfigPathError` (a ``ValueError``) naming the path for an empty path, an
    empty segment (``a..b``, ``.a``, ``a.``), a trailing backslash or a backslash before
    anything but a dot.
    """
    if not isinstance(path, str):
        raise ConfigPathError(f"a key path must be a string, got {type(path).__name__} {path!r}")
    if not path:
        raise ConfigPathError("invalid key path '': the path is empty")
    parts = []
    current = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "\\":
            if i + 1 == len(path):
                raise ConfigPathError(f"invalid key path '{path}': trailing backslash")
            if path[i + 1] != ".":
                raise ConfigPathError(f"invalid key path '{path}': a backslash may only escape a dot (\\.)")
            current.append(".")
            i += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    if "" in parts:
        raise ConfigPathError(f"invalid key path '{path}': empty key between dots")
    return tuple(parts)


def join_path(parts: Iterable[object]) -> str:
    """Join keys into a dotted path, escaping dots inside keys; the inverse of :func:`split_path`."""
    return ".".join(str(part).replace(".", "\\.") for part in parts)


def parse_prefixes(value: PrefixArg, arg_name: str) -> tuple[list[str], list[KeyPath]]:
    """Validate an ``include``/``exclude`` argument: ``(dotted strings as given, split paths)``."""
    if value is None:
        return [], []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigPathError(f"{arg_name} must be a string or a list of strings, got {type(value).__name__}")
    paths = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigPathError(f"{arg_name} must hold strings, got {type(item).__name__} {item!r}")
        try:
            paths.append(split_path(item))
        except ConfigPathError as exc:
            raise ConfigPathError(f"{arg_name}: {exc}") from None
    return list(items), paths
