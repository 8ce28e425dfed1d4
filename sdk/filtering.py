"""Include/exclude filtering of nested config trees, shared by the SDK and the queue side.

A tree is a nested dict. Its leaves are every value that is not a non-empty dict: scalars,
lists (never descended into) and empty dicts. W&B drops empty dicts; we keep them as leaves so
that a job's declared inputs match its config. Prefixes match whole keys: ``train`` does not
match ``trainer``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .paths import KeyPath, join_path


def has_prefix(parts: KeyPath, prefix: KeyPath) -> bool:
    """Whether ``prefix`` names ``parts`` itself or one of its ancestors, key by key."""
    return len(prefix) <= len(parts) and parts[: len(prefix)] == prefix


def excluding_prefix(parts: KeyPath, include: Sequence[KeyPath], exclude: Sequence[KeyPath]) -> Optional[KeyPath]:
    """The first exclude prefix that blocks ``parts``, or None.

    None does not mean "allowed": with include prefixes a path may still be outside all of
    them. Use :func:`is_allowed` for the verdict and this for the message
    ("key X is excluded by prefix Y" versus "key X is not under any include prefix").
    """
    for prefix in exclude:
        if has_prefix(parts, prefix):
            return prefix
    return None


def is_allowed(parts: KeyPath, include: Sequence[KeyPath], exclude: Sequence[KeyPath]) -> bool:
    """Whether the key path accepts launch input: exclude always wins, then include (if any) must match."""
    if excluding_prefix(parts, include, exclude) is not None:
        return False
    return not include or any(has_prefix(parts, prefix) for prefix in include)


def flatten(tree: Mapping[str, Any]) -> dict[KeyPath, Any]:
    """Map each leaf's key path (a tuple) to its value, in the tree's key order."""
    flat: dict[KeyPath, Any] = {}
    _flatten_into(flat, tree, ())
    return flat


def _flatten_into(flat: dict, tree: Mapping, prefix: KeyPath) -> None:
    for key, value in tree.items():
        parts = (*prefix, key)
        if isinstance(value, dict) and value:
            _flatten_into(flat, value, parts)
        else:
            flat[parts] = value


def unflatten(flat: Mapping[KeyPath, Any]) -> dict[str, Any]:
    """Rebuild a nested dict from ``{key path: leaf}``; the inverse of :func:`flatten`."""
    tree: dict[str, Any] = {}
    for parts, value in flat.items():
        node = tree
        for key in parts[:-1]:
            node = node.setdefault(key, {})
        node[parts[-1]] = value
    return tree


def filter_tree(
    tree: Mapping[str, Any], include: Sequence[KeyPath], exclude: Sequence[KeyPath]
) -> tuple[dict[str, Any], list[str]]:
    """Split a tree by the prefixes: ``(the allowed leaves as a tree, dotted paths of the dropped leaves)``.

    Gives the same answer as :func:`is_allowed` on every leaf, but decides whole subtrees at
    once when no prefix reaches inside them, so a 1,000-key payload costs little.
    """
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    _filter_into(kept, dropped, tree, (), include, exclude)
    return kept, dropped


def _filter_into(kept: dict, dropped: list, tree: Mapping, path: KeyPath, include: Sequence, exclude: Sequence) -> None:
    for key, value in tree.items():
        parts = (*path, key)
        is_branch = isinstance(value, dict) and bool(value)
        verdict = _verdict(parts, is_branch, include, exclude)
        if verdict is None:
            child: dict[str, Any] = {}
            _filter_into(child, dropped, value, parts, include, exclude)
            if child:
                kept[key] = child
        elif verdict:
            kept[key] = copy_dicts(value)
        elif is_branch:
            dropped.extend(join_path((*parts, *leaf)) for leaf in flatten(value))
        else:
            dropped.append(join_path(parts))


def _verdict(parts: KeyPath, is_branch: bool, include: Sequence[KeyPath], exclude: Sequence[KeyPath]) -> Optional[bool]:
    """True: keep all below ``parts``; False: drop it all; None: a prefix reaches inside, look deeper."""
    if not is_branch:
        return is_allowed(parts, include, exclude)
    if excluding_prefix(parts, include, exclude) is not None:
        return False
    included = not include or any(has_prefix(parts, prefix) for prefix in include)
    # An included branch may hold excluded keys; an outside one may hold included keys.
    inner = exclude if included else include
    if any(len(prefix) > len(parts) and prefix[: len(parts)] == parts for prefix in inner):
        return None
    return included


def copy_dicts(value: Any) -> Any:
    """Copy the nested dicts of a value; other values (leaves, lists included) are shared."""
    if isinstance(value, dict):
        return {key: copy_dicts(child) for key, child in value.items()}
    return value
