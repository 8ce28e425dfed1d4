"""Patch a YAML config file's text in place of re-dumping it, so comments and layout survive.

Handles the common case: block-style mappings whose overridden values are single-line scalars
or flow collections (their text is rewritten where it stands), block collections replaced by a
value (rewritten as one flow value), and new keys (appended at the end of their mapping). Any
anchor, alias, explicit tag, block scalar or flow-style parent makes :func:`patch_yaml_text`
return None, and the caller falls back to ``yaml.safe_dump``. The result is re-parsed and must
load to exactly the expected dict, or it is discarded the same way.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_STR_TAG = "tag:yaml.org,2002:str"
# Wide enough that PyYAML never folds a value onto a second line.
_NO_WRAP = 1 << 30
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Edit = tuple  # (start index, end index, replacement text)


class _Unsupported(Exception):
    """The text has a shape this module does not rewrite; fall back to a full dump."""


def patch_yaml_text(text: str, overrides: dict[str, Any], expected: dict[str, Any]) -> Optional[str]:
    """Return ``text`` with ``overrides`` written into it, or None when only a full re-dump is safe.

    ``expected`` is the merged content the patched text must load to.
    """
    try:
        if _has_anchors_or_tags(text):
            return None
        newline = "\r\n" if "\r\n" in text else "\n"
        if not text.endswith("\n"):
            text += newline  # so that every line, the last included, ends where new keys can follow
        # The pure-Python composer: its marks are character indexes into ``text``.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if not _is_block_mapping(root):
            return None
        edits: list[Edit] = []
        _plan_mapping(text, root, overrides, expected, edits, newline)
        patched = _apply(text, edits)
        reloaded = yaml.load(patched, Loader=_LOADER)
    except (_Unsupported, yaml.YAMLError):
        return None
    return patched if _same_tree(reloaded, expected) else None


def _has_anchors_or_tags(text: str) -> bool:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) or getattr(event, "tag", None):
            return True
    return False


def _is_block_mapping(node: Optional[Node]) -> bool:
    return isinstance(node, MappingNode) and not node.flow_style and bool(node.value)


def _plan_mapping(text: str, node: MappingNode, overrides: dict, expected: dict, edits: list, newline: str) -> None:
    entries = {}
    for key_node, value_node in node.value:
        if not (isinstance(key_node, ScalarNode) and key_node.tag == _STR_TAG) or key_node.value in entries:
            raise _Unsupported
        entries[key_node.value] = (key_node, value_node)
    new_keys = []
    for key, value in overrides.items():
        if key not in entries:
            new_keys.append(key)
            continue
        key_node, value_node = entries[key]
        if isinstance(value, dict) and _is_block_mapping(value_node):
            _plan_mapping(text, value_node, value, expected[key], edits, newline)
        elif isinstance(value, dict) and not value and isinstance(value_node, MappingNode):
            continue  # merging {} into a mapping changes nothing
        else:
            edits.append(_replace_value(text, key_node, value_node, expected[key]))
    if new_keys:
        edits.append(_append_keys(text, node, {key: expected[key] for key in new_keys}, newline))


def _replace_value(text: str, key_node: Node, value_node: Node, value: Any) -> Edit:
    start, end = value_node.start_mark.index, value_node.end_mark.index
    if isinstance(value_node, ScalarNode) or value_node.flow_style:
        if value_node.start_mark.line != value_node.end_mark.line or getattr(value_node, "style", None) in ("|", ">"):
            raise _Unsupported
        rendered = _inline(value, getattr(value_node, "style", None))
        # An empty value sits right after the colon; "key:1" would not parse as a mapping entry.
        return (start, end, " " + rendered if start == end else rendered)
    colon = text.find(":", key_node.end_mark.index)
    if colon == -1 or colon >= start:
        raise _Unsupported
    return (colon + 1, _content_end(value_node), " " + _inline(value, None))


def _append_keys(text: str, node: MappingNode, entries: dict, newline: str) -> Edit:
    indent = " " * node.value[0][0].start_mark.column
    line_end = text.find("\n", _content_end(node))
    block = yaml.safe_dump(entries, default_flow_style=False, sort_keys=False, allow_unicode=True, width=_NO_WRAP)
    lines = [indent + line for line in block.splitlines()]
    return (line_end + 1, line_end + 1, newline.join(lines) + newline)


def _content_end(node: Node) -> int:
    """Index just past the last character of a node's last value (before any trailing comment)."""
    while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    if node.start_mark.line != node.end_mark.line:
        raise _Unsupported
    return node.end_mark.index


def _inline(value: Any, style: Optional[str]) -> str:
    """One-line YAML for a value, keeping a quoted string quoted the same way."""
    if isinstance(value, str) and (style == '"' or "\n" in value):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid double-quoted scalar
    if isinstance(value, str) and style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    dumped = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=_NO_WRAP).strip()
    if "\n" in dumped or not (dumped.startswith("[") and dumped.endswith("]")):
        raise _Unsupported
    return dumped[1:-1]


def _apply(text: str, edits: list[Edit]) -> str:
    pieces = []
    position = 0
    for start, end, replacement in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        if start < position:
            raise _Unsupported  # overlapping edits
        pieces += [text[position:start], replacement]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _same_tree(a: Any, b: Any) -> bool:
    """Equal values of equal types, with dict keys in the same order (1 != 1.0 != True here)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same_tree(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_tree(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
