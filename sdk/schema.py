"""Job input schemas: a JSON-Schema dict or a pydantic model, normalized and checked.

We accept everything W&B's input-schema meta-schema accepts (``label``, ``placeholder``,
``format: secret``, per-field ``required``, arrays of enum items with ``uniqueItems``,
``minItems``, ``maxItems``) plus ``boolean`` and ``default``. What W&B's meta-schema flags is an
error naming the attribute and where it is, where W&B only warns: an attribute we cannot enforce
(``pattern``, ``minimum`` on a string, ``contains``), because W&B would publish such a schema and
then never check it, and a wrong type inside a schema's own keywords (a fractional ``minimum`` on
an integer field, a number as ``label``, a fraction as ``minItems``), because its author meant
something the schema does not say. Only an array whose items W&B's launch drawer cannot offer
(no ``items``, items without ``enum``) is a warning: it is still checked by type.
"""

from __future__ import annotations

from typing import Any

from .console import warn
from .errors import SchemaError
from .paths import join_path

_TYPES = ("object", "number", "integer", "string", "boolean", "array")
#: What W&B's launch drawer reads on every field (its input-schema meta-schema); ``default``
#: is ours too, because pydantic writes it for every field with a default.
_COMMON = frozenset({"type", "title", "description", "default", "label", "placeholder", "required", "format"})
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_ALLOWED = {
    "object": _COMMON | {"properties"},
    "number": _COMMON | {"enum", *_BOUNDS},
    "integer": _COMMON | {"enum", *_BOUNDS},
    "string": _COMMON | {"enum"},
    "boolean": _COMMON | {"enum"},
    "array": _COMMON | {"items", "uniqueItems", "minItems", "maxItems"},
}
_ANY_TYPE = frozenset().union(*_ALLOWED.values())
#: Array items are scalars picked from a list, as in W&B's multi-select.
_ITEM_TYPES = ("integer", "number", "string", "boolean")
_ITEM_ALLOWED = frozenset({"type", "enum", "title", "description", "format"})
#: Attributes W&B's meta-schema types as strings.
_TEXTS = ("title", "description", "label", "placeholder", "format")
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
    if isinstance(node.get("items"), dict):
        # pydantic writes ``list[SomeEnum]`` as items holding a $ref.
        node["items"] = _inline(node["items"], defs, (*path, "[]"), seen)
    return node


def check_schema(node: Any, path: tuple = ()) -> None:
    """Raise :class:`SchemaError` unless ``node`` (already ref-free) uses only supported attributes.

    An array without ``items``, or with items that have no ``enum``, is kept with one warning
    (W&B's launch drawer cannot offer it; launchbay checks its type).
    """
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
    if kind == "array":
        _check_array(node, path)
    for key, child in node.get("properties", {}).items():
        check_schema(child, (*path, key))


def _check_values(node: dict, path: tuple) -> None:
    for attribute in _TEXTS:
        if attribute in node and not isinstance(node[attribute], str):
            raise SchemaError(f"{_where(path)}: attribute {attribute!r} must be a string, got {node[attribute]!r}")
    for attribute in _BOUNDS:
        value = node.get(attribute)
        if attribute in node and not _is_number(value):
            raise SchemaError(f"{_where(path)}: attribute {attribute!r} must be a number, got {value!r}")
        if attribute in node and node["type"] == "integer" and not _is_whole(value):
            # W&B's meta-schema flags it too (and only warns): 1.5 on an integer field hides a typo.
            raise SchemaError(
                f"{_where(path)}: attribute {attribute!r} of an integer field must be an integer, got {value!r}"
            )
    if "enum" in node and not (isinstance(node["enum"], list) and node["enum"]):
        raise SchemaError(f"{_where(path)}: attribute 'enum' must be a non-empty list")
    if "properties" in node and not isinstance(node["properties"], dict):
        raise SchemaError(f"{_where(path)}: attribute 'properties' must be an object")
    required = node.get("required", [])
    # A list of property names (JSON Schema, on an object) or W&B's per-field true/false.
    if not (isinstance(required, bool) or (isinstance(required, list) and all(isinstance(n, str) for n in required))):
        raise SchemaError(f"{_where(path)}: attribute 'required' must be true, false or a list of property names")


def _check_array(node: dict, path: tuple) -> None:
    for attribute in ("minItems", "maxItems"):
        value = node.get(attribute)
        if attribute in node and not (_is_number(value) and value >= 0):
            raise SchemaError(f"{_where(path)}: attribute {attribute!r} must be a number >= 0, got {value!r}")
        if attribute in node and not _is_whole(value):
            raise SchemaError(f"{_where(path)}: attribute {attribute!r} must be a whole number, got {value!r}")
    if "uniqueItems" in node and not isinstance(node["uniqueItems"], bool):
        raise SchemaError(f"{_where(path)}: attribute 'uniqueItems' must be true or false")
    items = node.get("items")
    if items is None:
        warn(f"{_where(path)}: an array without 'items' takes any list (W&B's launch drawer needs 'items')")
        return
    where = _where((*path, "[]"))
    if not isinstance(items, dict) or items.get("type") not in _ITEM_TYPES:
        raise SchemaError(f"{where}: array items must be a schema of type {', '.join(_ITEM_TYPES)}")
    for attribute in items:
        if attribute not in _ITEM_ALLOWED:
            raise SchemaError(f"{where}: attribute {attribute!r} is not allowed for array items")
    _check_values(items, (*path, "[]"))
    if "enum" not in items:
        warn(f"{where}: array items without 'enum' are checked by type only (W&B's launch drawer needs 'enum')")


def _is_whole(value: Any) -> bool:
    # JSON Schema counts 6.0 as an integer, and so does W&B's meta-schema check.
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def secret_paths(schema: Any, path: tuple = ()) -> list[tuple]:
    """Key paths of the fields a prepared schema marks ``format: secret``."""
    if not isinstance(schema, dict):
        return []
    if schema.get("format") == "secret" and path:
        return [path]
    found: list[tuple] = []
    for key, child in (schema.get("properties") or {}).items():
        found += secret_paths(child, (*path, key))
    return found


def _where(path: tuple) -> str:
    return f"schema at {join_path(path)}" if path else "schema"
