"""``init()`` and the Run it returns: the job's config with launch overrides applied, and its metrics."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from . import payload
from .config import Config, ConfigStatic, as_config_dict
from .defaults import load_defaults, script_dir
from .errors import SdkError
from .manage import track
from .metrics import MetricsLog, Summary
from .record import write_records
from .state import STATE


class Run:
    """One run of the job. ``config`` behaves like ``wandb.Run.config``; use as a context manager.

    ``tracker``, when set (``launchbay.wandb`` sets it to the real ``wandb`` run), receives every
    ``log`` and ``finish`` so that W&B dashboards keep working.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.finished = False
        self.metrics = MetricsLog()
        self.tracker: Any = None
        self.id = os.environ.get(payload.ENV_JOB_ID) or f"local-{os.getpid()}"

    @property
    def summary(self) -> Summary:
        """The last value of each logged key; set ``run.summary[key]`` to report another."""
        return self.metrics.summary

    @property
    def config_static(self) -> ConfigStatic:
        """``run.config_static``, as in W&B: a read-only snapshot of the config's top-level keys."""
        return self.config.config_static

    @property
    def step(self) -> int:
        return self.metrics.step

    def log(self, data: Mapping[str, Any], step: Optional[int] = None, commit: Optional[bool] = None) -> None:
        """Record metrics as one line of ``metrics.jsonl`` per step (W&B's ``run.log`` rules)."""
        if self.finished:
            raise SdkError("log() was called on a finished run; call init() again first")
        self.metrics.log(data, step=step, commit=commit)
        if self.tracker is not None:
            self.tracker.log(dict(data), step=step, commit=commit)

    def finish(self, exit_code: Optional[int] = None, quiet: Optional[bool] = None) -> None:
        """Record the final config and metrics; the Run stops receiving re-filtered overrides.

        ``exit_code`` is passed on to a real ``wandb`` run; ``quiet`` is W&B's and changes nothing.
        """
        if self.finished:
            return
        self.metrics.close()
        write_records(STATE)
        self.finished = True
        if self.tracker is not None:
            self.tracker.finish(self, exit_code)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        self.finish(exit_code=None if exc_type is None else 1)

    def __repr__(self) -> str:
        state = "finished" if self.finished else "active"
        return f"<launchbay Run ({state}) config={self.config!r}>"


def init(config: Any = None) -> Run:
    """Start a Run whose config is ``config-defaults.yaml`` < ``--configs`` files < ``config`` < overrides.

    ``config-defaults.yaml`` is the working directory's, as in W&B, else the one beside the script.

    ``config`` may be a dict, an ``argparse.Namespace``, an absl/TF flags object or any object
    with attributes. Launch overrides are filtered by the job's ``manage_config`` declarations
    (all of them apply when there is none) and validated against its schema. A previous
    active Run is finished first.
    """
    if STATE.run is not None:
        STATE.run.finish()
    # W&B reads config-defaults.yaml from the working directory; beside the script is launchbay's fallback.
    values = load_defaults((Path.cwd(), script_dir()), sys.argv[1:])
    values.update(as_config_dict(config))
    STATE.run = Run(Config(values))
    track()
    try:
        STATE.apply_run_overrides()
    finally:
        write_records(STATE)
    return STATE.run


def current_run() -> Optional[Run]:
    """The active Run, or None before ``init()`` and after ``finish()``."""
    run = STATE.run
    return run if run is not None and not run.finished else None


def log(data: Mapping[str, Any], step: Optional[int] = None, commit: Optional[bool] = None) -> None:
    """Log metrics to the active Run (``init()`` first)."""
    run = current_run()
    if run is None:
        raise SdkError("log() needs an active run: call init() first")
    run.log(data, step=step, commit=commit)


def finish(exit_code: Optional[int] = None) -> None:
    """Finish the active Run, if any."""
    run = current_run()
    if run is not None:
        run.finish(exit_code)
