"""Check launch override values against a job's (prepared) input schema, with the stdlib only.

Only the values a launcher actually sent are checked: overrides are partial, so ``required`` is
not enforced, and keys the schema does not describe are accepted.
"""

from __future__ import annotations

import json
from typing import Any

from .paths import join_path

_PYTHON_TYPES = {
    "string": (str,),
    "object": (dict,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "array": (list,),
}
_ARTICLES = {
    "string": "a string",
    "object": "an object",
    "boolean": "a boolean",
    "integer": "an integer",
    "array": "a list",
}
#: Shown instead of a value whose field has ``format: secret``.
MASK = "***"


def find_violations(schema: dict[str, Any], overrides: dict[str, Any], path: tuple = ()) -> list[str]:
    """One ``"dotted.key: problem"`` line per override value that the schema rejects."""
    violations: list[str] = []
    properties = schema.get("properties", {})
    for key, value in overrides.items():
        node = properties.get(key)
        if node is None:
            continue
        key_path = (*path, key)
        problem = _leaf_problem(node, value)
        if problem:
            violations.append(f"{join_path(key_path)}: {problem}")
        elif node["type"] == "object":
            violations.extend(find_violations(node, value, key_path))
    return violations


def _leaf_problem(node: dict[str, Any], value: Any) -> str:
    problem = _value_problem(node, value)
    if problem and node.get("format") == "secret":
        # The message may be printed or stored; a secret value must not be in it.
        return f"the value given for this secret field is invalid ({_masked(problem, value)})"
    return problem


def _value_problem(node: dict[str, Any], value: Any) -> str:
    kind = node["type"]
    if (isinstance(value, bool) and kind in ("integer", "number")) or not isinstance(value, _PYTHON_TYPES[kind]):
        return f"expected {_ARTICLES.get(kind, 'a number')}, got {_show(value)}"
    if "enum" in node and not any(_same(value, choice) for choice in node["enum"]):
        return f"{_show(value)} is not one of {_show(node['enum'])}"
    if kind in ("integer", "number"):
        return _bound_problem(node, value)
    if kind == "array":
        return _array_problem(node, value)
    return ""


def _array_problem(node: dict[str, Any], value: list) -> str:
    if "minItems" in node and len(value) < node["minItems"]:
        return f"{_show(value)} has fewer than {_show(node['minItems'])} items"
    if "maxItems" in node and len(value) > node["maxItems"]:
        return f"{_show(value)} has more than {_show(node['maxItems'])} items"
    if node.get("uniqueItems") and any(_same(a, b) for i, a in enumerate(value) for b in value[i + 1 :]):
        return f"{_show(value)} has repeated items"
    items = node.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            problem = _leaf_problem(items, item)
            if problem:
                return f"item {index}: {problem}"
    return ""


def _masked(problem: str, value: Any) -> str:
    return problem.replace(_show(value), MASK) if isinstance(value, str) and value else problem


def _bound_problem(node: dict[str, Any], value: Any) -> str:
    if "minimum" in node and value < node["minimum"]:
        return f"{_show(value)} is less than the minimum {_show(node['minimum'])}"
    if "maximum" in node and value > node["maximum"]:
        return f"{_show(value)} is greater than the maximum {_show(node['maximum'])}"
    if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
        return f"{_show(value)} must be greater than {_show(node['exclusiveMinimum'])}"
    if "exclusiveMaximum" in node and value >= node["exclusiveMaximum"]:
        return f"{_show(value)} must be less than {_show(node['exclusiveMaximum'])}"
    return ""


def _same(value: Any, choice: Any) -> bool:
    # True == 1 in Python, but a launcher sending true for an enum of ints is a mistake.
    return isinstance(value, bool) == isinstance(choice, bool) and value == choice


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
