"""YAML and JSON files as launchbay reads them: errors name the file and the line, and no document
may nest without bound or expand without bound through YAML aliases (the "billion laughs").

Job specs, queue configs, agent config files and ``--set``/``--file-set`` values all load through here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

from launchbay.errors import ConfigError

#: The most values a YAML document may expand to once its aliases are followed (see :func:`load_yaml`).
MAX_YAML_VALUES = 1_000_000
#: The deepest nesting of mappings and lists a file or value may have.
MAX_NESTING = 100


def read_structured_file(path: str | Path) -> Any:
    """Load a YAML or JSON file; errors name the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
            check_shape(data, max_values=None)  # JSON has no aliases: only the depth can hurt
            return data
        return load_yaml(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from exc
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: {_unreadable_structure(exc)}") from exc


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, refusing documents that would expand without bound when walked.

    Anchors and aliases are fine, but a few lines of them can stand for a billion values (the
    "billion laughs") or refer to themselves, and everything after loading (validation, merging,
    JSON) walks the expanded tree. Raises ValueError for such a document, yaml.YAMLError for bad YAML.
    """
    data = yaml.safe_load(text)
    check_shape(data, max_values=MAX_YAML_VALUES)
    return data


def check_shape(data: Any, *, max_values: Optional[int]) -> None:
    """Refuse (ValueError) a loaded tree nested deeper than MAX_NESTING or, with aliases expanded, over ``max_values``."""
    count, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if max_values is not None and count > max_values:
            raise ValueError(
                f"expands to more than {max_values:,} values (YAML aliases that repeat or refer to themselves)"
            )
        if depth > MAX_NESTING:
            raise ValueError(f"nested deeper than {MAX_NESTING} levels")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)


def _unreadable_structure(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):  # the parser itself gave up, far deeper than MAX_NESTING
        return f"nested deeper than {MAX_NESTING} levels"
    return str(exc)
