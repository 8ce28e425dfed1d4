"""``launchbay.wandb.sdk``: the shape of ``wandb.sdk`` that Launch jobs import (``from wandb.sdk import launch``)."""

from launchbay.sdk.config import Config

from . import launch

__all__ = ["Config", "launch"]
