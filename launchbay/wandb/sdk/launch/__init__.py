"""``launchbay.wandb.sdk.launch``: W&B Launch's job-inputs calls, backed by :mod:`launchbay.sdk`.

``manage_wandb_config`` and ``manage_config_file`` are launchbay's (filtering enforced, schema
checked); ``load_wandb_config`` returns a config object, as W&B's does, rather than a dict.
"""

from __future__ import annotations

from typing import Any

from launchbay import sdk as _sdk
from launchbay.sdk import load_config, manage_config_file
from launchbay.sdk.config import Config

__all__ = ["load_wandb_config", "manage_config_file", "manage_wandb_config"]


def manage_wandb_config(
    include: Any = None, exclude: Any = None, schema: Any = None, *, input_schema: Any = None
) -> None:
    """Declare the run-config inputs (see :func:`launchbay.sdk.manage_config`).

    Called after ``init``, it re-filters the run's config; a real ``wandb`` run the config was
    forwarded to gets the re-filtered config at once, so an override the declaration drops does
    not stay on the dashboard.
    """
    _sdk.manage_wandb_config(include=include, exclude=exclude, schema=schema, input_schema=input_schema)
    run = _sdk.current_run()
    if run is not None and run.tracker is not None:
        run.tracker.update_config(run.config.as_dict())


def load_wandb_config() -> Config:
    """The run-config launch overrides that apply to this job, filtered (``.as_dict()`` for a dict)."""
    return Config(load_config())
