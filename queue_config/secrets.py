"""Queue secrets and secret-valued inputs: the model, the reference syntax and masking.

A queue config names secrets and where the agent finds each on its own host
(``secrets: {WANDB_API_KEY: {env: WANDB_API_KEY}}`` or ``{file: /etc/launchbay/wandb.key}``);
only those names and sources are stored in Redis, never a value. A run-config or config-file value
whose schema says ``format: secret`` is masked wherever launchbay shows it, and a launch may give
such a value as a reference to a queue secret, the whole string ``${secret:NAME}``, which the agent
replaces with the secret's value on its host when it starts the container.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from launchbay.queue_config.acl import job_owner
from launchbay.queue_config.job import JobRecord
from launchbay.sdk.filtering import flatten
from launchbay.sdk.paths import KeyPath
from pydantic import BaseModel, ConfigDict, model_validator

#: What status, list, the UI and enqueue show instead of a secret value.
MASK = "***"
#: A value that is exactly ``${secret:NAME}`` stands for the queue secret NAME.
REFERENCE_RE = re.compile(r"^\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}$")
#: The JSON-schema ``format`` that marks a field as secret (W&B's input meta-schema has it too).
SECRET_FORMAT = "secret"


class SecretSource(BaseModel):
    """Where the agent reads one secret on its host: its own environment variable, or a file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Optional[str] = None
    file: Optional[str] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one source: {env: VARIABLE} or {file: /absolute/path}")
        if self.env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.env):
            raise ValueError(f"secret source env {self.env!r} is not a valid variable name")
        if self.file is not None and (not self.file.startswith("/") or "\x00" in self.file):
            raise ValueError(f"secret source file {self.file!r} must be an absolute path")
        return self

    def describe(self) -> str:
        """Where the value comes from, for messages (never the value)."""
        return f"env {self.env} on the agent's host" if self.env else f"file {self.file} on the agent's host"


def reference_name(value: Any) -> Optional[str]:
    """The queue secret ``value`` refers to (``"${secret:NAME}"`` -> ``NAME``), or None."""
    if not isinstance(value, str):
        return None
    match = REFERENCE_RE.match(value)
    return match.group(1) if match else None


def references(tree: Mapping[str, Any]) -> Iterator[Tuple[KeyPath, str]]:
    """``(key path, secret name)`` of every leaf of ``tree`` that is a secret reference."""
    for parts, value in flatten(tree).items():
        name = reference_name(value)
        if name is not None:
            yield parts, name


def secret_paths(schema: Any) -> List[KeyPath]:
    """The key paths whose schema says ``format: secret``, following ``properties`` and ``#/$defs/`` refs."""
    found: List[KeyPath] = []
    defs = schema.get("$defs") if isinstance(schema, dict) else None
    _collect(schema, (), found, defs if isinstance(defs, dict) else {})
    return found


def _collect(node: Any, path: KeyPath, found: List[KeyPath], defs: Dict[str, Any]) -> None:
    if not isinstance(node, dict) or len(path) > 100:
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and isinstance(defs.get(ref[8:]), dict):
        node = {**defs[ref[8:]], **{k: v for k, v in node.items() if k != "$ref"}}
    if node.get("format") == SECRET_FORMAT and path:
        found.append(path)
    properties = node.get("properties")
    if isinstance(properties, dict):
        for key, child in properties.items():
            _collect(child, (*path, str(key)), found, defs)


def mask_tree(tree: Any, paths: List[KeyPath]) -> Any:
    """A copy of ``tree`` with the value at each of ``paths`` (and everything below it) replaced by MASK.

    A reference (``${secret:NAME}``) names a secret without being one, so it is shown as given.
    """
    if not isinstance(tree, dict) or not paths:
        return tree
    masked = _copy(tree)
    for parts in paths:
        node = masked
        for key in parts[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node and reference_name(node[parts[-1]]) is None:
            node[parts[-1]] = MASK
    return masked


def redact_tree(tree: Any, redact: Callable[[str], str]) -> Any:
    """``tree`` (JSON) with ``redact`` applied to every string in it, keys too; a number whose digits
    ``redact`` would change becomes ``***`` (a job may log a numeric secret as a number)."""
    if isinstance(tree, dict):
        return {redact(str(key)): redact_tree(child, redact) for key, child in tree.items()}
    if isinstance(tree, list):
        return [redact_tree(item, redact) for item in tree]
    if isinstance(tree, str):
        return redact(tree)
    if isinstance(tree, (int, float)) and not isinstance(tree, bool) and redact(repr(tree)) != repr(tree):
        return MASK
    return tree


def _copy(tree: Dict[str, Any]) -> Dict[str, Any]:
    return {key: _copy(value) if isinstance(value, dict) else value for key, value in tree.items()}


def section_secret_paths(inputs: Optional[Mapping[str, Any]]) -> Tuple[List[KeyPath], Dict[str, List[KeyPath]]]:
    """``(run-config secret paths, {config file: secret paths})`` from an inputs document."""
    if not isinstance(inputs, Mapping):
        return [], {}
    run_section = inputs.get("run_config")
    run_paths = secret_paths(run_section.get("schema")) if isinstance(run_section, Mapping) else []
    files = inputs.get("files") if isinstance(inputs.get("files"), Mapping) else {}
    file_paths = {
        path: secret_paths(section.get("schema")) for path, section in files.items() if isinstance(section, Mapping)
    }
    return run_paths, {path: paths for path, paths in file_paths.items() if paths}


def mask_record(record: JobRecord) -> JobRecord:
    """The job record as launchbay shows it: secret-format values in its overrides and effective config masked.

    The inputs used are the ones enqueue checked the job against (``spec.inputs``). ``id`` and
    ``submitter`` are what the key the record was read under says (``JobRecord.id``,
    ``JobRecord.submitter``), not what a submitter may have rewritten in her own record. Its
    :meth:`~JobRecord.as_json` is what ``--json``, the Python API and the UI show.
    """
    shown = {**record.fields, "id": record.id}
    if job_owner(record.id) is not None:
        shown["submitter"] = record.submitter
    run_paths, file_paths = section_secret_paths(record.spec.get("inputs"))
    if run_paths or file_paths:
        if record.run_config:
            shown["run_config"] = mask_tree(record.run_config, run_paths)
        if record.effective_config is not None:
            shown["effective_config"] = mask_tree(record.effective_config, run_paths)
        if record.file_overrides:
            masked = {path: mask_tree(tree, file_paths.get(path, [])) for path, tree in record.file_overrides.items()}
            shown["file_overrides"] = masked
    return JobRecord.from_fields(record.id, shown)
