"""Run-config and config-file overrides as people type them, turned into nested objects.

``--set trainer.learning_rate=0.1`` gives ``{"trainer": {"learning_rate": 0.1}}``. Keys follow the
SDK's path rules (``launchbay.sdk.paths``: a dot separates keys, ``\\.`` is a dot inside a key).
Values are read like YAML scalars: ``0.1`` is a float, ``32`` an int, ``true`` a bool, ``[1, 2]`` a
list, ``'32'`` (quoted) stays a string and an empty value is null. Dates stay the text typed,
because the payload is JSON.
"""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import yaml
from launchbay.queue_config.structured import MAX_NESTING, load_yaml, read_structured_file
from launchbay.sdk.errors import SdkError
from launchbay.sdk.filtering import flatten
from launchbay.sdk.overlay import merge_overrides
from launchbay.sdk.paths import KeyPath, split_path

from launchbay.errors import ValidationError


def parse_value(text: str) -> Any:
    """A ``--set`` value typed like a YAML scalar (or flow list/mapping)."""
    try:
        value = load_yaml(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ValidationError(f"value {text!r} is not a YAML value ({problem}); quote it to send a string") from exc
    except (ValueError, RecursionError) as exc:  # an alias bomb, a bad date, nesting too deep
        problem = f"nested deeper than {MAX_NESTING} levels" if isinstance(exc, RecursionError) else str(exc)
        raise ValidationError(f"value {text[:80]!r} is refused: {problem}") from exc
    if isinstance(value, (datetime.date, datetime.datetime)):
        return text
    return value


def parse_assignment(item: str, *, option: str = "--set") -> Tuple[KeyPath, Any]:
    """``KEY=VALUE`` into ``(key path, typed value)``."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ValidationError(f"{option} {item!r} must look like KEY=VALUE, e.g. trainer.learning_rate=0.1")
    try:
        parts = split_path(key)
    except SdkError as exc:
        raise ValidationError(f"{option} {item!r}: {exc}") from exc
    return parts, parse_value(text)


def build_tree(assignments: Iterable[Tuple[KeyPath, Any]], *, option: str = "--set") -> Dict[str, Any]:
    """Nest ``(key path, value)`` pairs; a later pair for the same key wins."""
    tree: Dict[str, Any] = {}
    problems = merge_overrides(tree, dict(assignments))
    if problems:
        raise ValidationError(f"{option}: " + "; ".join(problems))
    return tree


def merge_trees(base: Mapping[str, Any], top: Mapping[str, Any], *, what: str = "overrides") -> Dict[str, Any]:
    """A deep copy of ``base`` with the leaves of ``top`` set over it (dicts merge, the rest is replaced)."""
    merged = copy.deepcopy(dict(base))
    problems = merge_overrides(merged, flatten(top))
    if problems:
        raise ValidationError(f"{what}: " + "; ".join(problems))
    return merged


def load_mapping_file(path: str | Path, *, option: str) -> Dict[str, Any]:
    """A YAML or JSON file that must hold a mapping (an empty file counts as an empty one)."""
    data = read_structured_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(f"{option} {path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_set_options(items: Iterable[str], config_file: Optional[str] = None) -> Dict[str, Any]:
    """``--config FILE`` then every ``--set KEY=VALUE`` over it."""
    base = load_mapping_file(config_file, option="--config") if config_file else {}
    return merge_trees(base, build_tree(parse_assignment(item) for item in items), what="--set")


def parse_file_options(file_sets: Iterable[str], file_configs: Iterable[str]) -> Dict[str, Dict[str, Any]]:
    """``--file-config PATH=FILE`` then every ``--file-set PATH:KEY=VALUE`` over it, per config file."""
    trees: Dict[str, Dict[str, Any]] = {}
    for item in file_configs:
        path, sep, file = item.partition("=")
        if not sep or not path or not file:
            raise ValidationError(f"--file-config {item!r} must look like PATH=FILE, e.g. config.yaml=big.yaml")
        trees[_config_path(path, "--file-config")] = load_mapping_file(file, option="--file-config")
    pairs: Dict[str, list] = {}
    for item in file_sets:
        path, sep, assignment = item.partition(":")
        if not sep or not path:
            raise ValidationError(f"--file-set {item!r} must look like PATH:KEY=VALUE, e.g. config.yaml:model.depth=12")
        pairs.setdefault(_config_path(path, "--file-set"), []).append(parse_assignment(assignment, option="--file-set"))
    for path, assignments in pairs.items():
        top = build_tree(assignments, option=f"--file-set {path}")
        trees[path] = merge_trees(trees.get(path, {}), top, what=f"--file-set {path}")
    return trees


def _config_path(path: str, option: str) -> str:
    # The SDK resolves it inside the job's folder; an absolute path or .. could never be one it manages.
    if path.startswith("/") or ".." in Path(path).parts:
        raise ValidationError(f"{option}: config file path {path!r} must be relative to the job, without '..'")
    return path
