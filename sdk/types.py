"""The input types a job records, in the shape W&B's docs show: ``{"trainer": {"lr": "float"}}``.

Unlike W&B's real type representation, ints and floats stay distinct, because a launcher that
sends ``3.5`` to an epoch counter should be told before the job starts.
"""

from __future__ import annotations

from typing import Any, Mapping

# Checked in this order: bool is a subclass of int, so it must come first.
_TYPE_NAMES = (
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    ((list, tuple), "list"),
)


def type_name(value: Any) -> str:
    """The recorded type of one leaf: bool, int, float, str, list, dict (empty), null or unknown."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "dict"
    for python_type, name in _TYPE_NAMES:
        if isinstance(value, python_type):
            return name
    return "unknown"


def infer_types(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Replace every leaf of a nested dict by its type name; empty dicts become ``"dict"``."""
    return {
        key: infer_types(value) if isinstance(value, dict) and value else type_name(value)
        for key, value in tree.items()
    }
