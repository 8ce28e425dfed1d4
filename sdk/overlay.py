"""Apply launch overrides onto a config tree, leaf by leaf, and undo them again.

Applying leaf by leaf gives deep-merge semantics (dicts merge, lists and scalars are replaced).
The undo log lets a Run re-filter its config when ``manage_config`` is called after ``init``:
keys that become filtered out go back to the value the job had before the override.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from .paths import KeyPath, join_path
from .types import type_name

#: Marks "there was no value here" in the undo log.
MISSING = object()


def set_leaf(tree: dict, parts: KeyPath, value: Any) -> tuple[KeyPath, Any]:
    """Set one override leaf; return ``(path that changed, what was there or MISSING)``.

    Raises ``TypeError`` with a readable message when a parent on the way is not a dict: a
    dict override cannot be merged into a scalar or a list.
    """
    node = tree
    for depth, key in enumerate(parts[:-1]):
        child = node.get(key, MISSING)
        if child is MISSING:
            # Record the highest created key so that undoing removes the whole new branch.
            node[key] = _branch(parts[depth + 1 :], value)
            return parts[: depth + 1], MISSING
        if not isinstance(child, dict):
            where = join_path(parts[: depth + 1])
            raise TypeError(f"{join_path(parts)}: cannot set a key inside {where}, which is {type_name(child)}")
        node = child
    last = parts[-1]
    original = node.get(last, MISSING)
    if isinstance(value, dict) and not value and isinstance(original, dict):
        # Merging an empty dict into a dict changes nothing; replacing would erase the job's keys.
        return parts, original
    node[last] = value
    return parts, original


def _branch(parts: KeyPath, value: Any) -> Any:
    for key in reversed(parts):
        value = {key: value}
    return value


def restore(tree: dict, parts: KeyPath, original: Any) -> None:
    """Undo one :func:`set_leaf`."""
    node = tree
    for key in parts[:-1]:
        node = node[key]
    if original is MISSING:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = original


class AppliedOverrides:
    """The override leaves currently applied onto one tree, with what each replaced.

    The undo log is kept per top-level key: keys never share state, and a job replacing one
    key (``config["trainer"] = ...``) drops that key's entries without scanning the rest.
    """

    def __init__(self) -> None:
        self._undo: dict[str, list[tuple[KeyPath, Any]]] = {}

    def apply(self, tree: dict, flat: Mapping[KeyPath, Any]) -> list[str]:
        """Apply every leaf of ``flat``; return one message per leaf whose shape does not fit."""
        problems = []
        for parts, value in flat.items():
            try:
                # Copy lists so that a job appending to one does not change the cached payload.
                fresh = copy.deepcopy(value) if isinstance(value, (list, dict)) else value
                self._undo.setdefault(parts[0], []).append(set_leaf(tree, parts, fresh))
            except TypeError as exc:
                problems.append(str(exc))
        return problems

    def revert(self, tree: dict) -> None:
        """Put back every value the applied overrides replaced, newest first."""
        for entries in self._undo.values():
            for parts, original in reversed(entries):
                restore(tree, parts, original)
        self._undo.clear()

    def forget_under(self, key: str) -> None:
        """Drop the undo entries below a top-level key the job has just replaced itself."""
        self._undo.pop(key, None)


def merge_overrides(tree: dict, flat: Mapping[KeyPath, Any]) -> list[str]:
    """Deep-merge override leaves into ``tree`` in place; return the shape problems."""
    return AppliedOverrides().apply(tree, flat)
