"""Forwarding tracking calls to the real ``wandb`` package, when the job's image has it.

launchbay keeps the inputs (filtering, schema, records); W&B keeps the dashboards. The real
run is started with the config launchbay settled (overrides applied), receives every ``log``,
and at finish the final config and the summary values the job set.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any, Optional

#: Set to 0/false/no to keep a job from forwarding to an installed ``wandb``.
ENV_FORWARD = "LAUNCHBAY_WANDB_FORWARD"
_OFF = ("0", "false", "no", "off")


def real_wandb() -> Optional[Any]:
    """The installed ``wandb`` package, or None (not installed, or forwarding turned off)."""
    if os.environ.get(ENV_FORWARD, "").strip().lower() in _OFF:
        return None
    try:
        if importlib.util.find_spec("wandb") is None:
            return None
    except (ImportError, ValueError):
        return None
    module = importlib.import_module("wandb")
    # A stray folder named wandb (a namespace package) is not W&B.
    return module if callable(getattr(module, "init", None)) else None


class WandbTracker:
    """Receives a launchbay Run's ``log`` and ``finish`` and passes them to a real ``wandb`` run."""

    def __init__(self, module: Any, real_run: Any) -> None:
        self.module = module
        self.real_run = real_run

    def log(self, data: dict[str, Any], step: Optional[int] = None, commit: Optional[bool] = None) -> None:
        self.real_run.log(data, step=step, commit=commit)

    def update_config(self, config: dict[str, Any]) -> None:
        self.real_run.config.update(config, allow_val_change=True)

    def finish(self, run: Any, exit_code: Optional[int]) -> None:
        # Values the job set while running, and summary entries it chose, reach the dashboard too.
        self.update_config(run.config.as_dict())
        for key, value in run.summary._set.items():
            self.real_run.summary[key] = value
        self.real_run.finish(exit_code=exit_code)


def start_tracker(module: Any, kwargs: dict[str, Any], config: dict[str, Any]) -> WandbTracker:
    """Start the real run with the user's ``init`` keywords and launchbay's settled config."""
    real_run = module.init(**{**kwargs, "config": config})
    return WandbTracker(module, real_run)
