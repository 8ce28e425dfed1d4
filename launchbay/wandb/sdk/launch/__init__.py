"""``launchbay.wandb.sdk.launch``: W&B Launch's job-inputs calls, backed by :mod:`launchbay.sdk`.

``manage_wandb_config`` and ``manage_config_file`` are launchbay's (filtering enforced, schema
checked); ``load_wandb_config`` returns a config object, as W&B's does, rather than a dict.
"""

from __future__ import annotations

from launchbay.sdk import load_config, manage_config_file, manage_wandb_config
from launchbay.sdk.config import Config

__all__ = ["load_wandb_config", "manage_config_file", "manage_wandb_config"]


def load_wandb_config() -> Config:
    """The run-config launch overrides that apply to this job, filtered (``.as_dict()`` for a dict)."""
    return Config(load_config())
