"""Check overrides against the inputs a job's last run recorded, before anything is enqueued.

The SDK records, per section (the run config, and each managed config file), the include and
exclude prefixes, the type of every key and an optional JSON schema. A launch whose overrides the
job would drop or reject is refused here, with every problem named in one line, instead of
failing minutes later on a GPU. Before a job has run once nothing is recorded and the SDK filters
the overrides in the container.
"""

from __future__ import annotations

import json
from typing import Any, List, Mapping, Optional, Sequence, Set, Tuple

from jsonschema import Draft202012Validator, validators
from launchbay.sdk.filtering import excluding_prefix, flatten, is_allowed
from launchbay.sdk.paths import KeyPath, join_path, parse_prefixes
from launchbay.sdk.types import type_name

from launchbay.errors import ValidationError

#: Recorded types below which anything goes: an empty dict may gain keys, null and unknown say nothing.
OPEN_TYPES = frozenset({"dict", "null", "unknown"})

# Overrides are partial (a launch sets a few keys and the job keeps the rest), so a schema's
# "required" cannot be checked against them; the SDK checks the merged config in the container.
_PartialValidator = validators.extend(Draft202012Validator, {"required": lambda *_args: iter(())})


def check_overrides(
    job_name: str,
    inputs: Optional[Mapping[str, Any]],
    run_config: Mapping[str, Any],
    file_overrides: Mapping[str, Mapping[str, Any]],
) -> None:
    """Raise ValidationError listing every override the recorded ``inputs`` reject (None: accept all)."""
    if inputs is None:
        return
    problems = _run_config_problems(inputs.get("run_config"), run_config)
    problems += _file_problems(inputs.get("files") or {}, file_overrides)
    if problems:
        raise ValidationError(f"invalid overrides for job {job_name!r}: " + "; ".join(problems))


def _run_config_problems(section: Optional[Mapping[str, Any]], tree: Mapping[str, Any]) -> List[str]:
    if not tree:
        return []
    if section is None:
        return ["its last run declared no run-config inputs, so run-config overrides would be ignored"]
    return section_problems(section, tree)


def _file_problems(files: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> List[str]:
    problems = []
    for path, tree in overrides.items():
        if path not in files:
            managed = ", ".join(sorted(files)) or "none"
            problems.append(f"config file {path!r} is not one the job manages (its last run managed: {managed})")
            continue
        problems += [f"{path}: {problem}" for problem in section_problems(files[path], tree)]
    return problems


def section_problems(section: Mapping[str, Any], tree: Mapping[str, Any]) -> List[str]:
    """Problems with one section's overrides: key filters and types first, then the schema."""
    include_texts, include = parse_prefixes(section.get("include"), "include")
    _, exclude = parse_prefixes(section.get("exclude"), "exclude")
    types = section.get("types")
    problems, reported = [], set()
    for parts, value in flatten(tree).items():
        problem = _key_problem(parts, include_texts, include, exclude) or _type_problem(types, parts, value)
        if problem:
            problems.append(problem)
            reported.add(parts)
    return problems + _schema_problems(section.get("schema"), tree, reported)


def _key_problem(
    parts: KeyPath, include_texts: List[str], include: Sequence[KeyPath], exclude: Sequence[KeyPath]
) -> str:
    blocker = excluding_prefix(parts, include, exclude)
    if blocker is not None:
        return f"key {join_path(parts)!r} is excluded by prefix {join_path(blocker)!r}"
    if not is_allowed(parts, include, exclude):
        return f"key {join_path(parts)!r} is under no include prefix ({', '.join(include_texts)})"
    return ""


def _type_problem(types: Any, parts: KeyPath, value: Any) -> str:
    if not isinstance(types, dict):
        return ""  # the run recorded no types
    node: Any = types
    for depth, key in enumerate(parts):
        if isinstance(node, str):
            if node in OPEN_TYPES:
                return ""
            return f"key {join_path(parts)!r} is unknown: {join_path(parts[:depth])} is a {node}, not a mapping"
        if key not in node:
            return _unknown_key(parts, depth, node)
        node = node[key]
    if isinstance(node, dict):
        return "" if value == {} else f"{join_path(parts)}: expected a mapping, got {_describe(value)}"
    return _mismatch(node, value, parts)


def _unknown_key(parts: KeyPath, depth: int, node: Mapping[str, Any]) -> str:
    where = f"under {join_path(parts[:depth])}" if depth else "at the top level"
    return f"key {join_path(parts)!r} is unknown to the job (known {where}: {', '.join(sorted(node))})"


def _mismatch(expected: str, value: Any, parts: KeyPath) -> str:
    actual = type_name(value)
    # Ints are valid floats (a launcher writing lr=1 means 1.0); bool is never an int: type_name says "bool".
    if expected in OPEN_TYPES or actual == expected or (expected == "float" and actual == "int"):
        return ""
    return f"{join_path(parts)}: expected {expected}, got {_describe(value)}"


def _describe(value: Any) -> str:
    return f"{type_name(value)} {json.dumps(value)}"


def _schema_problems(schema: Any, tree: Mapping[str, Any], reported: Set[KeyPath]) -> List[str]:
    if not isinstance(schema, dict):
        return []
    problems = []
    errors = sorted(_PartialValidator(schema).iter_errors(dict(tree)), key=lambda e: [str(p) for p in e.path])
    for error in errors:
        parts = tuple(str(p) for p in error.absolute_path)
        if parts in reported:
            continue  # already said why this key is wrong; one message per key is enough
        problems.append(f"{join_path(parts) or '(top level)'}: {error.message}")
    return problems


def section_rows(section: Optional[Mapping[str, Any]]) -> List[Tuple[str, str, str]]:
    """``(dotted key, recorded type, whether a launch may override it)`` for every recorded key."""
    if not section:
        return [("(nothing declared)", "", "no")]
    include_texts, include = parse_prefixes(section.get("include"), "include")
    _, exclude = parse_prefixes(section.get("exclude"), "exclude")
    types = section.get("types") if isinstance(section.get("types"), dict) else {}
    rows = []
    for parts, kind in flatten(types).items():
        problem = _key_problem(parts, include_texts, include, exclude)
        rows.append((join_path(parts), str(kind), f"no: {problem.split(' is ', 1)[1]}" if problem else "yes"))
    return rows
