"""launchbay's in-container SDK: declare a job's launch-time inputs and read them.

This is the native API (``init``, ``manage_config``, ``log``...). A W&B Launch job moves over by
changing one import to ``launchbay.wandb``, a module shaped like ``wandb`` built on this one.

Standard library and PyYAML only; pydantic is used only through a model the job hands in.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .errors import ConfigFileError, ConfigPathError, InputValidationError, SchemaError, SdkError
from .manage import load_config, load_wandb_config, manage_config, manage_config_file, manage_wandb_config
from .metrics import Summary
from .paths import join_path, split_path
from .payload import PayloadError
from .runs import Run, current_run, finish, init, log
from .state import reset as _reset_for_tests  # noqa: F401  (tests of one process clear its state)

__all__ = [
    "Config",
    "ConfigFileError",
    "ConfigPathError",
    "InputValidationError",
    "PayloadError",
    "Run",
    "SchemaError",
    "SdkError",
    "Summary",
    "current_run",
    "finish",
    "init",
    "join_path",
    "load_config",
    "load_wandb_config",
    "log",
    "manage_config",
    "manage_config_file",
    "manage_wandb_config",
    "split_path",
]


def __getattr__(name: str) -> Any:
    # ``launchbay.sdk.run`` is the active Run (None before init and after finish), like ``wandb.run``.
    if name == "run":
        return current_run()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
