"""Config files as job inputs: path rules, reading, and the in-place patch with launch overrides."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigFileError, InputValidationError
from .filtering import flatten
from .overlay import merge_overrides
from .yaml_patch import patch_yaml_text

SUFFIXES = (".yaml", ".yml", ".json")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def normalize_config_path(path: Any) -> str:
    """Check a ``manage_config_file`` path and return it normalized (``./a.yaml`` -> ``a.yaml``).

    The path must be relative to the working directory, have no ``..`` component and end in
    ``.yaml``, ``.yml`` or ``.json``; otherwise :class:`ConfigFileError`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigFileError(f"a config file path must be a string, got {type(path).__name__}")
    text = os.fspath(path)
    if not text or os.path.isabs(text):
        raise ConfigFileError(f"config file path {text!r} must be relative to the working directory")
    if ".." in text.replace("\\", "/").split("/"):
        raise ConfigFileError(f"config file path {text!r} must not contain a '..' component")
    if not text.lower().endswith(SUFFIXES):
        raise ConfigFileError(f"config file path {text!r} must end in .yaml, .yml or .json")
    return os.path.normpath(text)


def read_config_file(path: Path) -> tuple[Any, str]:
    """``(parsed content, text)`` of a JSON or YAML file; :class:`ConfigFileError` naming the resolved path."""
    resolved = path.resolve()
    if not resolved.is_file():
        raise ConfigFileError(f"config file {resolved} does not exist")
    try:
        text = resolved.read_text(encoding="utf-8")
        return _parse(text, resolved), text
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"cannot read config file {resolved}: {exc}") from exc


def _parse(text: str, path: Path) -> Any:
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return yaml.load(text, Loader=_LOADER)


def patch_config_file(name: str, text: str, content: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Write ``overrides`` (already filtered) into the file ``name`` in place; return its new content.

    ``text`` and ``content`` come from :func:`read_config_file`. Dicts are deep-merged, lists
    and scalars replaced, key order kept; the file is only written when there is something to
    apply. Raises :class:`InputValidationError` when an override needs a mapping where the
    file has another value.
    """
    path = Path(name)
    if content is None:
        content = {}  # an empty YAML file
    if not isinstance(content, dict):
        raise ConfigFileError(f"config file {path.resolve()} must hold a mapping at the top level")
    if not overrides:
        return content
    merged = copy.deepcopy(content)
    problems = merge_overrides(merged, flatten(overrides))
    if problems:
        raise InputValidationError(f"config file {name}", problems)
    try:
        path.write_text(_render(text, path, overrides, merged), encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot write the patched config file {path.resolve()}: {exc}") from exc
    return merged


def _render(text: str, path: Path, overrides: dict[str, Any], merged: dict[str, Any]) -> str:
    if path.suffix.lower() == ".json":
        return json.dumps(merged, indent=2, ensure_ascii=False) + "\n"
    patched = patch_yaml_text(text, overrides, merged)
    if patched is not None:
        return patched
    return yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, default_flow_style=False)
