"""Config values a job gets before ``init(config=...)``, as W&B loads them.

``config-defaults.yaml`` (the working directory's, as W&B reads it, else the one beside the
script), then each file named by ``--configs a.yaml,b.yaml``
on the command line, later files winning key by key. Each top-level key is either a plain
value or W&B's ``{desc: ..., value: ...}`` form.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigFileError
from .files import read_config_file

DEFAULTS_FILE = "config-defaults.yaml"
_DESCRIBED_VALUE_KEYS = frozenset({"desc", "value"})
# W&B writes these bookkeeping keys into config files it saves; they are not job settings.
_WANDB_KEYS = ("wandb_version", "_wandb")


def script_dir() -> Path:
    """The folder of the running script (``__main__``), else of ``sys.argv[0]``, else the cwd."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        return Path(main_file).resolve().parent
    if sys.argv and sys.argv[0] and os.path.isfile(sys.argv[0]):
        return Path(sys.argv[0]).resolve().parent
    return Path.cwd()


def config_paths_from_argv(argv: Sequence[str]) -> list[str]:
    """The files named by every ``--configs a,b`` or ``--configs=a,b`` in ``argv``, in order."""
    paths: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--configs" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--configs="):
            value = arg[len("--configs=") :]
        else:
            continue
        paths.extend(part for part in value.split(",") if part)
    return paths


def load_defaults(directories: Sequence[Path], argv: Sequence[str]) -> dict[str, Any]:
    """``config-defaults.yaml`` from the first of ``directories`` that has one, then every ``--configs`` file (must exist)."""
    config: dict[str, Any] = {}
    for directory in dict.fromkeys(Path(d).resolve() for d in directories):
        defaults = directory / DEFAULTS_FILE
        if defaults.is_file():
            config.update(file_values(defaults))
            break
    for name in config_paths_from_argv(argv):
        config.update(file_values(Path(name)))
    return config


def file_values(path: Path) -> dict[str, Any]:
    """The top-level values of a W&B-style config file (plain or ``{desc, value}``), bookkeeping keys dropped."""
    content, _ = read_config_file(path)
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigFileError(f"config file {path.resolve()} must hold a mapping at the top level")
    return {key: _unwrap(value) for key, value in content.items() if key not in _WANDB_KEYS}


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and "value" in value and set(value) <= _DESCRIBED_VALUE_KEYS:
        return value["value"]
    return value
