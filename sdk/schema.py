"""Job input schemas: a JSON-Schema dict or a pydantic model, normalized and checked.

We accept the subset that W&B's launch drawer understands (plus ``boolean``), and reject the
rest with an error naming the attribute and where it is. W&B only warns and publishes the
schema anyway; a schema the queue side cannot enforce is a bug the author should see at once.
"""

from __future__ import annotations

from typing import Any

from .errors import SchemaError
from .paths import join_path

_TYPES = ("object", "number", "integer", "string", "boolean")
_COMMON = frozenset({"type", "title", "description", "default"})
_ALLOWED = {
    "object": _COMMON | {"properties", "required"},
    "number": _COMMON | {"enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "integer": _COMMON | {"enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "string": _COMMON | {"enum"},
    "boolean": _COMMON | {"enum"},
}
_ANY_TYPE = frozenset().union(*_ALLOWED.values())
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_DEFS_PREFIX = "#/$defs/"


def prepare_schema(schema: Any) -> dict[str, Any]:
    """Turn a JSON-Schema dict or a pydantic model (class or instance) into a checked, ref-free dict.

    ``$ref`` to ``#/$defs/...`` is inlined (keys written beside the ``$ref`` win over the
    referenced ones), an ``allOf`` holding exactly one schema is lifted into its parent, and
    ``$defs`` is dropped. Raises :class:`SchemaError` for anything unsupported.
    """
    if hasattr(schema, "model_json_schema"):
        # Works for a pydantic v2 model class and for an instance; pydantic is the user's import.
        schema = schema.model_json_schema()
    if not isinstance(schema, dict):
        raise SchemaError(
            f"a schema must be a JSON-Schema dict or a pydantic model class or instance, got {type(schema).__name__}"
        )
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        raise SchemaError("schema: '$defs' must be an object")
    top = {key: value for key, value in schema.items() if key != "$defs"}
    normalized = _inline(top, defs, (), ())
    check_schema(normalized)
    if normalized["type"] != "object":
        raise SchemaError(f"schema: the top level must have type 'object', got {normalized['type']!r}")
    return normalized


def _inline(node: Any, defs: dict, path: tuple, seen: tuple) -> Any:
    if not isinstance(node, dict):
        return node
    node = dict(node)
    all_of = node.pop("allOf", None)
    if all_of is not None:
        if not (isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict)):
            raise SchemaError(f"{_where(path)}: unsupported attribute 'allOf' (only a single-item allOf is lifted)")
        node = {**all_of[0], **node}
    ref = node.pop("$ref", None)
    if ref is not None:
        name = ref[len(_DEFS_PREFIX) :] if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX) else None
        if name not in defs:
            raise SchemaError(f"{_where(path)}: unsupported or unknown $ref {ref!r}")
        if name in seen:
            raise SchemaError(f"{_where(path)}: recursive $ref {ref!r} cannot be inlined")
        return _inline({**defs[name], **node}, defs, path, (*seen, name))
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["properties"] = {key: _inline(child, defs, (*path, key), seen) for key, child in properties.items()}
    return node


def check_schema(node: Any, path: tuple = ()) -> None:
    """Raise :class:`SchemaError` unless ``node`` (already ref-free) uses only supported attributes."""
    if not isinstance(node, dict):
        raise SchemaError(f"{_where(path)}: expected a schema object, got {type(node).__name__}")
    for attribute in node:
        if attribute not in _ANY_TYPE:
            raise SchemaError(f"{_where(path)}: unsupported attribute {attribute!r}")
    kind = node.get("type")
    if kind is None:
        raise SchemaError(f"{_where(path)}: missing required attribute 'type'")
    if kind not in _TYPES:
        raise SchemaError(f"{_where(path)}: unsupported type {kind!r} (use one of {', '.join(_TYPES)})")
    for attribute in node:
        if attribute not in _ALLOWED[kind]:
            raise SchemaError(f"{_where(path)}: attribute {attribute!r} is not allowed for type {kind!r}")
    _check_values(node, path)
    for key, child in node.get("properties", {}).items():
        check_schema(child, (*path, key))


def _check_values(node: dict, path: tuple) -> None:
    for attribute in ("title", "description"):
        if attribute in node and not isinstance(node[attribute], str):
            raise SchemaError(f"{_where(path)}: attribute {attribute!r} must be a string")
    for attribute in _BOUNDS:
        value = node.get(attribute)
        if attribute in node and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SchemaError(f"{_where(path)}: attribute {attribute!r} must be a number, got {value!r}")
    if "enum" in node and not (isinstance(node["enum"], list) and node["enum"]):
        raise SchemaError(f"{_where(path)}: attribute 'enum' must be a non-empty list")
    if "properties" in node and not isinstance(node["properties"], dict):
        raise SchemaError(f"{_where(path)}: attribute 'properties' must be an object")
    required = node.get("required", [])
    if not (isinstance(required, list) and all(isinstance(name, str) for name in required)):
        raise SchemaError(f"{_where(path)}: attribute 'required' must be a list of property names")


def _where(path: tuple) -> str:
    return f"schema at {join_path(path)}" if path else "schema"
