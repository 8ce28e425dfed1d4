"""Secret-valued inputs at enqueue: references to queue secrets are checked, secret values kept out of messages.

A launch may give the value of a field whose schema says ``format: secret`` as ``${secret:NAME}``,
a reference to a secret of the queue (the agent resolves it on its host). A reference is refused
anywhere else, because launchbay masks only secret fields and the resolved value would be shown.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.secrets import MASK, reference_name, references, section_secret_paths
from launchbay.sdk.filtering import flatten
from launchbay.sdk.paths import join_path

from launchbay.errors import ValidationError


def check_references(
    queue: QueueConfig,
    inputs: Optional[Mapping[str, Any]],
    run_config: Mapping[str, Any],
    file_overrides: Mapping[str, Mapping[str, Any]],
) -> None:
    """Raise ValidationError naming every ``${secret:NAME}`` that names no queue secret or sits in no secret field."""
    run_paths, file_paths = section_secret_paths(inputs)
    sections = [("", run_config, run_paths)]
    sections += [(f"{path}: ", tree, file_paths.get(path, [])) for path, tree in file_overrides.items()]
    problems: List[str] = []
    for where, tree, secret_fields in sections:
        for parts, name in references(tree):
            key = f"{where}{join_path(parts)}"
            if name not in queue.secrets:
                known = ", ".join(sorted(queue.secrets)) or "none"
                problems.append(
                    f"{key}: ${{secret:{name}}} names no secret of queue {queue.name!r} (its secrets: {known})"
                )
            elif parts not in secret_fields:
                problems.append(
                    f"{key}: a secret reference is allowed only in a field whose schema says format: secret "
                    "(elsewhere its value would be shown)"
                )
    if problems:
        raise ValidationError("invalid secret references: " + "; ".join(problems))


def secret_values(
    inputs: Optional[Mapping[str, Any]], run_config: Mapping[str, Any], file_overrides: Mapping[str, Mapping[str, Any]]
) -> List[str]:
    """The literal values given for secret fields (their text, as messages would print them)."""
    run_paths, file_paths = section_secret_paths(inputs)
    values = []
    for tree, paths in [(run_config, run_paths)] + [(t, file_paths.get(p, [])) for p, t in file_overrides.items()]:
        flat = flatten(tree)
        for parts, value in flat.items():
            if any(parts[: len(path)] == path for path in paths) and value not in (None, "", True, False):
                values.append(str(value))
    return sorted(set(values), key=len, reverse=True)


def redact(message: str, values: List[str]) -> str:
    """``message`` with each of ``values`` replaced by the mask (longest first, so none is half-hidden)."""
    for value in values:
        message = message.replace(value, MASK)
    return message


def without_references(tree: Mapping[str, Any]) -> Any:
    """``tree`` without its ``${secret:NAME}`` leaves (a mapping left empty by that goes too)."""
    kept = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            child = without_references(value)
            if child:
                kept[key] = child
        elif reference_name(value) is None:
            kept[key] = value
    return kept
