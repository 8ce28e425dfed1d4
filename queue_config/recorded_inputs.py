"""The input spec a job's run recorded (the SDK's ``inputs.json``), checked as untrusted input.

The file is written by the job's own code, so it is whatever the job wants it to be. Before it
becomes the job definition that every launch of that name is checked against (CLI, API, UI), it
must be exactly what the SDK writes: ``{"run_config": section | null, "files": {relative path:
section}}``, each section ``{"include": [paths], "exclude": [paths], "types": {key: type name |
mapping}, "schema": object | null}``, with key paths the SDK can parse and a schema in the subset
the SDK accepts (no ``pattern``, no ``$ref``: nothing that compiles or runs a regex, nothing that
points elsewhere). The same check runs when a stored definition is read back, so one written
straight into Redis cannot poison a reader either.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Mapping

from launchbay.queue_config.structured import check_shape
from launchbay.sdk.errors import SdkError
from launchbay.sdk.paths import parse_prefixes
from launchbay.sdk.schema import check_schema

#: The most values (keys, list items, leaves) one recorded inputs document may hold.
MAX_VALUES = 100_000
_SECTION_KEYS = frozenset({"include", "exclude", "types", "schema"})
_TOP_KEYS = frozenset({"run_config", "files"})
_TYPE_NAMES = frozenset({"bool", "int", "float", "str", "list", "dict", "null", "unknown"})


def check_recorded_inputs(inputs: Any) -> None:
    """Raise ValueError (one line, naming the place) unless ``inputs`` is what the SDK records."""
    try:
        check_shape(inputs, max_values=MAX_VALUES)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"inputs.json: {exc}") from None
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs.json must be an object, got {type(inputs).__name__}")
    unknown = sorted(set(inputs) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"inputs.json: unknown field {unknown[0]!r} (the SDK writes run_config and files)")
    if inputs.get("run_config") is not None:
        _check_section(inputs["run_config"], "run_config")
    files = inputs.get("files") or {}
    if not isinstance(files, dict):
        raise ValueError("inputs.json: files must map config file paths to their inputs")
    for path, section in files.items():
        _check_file_path(path)
        _check_section(section, f"files.{path}")


def _check_file_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or any(ord(c) < 32 for c in path):
        raise ValueError(f"inputs.json: config file path {path!r} must be relative, without '..'")


def _check_section(section: Any, where: str) -> None:
    if not isinstance(section, dict):
        raise ValueError(f"inputs.json: {where} must be an object, got {type(section).__name__}")
    unknown = sorted(set(section) - _SECTION_KEYS)
    if unknown:
        raise ValueError(f"inputs.json: {where}: unknown field {unknown[0]!r}")
    for name in ("include", "exclude"):
        try:
            parse_prefixes(section.get(name), name)
        except SdkError as exc:
            raise ValueError(f"inputs.json: {where}: {exc}") from None
    if section.get("types") is not None:
        _check_types(section["types"], f"{where}.types")
    if section.get("schema") is not None:
        try:
            check_schema(section["schema"])
        except SdkError as exc:
            raise ValueError(f"inputs.json: {where}: {exc}") from None


def _check_types(types: Any, where: str) -> None:
    if not isinstance(types, Mapping):
        raise ValueError(f"inputs.json: {where} must be an object of key types")
    for key, kind in types.items():
        if isinstance(kind, Mapping):
            _check_types(kind, f"{where}.{key}")
        elif kind not in _TYPE_NAMES:
            raise ValueError(f"inputs.json: {where}.{key}: unknown type {kind!r}")
